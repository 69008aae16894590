/**
 * CipherState (spec section 5.1): a key k and a 64-bit nonce counter n. Used by SymmetricState
 * during the handshake, and as the two transport ciphers after Split().
 */
import { type Aead, aeadOf, type CipherFunctions, KEYLEN, MAX_NONCE } from './cipher-functions.js';
import { unpooledCopy } from '../../util/unpooled.js';
import { NoiseError } from './errors.js';

/**
 * Past this nonce `nearNonceLimit` turns true, so the transport rekeys or reconnects with 2^63
 * messages to spare: nobody will reach it by traffic, only by a bug or a forged setNonce.
 */
export const DEFAULT_NONCE_SOFT_LIMIT = 1n << 63n;

const TWO_32 = 0x1_0000_0000;

export class CipherState {
  readonly cipher: CipherFunctions;
  readonly nonceSoftLimit: bigint;
  private k: Buffer | null = null;
  /**
   * n as two 32-bit halves: plain numbers keep BigInt out of the per-message path. The 12-byte
   * nonce `iv` is rewritten in place before each use (OpenSSL copies it at cipher creation).
   */
  private high = 0;
  private low = 0;
  private readonly iv = Buffer.alloc(12);
  /** The built-in cipher's direct entry points; null for a caller's own CipherFunctions. */
  private readonly aead: Aead | null;

  constructor(cipher: CipherFunctions, options: { nonceSoftLimit?: bigint } = {}) {
    this.cipher = cipher;
    this.nonceSoftLimit = options.nonceSoftLimit ?? DEFAULT_NONCE_SOFT_LIMIT;
    this.aead = aeadOf(cipher) ?? null;
  }

  /** InitializeKey(key): sets k (null empties it) and resets n to zero. */
  initializeKey(key: Buffer | null): void {
    if (key !== null && key.length !== KEYLEN) {
      throw new NoiseError('noise_invalid_key', `a Noise cipher key is ${KEYLEN} bytes, got ${key.length}`);
    }
    // Kept for the session's life: out of Buffer's shared pool (src/util/unpooled.ts).
    this.k = key === null ? null : unpooledCopy(key);
    this.high = 0;
    this.low = 0;
  }

  hasKey(): boolean {
    return this.k !== null;
  }

  /** SetNonce(nonce): for tests and for transports with explicit nonces. */
  setNonce(nonce: bigint): void {
    if (nonce < 0n || nonce > MAX_NONCE) {
      throw new NoiseError('noise_invalid_state', `a Noise nonce is a 64-bit unsigned integer, got ${nonce}`);
    }
    this.high = Number(nonce >> 32n);
    this.low = Number(nonce & 0xffff_ffffn);
  }

  /** The nonce the next message will use. */
  get nonce(): bigint {
    return (BigInt(this.high) << 32n) | BigInt(this.low);
  }

  /** How many more messages this key can protect before the nonce is exhausted. */
  get noncesRemaining(): bigint {
    return MAX_NONCE - this.nonce;
  }

  /** True once the nonce passed the soft limit: rekey (both sides) or reconnect now. */
  get nearNonceLimit(): boolean {
    return this.nonce >= this.nonceSoftLimit;
  }

  /** EncryptWithAd(ad, plaintext): returns the plaintext unchanged while there is no key. */
  encryptWithAd(ad: Buffer, plaintext: Buffer): Buffer {
    if (this.k === null) return plaintext;
    this.checkNonce();
    const ciphertext =
      this.aead === null
        ? this.cipher.encrypt(this.k, this.nonce, ad, plaintext)
        : this.aead.seal(this.k, this.currentIv(this.aead), ad, plaintext);
    this.increment();
    return ciphertext;
  }

  /**
   * DecryptWithAd(ad, ciphertext): throws `noise_decrypt_failed` on a bad tag, and then leaves the
   * nonce where it was (spec 5.1), so a forged message cannot desynchronise the two sides.
   */
  decryptWithAd(ad: Buffer, ciphertext: Buffer): Buffer {
    if (this.k === null) return ciphertext;
    this.checkNonce();
    const plaintext =
      this.aead === null
        ? this.cipher.decrypt(this.k, this.nonce, ad, ciphertext)
        : this.aead.open(this.k, this.currentIv(this.aead), ad, ciphertext);
    this.increment();
    return plaintext;
  }

  /** Rekey(): k = REKEY(k); the nonce is kept (spec 11.3). Both sides must rekey at the same message. */
  rekey(): void {
    if (this.k === null) {
      throw new NoiseError('noise_invalid_state', 'Rekey() on a CipherState without a key');
    }
    this.k = this.cipher.rekey(this.k);
  }

  private currentIv(aead: Aead): Buffer {
    aead.writeNonce(this.iv, this.high, this.low);
    return this.iv;
  }

  private increment(): void {
    this.low += 1;
    if (this.low === TWO_32) {
      this.low = 0;
      this.high += 1;
    }
  }

  /** n = 2^64-1 is reserved (spec 5.1): refuse it rather than wrap. */
  private checkNonce(): void {
    if (this.high === 0xffff_ffff && this.low === 0xffff_ffff) {
      throw new NoiseError(
        'noise_nonce_exhausted',
        'this Noise cipher used its last nonce (2^64-2): reconnect to run a fresh handshake; the transport should have rekeyed or reconnected at nearNonceLimit',
      );
    }
  }
}
