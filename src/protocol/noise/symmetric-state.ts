/**
 * SymmetricState (spec section 5.2): the chaining key ck, the handshake hash h, and the
 * CipherState that encrypts handshake payloads and static keys with h as associated data.
 */
import { type CipherFunctions } from './cipher-functions.js';
import { CipherState } from './cipher-state.js';
import { type HashFunction, hkdf2, hkdf3 } from './hash-functions.js';

export class SymmetricState {
  readonly hash: HashFunction;
  readonly cipherState: CipherState;
  private ck: Buffer;
  private h: Buffer;

  private constructor(cipher: CipherFunctions, hash: HashFunction, h: Buffer) {
    this.hash = hash;
    this.cipherState = new CipherState(cipher);
    this.h = h;
    this.ck = h;
  }

  /**
   * InitializeSymmetric(protocol_name): h is the name zero-padded to HASHLEN, or its hash when
   * longer; ck = h; no key.
   */
  static initializeSymmetric(
    protocolName: string,
    cipher: CipherFunctions,
    hash: HashFunction,
  ): SymmetricState {
    const name = Buffer.from(protocolName, 'ascii');
    let h: Buffer;
    if (name.length <= hash.hashLen) {
      h = Buffer.alloc(hash.hashLen);
      name.copy(h);
    } else {
      h = hash.hash(name);
    }
    return new SymmetricState(cipher, hash, h);
  }

  /** MixKey(input_key_material). */
  mixKey(inputKeyMaterial: Buffer): void {
    const [ck, tempK] = hkdf2(this.hash, this.ck, inputKeyMaterial);
    this.ck = ck;
    this.cipherState.initializeKey(truncateKey(tempK));
  }

  /** MixHash(data): h = HASH(h || data). */
  mixHash(data: Buffer): void {
    this.h = this.hash.hash(this.h, data);
  }

  /** MixKeyAndHash(input_key_material): for PSKs; kept for completeness of the spec's API. */
  mixKeyAndHash(inputKeyMaterial: Buffer): void {
    const [ck, tempH, tempK] = hkdf3(this.hash, this.ck, inputKeyMaterial);
    this.ck = ck;
    this.mixHash(tempH);
    this.cipherState.initializeKey(truncateKey(tempK));
  }

  /** GetHandshakeHash(): a copy of h, for channel binding. */
  getHandshakeHash(): Buffer {
    return Buffer.from(this.h);
  }

  hasKey(): boolean {
    return this.cipherState.hasKey();
  }

  /** EncryptAndHash(plaintext): hashes the ciphertext, or the plaintext when there is no key yet
   * (an empty payload is hashed too: MixHash of zero bytes still changes h). */
  encryptAndHash(plaintext: Buffer): Buffer {
    const ciphertext = this.cipherState.encryptWithAd(this.h, plaintext);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  /** DecryptAndHash(ciphertext): h only advances when decryption succeeded. */
  decryptAndHash(ciphertext: Buffer): Buffer {
    const plaintext = this.cipherState.decryptWithAd(this.h, ciphertext);
    this.mixHash(ciphertext);
    return plaintext;
  }

  /** Split(): c1 encrypts initiator-to-responder messages, c2 the other direction. */
  split(): [CipherState, CipherState] {
    const [tempK1, tempK2] = hkdf2(this.hash, this.ck, Buffer.alloc(0));
    const c1 = new CipherState(this.cipherState.cipher);
    const c2 = new CipherState(this.cipherState.cipher);
    c1.initializeKey(truncateKey(tempK1));
    c2.initializeKey(truncateKey(tempK2));
    return [c1, c2];
  }
}

/** With a 64-byte hash, temp_k is truncated to the 32-byte cipher key (spec 5.2). */
function truncateKey(tempK: Buffer): Buffer {
  return tempK.length === 32 ? tempK : tempK.subarray(0, 32);
}
