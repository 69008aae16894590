/**
 * Encrypted frames: a frame socket plus the two transport CipherStates a completed Noise handshake
 * splits into. Knows nothing of the handshake or of stanzas; depends on the cipher only through
 * the structural TransportCipher interface, so any Noise implementation (or a test cipher) fits.
 *
 * Deviation from Noise (rev. 34, section 3): a transport message may exceed 65,535 bytes, up to the
 * frame maximum; AES-GCM and ChaCha20-Poly1305 both allow it. See docs/PROTOCOL.md, section 1.
 */
import { TransportError } from './errors.js';
import type { FrameSocket, TransportClose } from './frame-socket.js';

/** One direction's transport CipherState (Noise: EncryptWithAd / DecryptWithAd with nonce upkeep).
 * `decryptWithAd` throws when the tag does not verify. */
export interface TransportCipher {
  encryptWithAd(ad: Buffer, plaintext: Buffer): Buffer;
  decryptWithAd(ad: Buffer, ciphertext: Buffer): Buffer;
}

/** The AEAD tag both Noise ciphers append. */
export const NOISE_TAG_SIZE = 16;

/** Transport messages carry no associated data. */
const EMPTY_AD = Buffer.alloc(0);

export class NoiseSocket implements AsyncIterable<Buffer> {
  readonly #frames: FrameSocket;
  readonly #sendCipher: TransportCipher;
  readonly #receiveCipher: TransportCipher;
  #decryptFailure: TransportError | undefined;

  /** `sendCipher` encrypts what this side sends (the initiator's first split CipherState on a
   * client, the second on a server); `receiveCipher` the other. */
  constructor(frames: FrameSocket, sendCipher: TransportCipher, receiveCipher: TransportCipher) {
    this.#frames = frames;
    this.#sendCipher = sendCipher;
    this.#receiveCipher = receiveCipher;
  }

  /** The largest plaintext one frame can carry: the frame maximum minus the tag. */
  get maxPlaintextSize(): number {
    return this.#frames.maxFrameSize - NOISE_TAG_SIZE;
  }

  get isOpen(): boolean {
    return this.#frames.isOpen;
  }

  /** Resolves once the connection has closed, with the reason (e.g. `transport_decrypt_failed`). */
  get closed(): Promise<TransportClose> {
    return this.#frames.closed;
  }

  /**
   * Encrypts and sends one message. Encryption and write happen together, so nonces go on the wire
   * in the order they were used. Returns false when the write buffer is full: await drain().
   * Throws `transport_outgoing_frame_too_large` over maxPlaintextSize, `transport_closed` when closed.
   */
  send(plaintext: Uint8Array): boolean {
    if (plaintext.length > this.maxPlaintextSize) {
      throw new TransportError(
        'transport_outgoing_frame_too_large',
        `refusing to send a message of ${plaintext.length} bytes, over the maximum of ${this.maxPlaintextSize} ` +
          `(frame maximum ${this.#frames.maxFrameSize} minus the ${NOISE_TAG_SIZE}-byte tag): split it`,
      );
    }
    // Checked before encrypting so a refused send does not use up a nonce.
    if (!this.#frames.isOpen) {
      throw new TransportError(
        'transport_closed',
        'cannot send: the connection is closed; open a new connection',
      );
    }
    const ciphertext = this.#sendCipher.encryptWithAd(EMPTY_AD, toBuffer(plaintext));
    return this.#frames.sendFrame(ciphertext);
  }

  drain(): Promise<void> {
    return this.#frames.drain();
  }

  /** The next decrypted message, in order. Rejects like FrameSocket.receive, and with
   * `transport_decrypt_failed` (after closing the connection) when a frame does not decrypt. */
  async receive(): Promise<Buffer> {
    if (this.#decryptFailure) throw this.#decryptFailure;
    return this.#decrypt(await this.#frames.receive());
  }

  /**
   * The next decrypted message, or undefined once the connection closed cleanly; rejects with the
   * reason otherwise (as the iterator below, without its generator: see FrameSocket.next).
   */
  async next(): Promise<Buffer | undefined> {
    if (this.#decryptFailure) throw this.#decryptFailure;
    const frame = await this.#frames.next();
    return frame === undefined ? undefined : this.#decrypt(frame);
  }

  /** Iterates decrypted messages; ends on a clean close, throws the reason otherwise. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer, void, undefined> {
    if (this.#decryptFailure) throw this.#decryptFailure;
    for await (const frame of this.#frames) yield this.#decrypt(frame);
  }

  setIdleTimeout(ms: number): void {
    this.#frames.setIdleTimeout(ms);
  }

  close(): void {
    this.#frames.close();
  }

  /** Decrypts in the order frames are taken, which is arrival order: each frame's nonce is the next. */
  #decrypt(frame: Buffer): Buffer {
    if (this.#decryptFailure) throw this.#decryptFailure;
    try {
      return this.#receiveCipher.decryptWithAd(EMPTY_AD, frame);
    } catch (cause) {
      // Whatever the cipher threw (noise_decrypt_failed, nonce exhaustion), the stream is now
      // unusable: later nonces no longer line up.
      const error = new TransportError(
        'transport_decrypt_failed',
        `a ${frame.length}-byte transport frame did not decrypt: tampered, reordered, or keyed ` +
          'differently; closing the connection, reconnect with a new handshake',
        { cause },
      );
      this.#decryptFailure = error;
      this.#frames.abort(error);
      throw error;
    }
  }
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
