/**
 * HandshakeState (spec section 5.3): the local and remote keys, the SymmetricState, and the
 * remaining message patterns. writeMessage/readMessage run one message pattern each; when the last
 * one ran, Split() yields the two transport CipherStates.
 */
import { TAGLEN } from './cipher-functions.js';
import { CipherState } from './cipher-state.js';
import {
  DHLEN,
  dh,
  generateKeyPair,
  importPublicKey,
  type KeyPair,
  preSharedStaticDh,
  type PublicKey,
} from './dh.js';
import { NoiseError } from './errors.js';
import { type HandshakePattern, type KeyToken, type Token } from './patterns.js';
import { type NoiseProtocol, parseProtocolName } from './protocol-name.js';
import { SymmetricState } from './symmetric-state.js';

/** Noise's limit on any handshake message (spec 3). Transport messages may be larger here. */
export const MAX_HANDSHAKE_MESSAGE_LENGTH = 65_535;

const EMPTY = Buffer.alloc(0);

export interface HandshakeOptions {
  /** A protocol name ("Noise_XX_25519_AESGCM_SHA256") or an already parsed protocol. */
  readonly protocol: string | NoiseProtocol;
  readonly initiator: boolean;
  /** Bytes both sides must agree on; for the gateway, the 4-byte preface "IG\x01\x00". */
  readonly prologue?: Buffer;
  /** Local static key pair, when the pattern sends or uses one. */
  readonly s?: KeyPair;
  /** Local ephemeral key pair: a pre-message key (XXfallback responder) or fixed by tests. */
  readonly e?: KeyPair;
  /** Remote static public key known in advance (IK, NK, XK, KK...). Pass a PublicKey from
   * importPublicKey() to skip re-importing a pinned key on every connection. */
  readonly rs?: Buffer | PublicKey;
  /** Remote ephemeral public key known in advance (XXfallback initiator). */
  readonly re?: Buffer;
}

/** What a completed handshake leaves the transport. */
export interface NoiseTransport {
  /** Encrypts what this side sends. */
  readonly send: CipherState;
  /** Decrypts what this side receives. */
  readonly receive: CipherState;
  /** h at the end of the handshake: identical on both sides, usable for channel binding. */
  readonly handshakeHash: Buffer;
  /** The peer's static public key, if the pattern transmitted or pre-shared one. */
  readonly remoteStaticKey: Buffer | null;
}

export class HandshakeState {
  readonly protocol: NoiseProtocol;
  readonly initiator: boolean;
  readonly symmetricState: SymmetricState;
  private s: KeyPair | null;
  private e: KeyPair | null;
  private rs: PublicKey | null;
  private re: PublicKey | null;
  /** True when rs was given to initialize() (a pinned key), not received in this handshake. */
  private rsPreShared: boolean;
  private messageIndex = 0;
  private failed: NoiseError | null = null;
  private transport: NoiseTransport | null = null;

  private constructor(options: HandshakeOptions, protocol: NoiseProtocol) {
    this.protocol = protocol;
    this.initiator = options.initiator;
    this.s = options.s ?? null;
    this.e = options.e ?? null;
    this.rs =
      options.rs === undefined
        ? null
        : Buffer.isBuffer(options.rs)
          ? importPublicKey(options.rs)
          : options.rs;
    this.rsPreShared = this.rs !== null;
    this.re = options.re === undefined ? null : importPublicKey(options.re);
    this.symmetricState = SymmetricState.initializeSymmetric(protocol.name, protocol.cipher, protocol.hash);
  }

  /**
   * Initialize(): checks that every key the pattern needs from this side is there, mixes the
   * prologue, then the pre-message public keys (the initiator's first, spec 5.3).
   */
  static initialize(options: HandshakeOptions): HandshakeState {
    const protocol =
      typeof options.protocol === 'string' ? parseProtocolName(options.protocol) : options.protocol;
    const hs = new HandshakeState(options, protocol);
    hs.checkKeys();
    hs.symmetricState.mixHash(options.prologue ?? EMPTY);
    const { initiatorPreMessage, responderPreMessage } = protocol.pattern;
    hs.mixPreMessage(initiatorPreMessage, hs.initiator);
    hs.mixPreMessage(responderPreMessage, !hs.initiator);
    return hs;
  }

  get pattern(): HandshakePattern {
    return this.protocol.pattern;
  }

  /** True once every message pattern ran; then `getTransport()` is available. */
  get isComplete(): boolean {
    return this.transport !== null;
  }

  /** True when the next step of this side is writeMessage (false when complete or failed). */
  get isMyTurn(): boolean {
    return (
      this.failed === null && this.transport === null && this.messageIndex % 2 === (this.initiator ? 0 : 1)
    );
  }

  /** The local ephemeral key pair, once generated (Noise Pipes reuses it for XXfallback). */
  get localEphemeral(): KeyPair | null {
    return this.e;
  }

  /** The peer's ephemeral public key once received: set even if the rest of that message failed,
   * which is what an IK responder needs to answer with XXfallback. */
  get remoteEphemeralKey(): Buffer | null {
    return this.re?.bytes ?? null;
  }

  /** The peer's static public key once known (pre-message or received and decrypted). */
  get remoteStaticKey(): Buffer | null {
    return this.rs?.bytes ?? null;
  }

  /** GetHandshakeHash(): h now; final once the handshake is complete. */
  getHandshakeHash(): Buffer {
    return this.symmetricState.getHandshakeHash();
  }

  /** The transport ciphers and results; throws `noise_invalid_state` before completion. */
  getTransport(): NoiseTransport {
    if (this.transport === null) {
      throw new NoiseError(
        'noise_invalid_state',
        'the Noise handshake is not complete: no transport keys yet',
      );
    }
    return this.transport;
  }

  /** WriteMessage(payload, message_buffer): the next handshake message, at most 65,535 bytes. */
  writeMessage(payload: Buffer = EMPTY): Buffer {
    const tokens = this.nextPattern('write');
    const length = this.messageLength(tokens, payload.length);
    if (length > MAX_HANDSHAKE_MESSAGE_LENGTH) {
      throw new NoiseError(
        'noise_message_too_large',
        `this handshake message would be ${length} bytes, over Noise's ${MAX_HANDSHAKE_MESSAGE_LENGTH}: shorten the handshake payload`,
      );
    }
    return this.guard(() => {
      const parts: Buffer[] = [];
      for (const token of tokens) {
        if (token === 'e') {
          // A preset ephemeral is only for tests (and fallback pre-messages); otherwise a fresh one.
          this.e ??= generateKeyPair();
          parts.push(this.e.publicKey);
          this.symmetricState.mixHash(this.e.publicKey);
        } else if (token === 's') {
          parts.push(this.symmetricState.encryptAndHash(this.need(this.s, 's').publicKey));
        } else {
          this.mixDh(token);
        }
      }
      parts.push(this.symmetricState.encryptAndHash(payload));
      this.advance();
      return Buffer.concat(parts);
    });
  }

  /** ReadMessage(message, payload_buffer): processes the peer's message and returns its payload. */
  readMessage(message: Buffer): Buffer {
    const tokens = this.nextPattern('read');
    if (message.length > MAX_HANDSHAKE_MESSAGE_LENGTH) {
      this.failed = new NoiseError(
        'noise_message_too_large',
        `a ${message.length}-byte handshake message exceeds Noise's ${MAX_HANDSHAKE_MESSAGE_LENGTH}: the peer is broken; close the connection`,
      );
      throw this.failed;
    }
    return this.guard(() => {
      let offset = 0;
      const take = (length: number, what: string): Buffer => {
        if (message.length - offset < length) {
          throw new NoiseError(
            'noise_malformed_message',
            `handshake message ${this.messageIndex + 1} of ${this.protocol.name} is too short for its ${what} (${message.length} bytes): the peer speaks another pattern or the message was cut`,
          );
        }
        const bytes = message.subarray(offset, offset + length);
        offset += length;
        return bytes;
      };
      for (const token of tokens) {
        if (token === 'e') {
          this.re = importPublicKey(take(DHLEN, 'ephemeral key'));
          this.symmetricState.mixHash(this.re.bytes);
        } else if (token === 's') {
          const length = this.symmetricState.hasKey() ? DHLEN + TAGLEN : DHLEN;
          this.rs = importPublicKey(this.symmetricState.decryptAndHash(take(length, 'static key')));
          this.rsPreShared = false;
        } else {
          this.mixDh(token);
        }
      }
      if (this.symmetricState.hasKey() && message.length - offset < TAGLEN) take(TAGLEN, 'payload tag');
      const payload = this.symmetricState.decryptAndHash(message.subarray(offset));
      this.advance();
      return payload;
    });
  }

  private nextPattern(direction: 'write' | 'read'): readonly Token[] {
    if (this.failed !== null) {
      throw new NoiseError(
        'noise_invalid_state',
        `this Noise handshake already failed (${this.failed.code}): start a new connection`,
        { cause: this.failed },
      );
    }
    const tokens = this.pattern.messages[this.messageIndex];
    if (tokens === undefined || this.transport !== null) {
      throw new NoiseError(
        'noise_invalid_state',
        `the Noise handshake is complete: ${direction} transport messages instead`,
      );
    }
    const mine = this.messageIndex % 2 === (this.initiator ? 0 : 1);
    if (mine !== (direction === 'write')) {
      throw new NoiseError(
        'noise_invalid_state',
        `handshake message ${this.messageIndex + 1} of ${this.protocol.name} is the ${mine ? 'local side' : 'peer'}'s to send, not to ${direction}`,
      );
    }
    return tokens;
  }

  /**
   * Runs one message; any failure poisons the state (spec 5.3: a failed handshake is abandoned).
   * Only NoiseErrors are expected here; anything else is a bug and is rethrown as it is.
   */
  private guard<T>(step: () => T): T {
    try {
      return step();
    } catch (error) {
      this.failed =
        error instanceof NoiseError
          ? error
          : new NoiseError('noise_invalid_state', `Noise handshake step failed: ${String(error)}`, {
              cause: error,
            });
      throw error;
    }
  }

  private advance(): void {
    this.messageIndex += 1;
    if (this.messageIndex < this.pattern.messages.length) return;
    const [c1, c2] = this.symmetricState.split();
    this.transport = {
      send: this.initiator ? c1 : c2,
      receive: this.initiator ? c2 : c1,
      handshakeHash: this.symmetricState.getHandshakeHash(),
      remoteStaticKey: this.remoteStaticKey,
    };
  }

  /** "ee", "es", "se", "ss": the first letter names the initiator's key, the second the responder's. */
  private mixDh(token: Exclude<Token, KeyToken>): void {
    const initiatorKey = token[0] === 'e' ? 'e' : 's';
    const responderKey = token[1] === 'e' ? 'e' : 's';
    const local = this.initiator ? initiatorKey : responderKey;
    const remote = this.initiator ? responderKey : initiatorKey;
    const localPair = this.need(local === 'e' ? this.e : this.s, local);
    const remoteKey = this.need(remote === 'e' ? this.re : this.rs, `r${remote}`);
    const shared =
      local === 's' && remote === 's' && this.rsPreShared
        ? preSharedStaticDh(localPair, remoteKey)
        : dh(localPair, remoteKey);
    this.symmetricState.mixKey(shared);
  }

  private mixPreMessage(tokens: readonly KeyToken[], local: boolean): void {
    for (const token of tokens) {
      const key =
        token === 'e'
          ? local
            ? this.need(this.e, 'e').publicKey
            : this.need(this.re, 're').bytes
          : local
            ? this.need(this.s, 's').publicKey
            : this.need(this.rs, 'rs').bytes;
      this.symmetricState.mixHash(key);
    }
  }

  /** The exact length of the message `tokens` will produce, computed before any state changes. */
  private messageLength(tokens: readonly Token[], payloadLength: number): number {
    let hasKey = this.symmetricState.hasKey();
    let length = 0;
    for (const token of tokens) {
      if (token === 'e') length += DHLEN;
      else if (token === 's') length += DHLEN + (hasKey ? TAGLEN : 0);
      else hasKey = true;
    }
    return length + payloadLength + (hasKey ? TAGLEN : 0);
  }

  /** Fails at Initialize() rather than mid-handshake when this side lacks a key it will need. */
  private checkKeys(): void {
    const { initiatorPreMessage, responderPreMessage, messages } = this.pattern;
    const myPre = this.initiator ? initiatorPreMessage : responderPreMessage;
    const peerPre = this.initiator ? responderPreMessage : initiatorPreMessage;
    // My static key is used if I pre-share it, send it, or any DH token names my side's "s".
    const myIndex = this.initiator ? 0 : 1;
    const usesMyStatic =
      myPre.includes('s') ||
      messages.some((tokens, index) =>
        tokens.some((t) => (t === 's' ? index % 2 === myIndex : t.length === 2 && t[myIndex] === 's')),
      );
    const missing: string[] = [];
    if (usesMyStatic && this.s === null) missing.push('s (local static key pair)');
    if (myPre.includes('e') && this.e === null) missing.push('e (local ephemeral key pair)');
    if (peerPre.includes('s') && this.rs === null) missing.push('rs (remote static public key)');
    if (peerPre.includes('e') && this.re === null) missing.push('re (remote ephemeral public key)');
    if (missing.length > 0) {
      throw new NoiseError(
        'noise_invalid_key',
        `${this.protocol.name} as ${this.initiator ? 'initiator' : 'responder'} needs ${missing.join(', ')}: pass it to HandshakeState.initialize`,
      );
    }
  }

  private need<T>(key: T | null, name: string): T {
    if (key === null) {
      throw new NoiseError(
        'noise_invalid_key',
        `${this.protocol.name} needs key "${name}" at message ${this.messageIndex + 1}, and it is not set`,
      );
    }
    return key;
  }
}
