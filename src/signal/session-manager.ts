/**
 * The Signal layer as the bridge core sees it: one `SignalSessionManager` per puppet, encrypting to
 * and decrypting from remote devices ("user.device"), building sessions from prekey bundles, keeping
 * the puppet's prekeys topped up, and applying the identity-change policy.
 *
 * Operations on one address run one at a time, in call order (a per-address queue), so concurrent
 * encrypts and decrypts from the bridge cannot interleave inside a ratchet step. A failed operation
 * leaves the stored session exactly as it was.
 *
 * The puppet's own prekeys are kept by `PrekeyUpkeep` (prekeys.ts), whose calls the manager passes
 * on so callers keep one Signal object per puppet; library-errors.ts reads the library's errors.
 */
import {
  SessionBuilder,
  SessionCipher,
  SignalProtocolAddress,
  type DeviceType,
} from '@privacyresearch/libsignal-protocol-typescript';
import { SessionLock } from '@privacyresearch/libsignal-protocol-typescript/lib/session-lock.js';
import type { SessionRecord } from '@privacyresearch/libsignal-protocol-typescript/lib/session-record.js';

import type { PreKey, PreKeyBundle, SignedPreKey } from '../protocol/stanza/types.js';
import { installNativeCrypto, KEY_LENGTH, SIGNATURE_LENGTH, toArrayBuffer } from './curve.js';
import { SignalError } from './errors.js';
import { userJidOfAddress } from './address.js';
import { safetyNumber } from './fingerprint.js';
import { typedError } from './library-errors.js';
import { localIdentity, PrekeyUpkeep, type PrekeyUpkeepOptions, type PreKeyUpload } from './prekeys.js';
import {
  MAX_KEY_ID,
  sameBytes,
  SignalProtocolStore,
  withTypeByte,
  type RemoteIdentity,
  type SignalBackend,
  type Trust,
} from './store.js';
import { KeyedQueue } from '../util/keyed-queue.js';
import { readPreKeyMessage, readWhisperMessage } from './wire.js';
import { ratchetDecrypt, ratchetEncrypt, type LocalParty } from './ratchet.js';
import type { LiveSessionRecord } from './record.js';

/**
 * What happens when a remote device's identity key changes. trust_on_first_use: the new key is
 * recorded (trust "changed") and sending goes on; the change is reported. block_until_confirmed:
 * the new key is recorded as "blocked" and encrypting to that device fails with
 * `signal_identity_changed` until `confirmIdentity` is called; the change is reported.
 */
export type IdentityPolicy = 'trust_on_first_use' | 'block_until_confirmed';

/** A remote device presented a new identity key. The bridge shows this to the local user. */
export interface IdentityChange {
  /** "user.device". */
  readonly address: string;
  readonly user: string;
  /** 33 bytes (0x05 ‖ key). */
  readonly previousKey: Uint8Array;
  readonly newKey: Uint8Array;
  /** "changed" (trust on first use) or "blocked" (block until confirmed). */
  readonly trust: Trust;
  readonly at: number;
}

/** `pkmsg` starts a session (PreKeyWhisperMessage); `msg` continues one (WhisperMessage). */
export type SignalMessageType = 'pkmsg' | 'msg';

export interface EncryptedMessage {
  readonly type: SignalMessageType;
  readonly body: Uint8Array;
}

/** Prekey timings and counts (see PrekeyUpkeepOptions), plus the manager's own settings. */
export interface SessionManagerOptions extends PrekeyUpkeepOptions {
  /** Default trust_on_first_use. */
  policy?: IdentityPolicy;
  /** This puppet's stable identifier in safety numbers (its interop user id). */
  localUser: string;
}

const ADDRESS = /^([^.\s]+)\.(\d{1,10})$/;

interface Address {
  readonly text: string;
  readonly user: string;
  readonly protocol: SignalProtocolAddress;
}

function parseAddress(text: string): Address {
  const m = ADDRESS.exec(text);
  const device = m ? Number(m[2]) : NaN;
  if (!m || device > 0x7fffffff) {
    throw new SignalError(
      'signal_bad_address',
      `"${text}" is not a Signal address: expected "<user>.<device>" (user without dots, device a number)`,
    );
  }
  return { text, user: m[1] as string, protocol: new SignalProtocolAddress(m[1] as string, device) };
}

/** The library's cipher, reading session working copies instead of parsing JSON per message. */
class WorkingCopyCipher extends SessionCipher {
  constructor(
    private readonly live: SignalProtocolStore,
    address: SignalProtocolAddress,
  ) {
    super(live, address);
  }

  override getRecord(encodedNumber: string): Promise<SessionRecord | undefined> {
    return Promise.resolve(this.live.workingCopy(encodedNumber));
  }
}

/**
 * The library's SessionLock records every job's promise and every error in static arrays that are
 * never emptied: a leak of one entry per message. Trim them (nothing in the library reads them but
 * its own test helper).
 */
function trimLibraryLockBookkeeping(): void {
  if (SessionLock._promises.length > 256) SessionLock._promises = [];
  if (SessionLock.errors.length > 256) SessionLock.errors = [];
}

type IdentityListener = (change: IdentityChange) => void;

export class SignalSessionManager {
  readonly store: SignalProtocolStore;
  readonly policy: IdentityPolicy;
  private readonly queue = new KeyedQueue();
  /** Replaced, not changed, on each add or removal: a puppet has one, and a Set's table is 148 bytes. */
  private listeners: readonly IdentityListener[] = [];
  private readonly now: () => number;
  private readonly localUser: string;
  private readonly prekeys: PrekeyUpkeep;

  constructor(
    readonly backend: SignalBackend,
    options: SessionManagerOptions,
  ) {
    installNativeCrypto();
    this.store = new SignalProtocolStore(backend);
    this.policy = options.policy ?? 'trust_on_first_use';
    this.localUser = options.localUser;
    this.now = options.now ?? Date.now;
    this.prekeys = new PrekeyUpkeep(backend, options);
  }

  private party: LocalParty | undefined;

  /** Our identity key (33 bytes) and registration id, as the ratchet needs them. */
  private localParty(): LocalParty {
    if (this.party === undefined) {
      const id = localIdentity(this.backend);
      this.party = {
        identityKey: toArrayBuffer(withTypeByte(id.publicKey)),
        registrationId: id.registrationId,
      };
    }
    return this.party;
  }

  /** Called with every identity change, whatever operation found it. Returns an unsubscribe function. */
  onIdentityChange(listener: IdentityListener): () => void {
    this.listeners = [...this.listeners, listener];
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }

  // -------------------------------------------------------------------------------------------
  // Messages

  /** Encrypts for one remote device. The first messages of a session we started are pkmsg. */
  async encrypt(address: string, plaintext: Uint8Array): Promise<EncryptedMessage> {
    const addr = parseAddress(address);
    return this.queue.run(addr.text, async () => {
      await this.backend.prepare(addr.user);
      const open = this.backend.loadSession(addr.text)?.getOpenSession();
      if (open === undefined) {
        throw new SignalError(
          'signal_no_session',
          `no session with ${addr.text}: fetch its prekey bundle and call processBundle`,
        );
      }
      const trust = this.checkIdentity(addr, new Uint8Array(open.indexInfo.remoteIdentityKey));
      if (trust === 'blocked') {
        throw new SignalError(
          'signal_identity_changed',
          `the identity key of ${addr.text} changed and the policy blocks sending: ask the user to compare safety numbers and confirm the new key (confirmIdentity)`,
        );
      }
      const committed = this.backend.loadSession(addr.text) as LiveSessionRecord;
      let out: ReturnType<typeof ratchetEncrypt>;
      try {
        out = ratchetEncrypt(committed, plaintext, this.localParty());
      } catch (err) {
        throw typedError(err, 'encrypt', addr.text);
      }
      this.backend.saveSession(addr.text, out.record);
      return {
        type: out.type === 3 ? 'pkmsg' : 'msg',
        body: new Uint8Array(out.body.buffer, out.body.byteOffset, out.body.byteLength),
      };
    });
  }

  /**
   * Decrypts a message from one remote device. A pkmsg may start a new session (consuming a one-time
   * prekey). Errors: signal_invalid_message, signal_no_session, signal_duplicate_message,
   * signal_unknown_prekey, signal_decrypt_failed; the stored session is unchanged after any of them.
   */
  async decrypt(address: string, type: SignalMessageType, body: Uint8Array): Promise<Uint8Array> {
    const addr = parseAddress(address);
    if (type === 'msg') {
      const fields = readWhisperMessage(body);
      return this.queue.run(addr.text, async () => {
        await this.backend.prepare(addr.user);
        const committed = this.backend.loadSession(addr.text);
        if (committed === undefined) {
          throw new SignalError(
            'signal_no_session',
            `no session with ${addr.text} to decrypt its message: send a retry receipt so it starts a new one`,
          );
        }
        let out: ReturnType<typeof ratchetDecrypt>;
        try {
          out = ratchetDecrypt(committed, fields, this.localParty());
        } catch (err) {
          throw typedError(err, 'decrypt', addr.text);
        }
        this.backend.saveSession(addr.text, out.record);
        this.checkIdentity(addr, new Uint8Array(out.session.indexInfo.remoteIdentityKey));
        return new Uint8Array(out.plaintext.buffer, out.plaintext.byteOffset, out.plaintext.byteLength);
      });
    }
    if (type !== 'pkmsg') {
      throw new SignalError(
        'signal_invalid_message',
        `unknown Signal message type "${String(type)}": expected pkmsg or msg`,
      );
    }
    readPreKeyMessage(body);
    return this.queue.run(addr.text, async () => {
      await this.backend.prepare(addr.user);
      let plaintext: ArrayBuffer;
      try {
        plaintext = await new WorkingCopyCipher(this.store, addr.protocol).decryptPreKeyWhisperMessage(
          toArrayBuffer(body),
        );
      } catch (err) {
        throw typedError(err, 'decrypt', addr.text);
      } finally {
        this.store.discardWorkingCopy(addr.text);
        trimLibraryLockBookkeeping();
      }
      const open = this.backend.loadSession(addr.text)?.getOpenSession();
      if (open) this.checkIdentity(addr, new Uint8Array(open.indexInfo.remoteIdentityKey));
      return new Uint8Array(plaintext);
    });
  }

  /**
   * Starts a session with a remote device from its prekey bundle (keys 32 bytes as on the wire, or
   * 33 with the 0x05 byte). The next encrypt to it is a pkmsg. Reports an identity change if the
   * bundle's identity key differs from the one known for that device.
   */
  async processBundle(address: string, bundle: PreKeyBundle): Promise<{ identityChange?: IdentityChange }> {
    const addr = parseAddress(address);
    const device = bundleToDevice(addr.text, bundle);
    return this.queue.run(addr.text, async () => {
      await this.backend.prepare(addr.user);
      try {
        await new SessionBuilder(this.store, addr.protocol).processPreKey(device);
      } catch (err) {
        throw typedError(err, 'bundle', addr.text);
      } finally {
        trimLibraryLockBookkeeping();
      }
      const change = this.recordIdentity(addr, new Uint8Array(device.identityKey));
      return change ? { identityChange: change } : {};
    });
  }

  hasSession(address: string): boolean {
    return this.backend.loadSession(parseAddress(address).text)?.haveOpenSession() ?? false;
  }

  /** Forgets the session with one device (after a reset, or a gateway `<identity/>` notification). */
  async deleteSession(address: string): Promise<void> {
    const addr = parseAddress(address);
    return this.queue.run(addr.text, async () => {
      await this.backend.prepare(addr.user);
      this.backend.deleteSession(addr.text);
    });
  }

  /**
   * Makes the own keys and, with `user` (an address's user part), that user's sessions and
   * identities readable by the synchronous methods here (`hasSession`, `sessionAddresses`,
   * `remoteIdentity`, `confirmIdentity`, `safetyNumber`, the prekey methods). `encrypt`,
   * `decrypt`, `processBundle` and `deleteSession` prepare by themselves.
   */
  prepare(user?: string): Promise<void> {
    return this.backend.prepare(user);
  }

  /** Resolves once every write made so far is durable: await it before what was made leaves. */
  flush(): Promise<void> {
    return this.backend.flush();
  }

  /** Addresses of the devices of `user` this puppet has sessions with. */
  sessionAddresses(user: string): string[] {
    return this.backend.sessionAddresses(user);
  }

  // -------------------------------------------------------------------------------------------
  // Identities

  /** Compares a device's identity key with the recorded one and applies the policy; returns the trust. */
  private checkIdentity(addr: Address, key: Uint8Array): Trust {
    const known = this.backend.remoteIdentity(addr.text);
    if (known !== undefined && sameBytes(known.identityKey, key)) return known.trust;
    this.recordIdentity(addr, key);
    return this.backend.remoteIdentity(addr.text)?.trust ?? 'trusted';
  }

  private recordIdentity(addr: Address, key: Uint8Array): IdentityChange | undefined {
    const known = this.backend.remoteIdentity(addr.text);
    const now = this.now();
    if (known === undefined) {
      this.backend.putRemoteIdentity({
        address: addr.text,
        identityKey: key,
        trust: 'trusted',
        firstSeen: now,
        changedAt: now,
      });
      return undefined;
    }
    if (sameBytes(known.identityKey, key)) return undefined;
    const trust: Trust = this.policy === 'block_until_confirmed' ? 'blocked' : 'changed';
    this.backend.putRemoteIdentity({
      address: addr.text,
      identityKey: key,
      trust,
      firstSeen: known.firstSeen,
      changedAt: now,
    });
    const change: IdentityChange = {
      address: addr.text,
      user: addr.user,
      previousKey: known.identityKey,
      newKey: key,
      trust,
      at: now,
    };
    for (const listener of this.listeners) listener(change);
    return change;
  }

  /** The recorded identity of a device, if any. */
  remoteIdentity(address: string): RemoteIdentity | undefined {
    return this.backend.remoteIdentity(parseAddress(address).text);
  }

  /** The user accepted the current identity key of `address` (after comparing safety numbers). */
  confirmIdentity(address: string): void {
    const addr = parseAddress(address);
    const known = this.backend.remoteIdentity(addr.text);
    if (known === undefined) {
      throw new SignalError(
        'signal_no_session',
        `no identity known for ${addr.text}: there is nothing to confirm`,
      );
    }
    this.backend.putRemoteIdentity({ ...known, trust: 'trusted' });
  }

  /**
   * The 60-digit safety number between this puppet and a remote device ("user.device"), or a user's
   * first known device ("user"). Both sides compute the same digits when each uses its own user id as
   * the local identifier and the other's as the remote one.
   */
  safetyNumber(remote: string): string {
    const address = remote.includes('.')
      ? parseAddress(remote).text
      : this.backend.sessionAddresses(remote).find((a) => this.backend.remoteIdentity(a) !== undefined);
    const known = address === undefined ? undefined : this.backend.remoteIdentity(address);
    if (address === undefined || known === undefined) {
      throw new SignalError('signal_no_session', `no identity known for ${remote}: exchange a message first`);
    }
    // Both sides must use the same identifiers: each its own user JID and the other's, so the
    // remote's address user part is decoded back to its JID (a native's local user is its JID).
    const user = userJidOfAddress(address);
    return safetyNumber(
      this.localUser,
      withTypeByte(localIdentity(this.backend).publicKey),
      user,
      known.identityKey,
    );
  }

  // -------------------------------------------------------------------------------------------
  // Prekey upkeep: PrekeyUpkeep's (prekeys.ts), documented there.

  setUp(options: { preKeys?: number } = {}): void {
    this.prekeys.setUp(options);
  }

  prekeysToUpload(count: number): PreKey[] {
    return this.prekeys.prekeysToUpload(count);
  }

  markPrekeysUploaded(keyIds: readonly number[]): void {
    this.prekeys.markPrekeysUploaded(keyIds);
  }

  preKeysNeeded(serverCount: number): number {
    return this.prekeys.preKeysNeeded(serverCount);
  }

  currentSignedPreKey(): SignedPreKey {
    return this.prekeys.currentSignedPreKey();
  }

  signedPreKeyRotationDue(now?: number): boolean {
    return this.prekeys.signedPreKeyRotationDue(now);
  }

  rotateSignedPreKey(now?: number): SignedPreKey {
    return this.prekeys.rotateSignedPreKey(now);
  }

  prekeyUpload(count: number): PreKeyUpload {
    return this.prekeys.prekeyUpload(count);
  }
}

/** Checks a bundle's shape and turns it into the library's DeviceType (33-byte keys). */
function bundleToDevice(address: string, bundle: PreKeyBundle): DeviceType {
  const bad = (why: string) =>
    new SignalError(
      'signal_bad_bundle',
      `the prekey bundle of ${address} is unusable: ${why}; fetch it again`,
    );
  const key = (k: Uint8Array | undefined, what: string): ArrayBuffer => {
    if (
      !(k instanceof Uint8Array) ||
      !(k.length === KEY_LENGTH || (k.length === KEY_LENGTH + 1 && k[0] === 0x05))
    ) {
      throw bad(`${what} is not a 32-byte Curve25519 key`);
    }
    return toArrayBuffer(withTypeByte(k));
  };
  const keyId = (id: number, what: string): number => {
    if (!Number.isInteger(id) || id < 0 || id > MAX_KEY_ID) throw bad(`${what} id ${id} is out of range`);
    return id;
  };
  if (
    !Number.isInteger(bundle.registrationId) ||
    bundle.registrationId < 0 ||
    bundle.registrationId > 0xffffffff
  ) {
    throw bad('the registration id is not a 32-bit number');
  }
  const spk = bundle.signedPreKey;
  if (!(spk.signature instanceof Uint8Array) || spk.signature.length !== SIGNATURE_LENGTH) {
    throw bad('the signed prekey signature is not 64 bytes');
  }
  return {
    registrationId: bundle.registrationId,
    identityKey: key(bundle.identityKey, 'the identity key'),
    signedPreKey: {
      keyId: keyId(spk.id, 'the signed prekey'),
      publicKey: key(spk.publicKey, 'the signed prekey'),
      signature: toArrayBuffer(spk.signature),
    },
    ...(bundle.preKey
      ? {
          preKey: {
            keyId: keyId(bundle.preKey.id, 'the one-time prekey'),
            publicKey: key(bundle.preKey.publicKey, 'the one-time prekey'),
          },
        }
      : {}),
  };
}
