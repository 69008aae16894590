/**
 * The Noise cipher functions (spec sections 4.2, 12.3, 12.4): AESGCM and ChaChaPoly through
 * node:crypto, 32-byte keys, 16-byte tag appended to the ciphertext. They differ only in the
 * OpenSSL algorithm and in the byte order of the 64-bit counter inside the 96-bit nonce.
 */
import crypto from 'node:crypto';

import { NoiseError } from './errors.js';

export type CipherName = 'AESGCM' | 'ChaChaPoly';

export const KEYLEN = 32;
export const TAGLEN = 16;
/** 2^64 - 1: reserved by the spec for REKEY, never used for a message. */
export const MAX_NONCE = 0xffff_ffff_ffff_ffffn;

export interface CipherFunctions {
  readonly name: CipherName;
  /** ENCRYPT(k, n, ad, plaintext): ciphertext with the tag appended. */
  encrypt(k: Buffer, n: bigint, ad: Buffer, plaintext: Buffer): Buffer;
  /** DECRYPT(k, n, ad, ciphertext): throws `noise_decrypt_failed` if the tag does not verify. */
  decrypt(k: Buffer, n: bigint, ad: Buffer, ciphertext: Buffer): Buffer;
  /** REKEY(k): the first 32 bytes of ENCRYPT(k, 2^64-1, zerolen, zeros). */
  rekey(k: Buffer): Buffer;
}

type Algorithm = 'aes-256-gcm' | 'chacha20-poly1305';
type AeadCipher = crypto.CipherGCM | crypto.CipherChaCha20Poly1305;
type AeadDecipher = crypto.DecipherGCM | crypto.DecipherChaCha20Poly1305;

// Two calls rather than one so that each hits its typed overload of node:crypto.
function createCipher(algorithm: Algorithm, k: Buffer, iv: Buffer): AeadCipher {
  return algorithm === 'aes-256-gcm'
    ? crypto.createCipheriv(algorithm, k, iv, { authTagLength: TAGLEN })
    : crypto.createCipheriv(algorithm, k, iv, { authTagLength: TAGLEN });
}

function createDecipher(algorithm: Algorithm, k: Buffer, iv: Buffer): AeadDecipher {
  return algorithm === 'aes-256-gcm'
    ? crypto.createDecipheriv(algorithm, k, iv, { authTagLength: TAGLEN })
    : crypto.createDecipheriv(algorithm, k, iv, { authTagLength: TAGLEN });
}

/**
 * The AEAD itself, on an explicit 12-byte nonce. CipherState calls these directly with a nonce
 * buffer it keeps and updates in place, so the transport hot path does no BigInt arithmetic and
 * allocates nothing but the output. Not exported from the package: the spec's interface is
 * `CipherFunctions` below.
 */
export interface Aead {
  /** Writes the 64-bit counter (as two 32-bit halves) into the 12-byte nonce, bytes 0..3 zero. */
  writeNonce(iv: Buffer, high: number, low: number): void;
  seal(k: Buffer, iv: Buffer, ad: Buffer, plaintext: Buffer): Buffer;
  open(k: Buffer, iv: Buffer, ad: Buffer, ciphertext: Buffer): Buffer;
}

function aead(name: CipherName, algorithm: Algorithm, writeNonce: Aead['writeNonce']): Aead {
  const seal = (k: Buffer, iv: Buffer, ad: Buffer, plaintext: Buffer): Buffer => {
    const cipher = createCipher(algorithm, k, iv);
    // Empty associated data (every transport message) is the same as none: skip the call.
    if (ad.length > 0) cipher.setAAD(ad, { plaintextLength: plaintext.length });
    const body = cipher.update(plaintext);
    // final() is empty for GCM and ChaCha20-Poly1305 (stream modes); it computes the tag.
    cipher.final();
    return Buffer.concat([body, cipher.getAuthTag()], body.length + TAGLEN);
  };
  const open = (k: Buffer, iv: Buffer, ad: Buffer, ciphertext: Buffer): Buffer => {
    if (ciphertext.length < TAGLEN) {
      throw decryptFailed(name, `ciphertext of ${ciphertext.length} bytes is shorter than the tag`);
    }
    const bodyLength = ciphertext.length - TAGLEN;
    const decipher = createDecipher(algorithm, k, iv);
    decipher.setAuthTag(ciphertext.subarray(bodyLength));
    if (ad.length > 0) decipher.setAAD(ad, { plaintextLength: bodyLength });
    const plaintext = decipher.update(ciphertext.subarray(0, bodyLength));
    try {
      decipher.final();
    } catch (cause) {
      throw decryptFailed(name, 'authentication tag mismatch', cause);
    }
    return plaintext;
  };
  return { writeNonce, seal, open };
}

const aesGcm = aead('AESGCM', 'aes-256-gcm', (iv, high, low) => {
  iv.writeUInt32BE(high, 4);
  iv.writeUInt32BE(low, 8);
});
const chaChaPoly = aead('ChaChaPoly', 'chacha20-poly1305', (iv, high, low) => {
  iv.writeUInt32LE(low, 4);
  iv.writeUInt32LE(high, 8);
});

const MASK_32 = 0xffff_ffffn;

function cipherFunctions(name: CipherName, impl: Aead): CipherFunctions {
  const nonce = (n: bigint): Buffer => {
    const iv = Buffer.alloc(12);
    impl.writeNonce(iv, Number((n >> 32n) & MASK_32), Number(n & MASK_32));
    return iv;
  };
  const encrypt = (k: Buffer, n: bigint, ad: Buffer, plaintext: Buffer): Buffer =>
    impl.seal(k, nonce(n), ad, plaintext);
  const decrypt = (k: Buffer, n: bigint, ad: Buffer, ciphertext: Buffer): Buffer =>
    impl.open(k, nonce(n), ad, ciphertext);
  const rekey = (k: Buffer): Buffer =>
    encrypt(k, MAX_NONCE, Buffer.alloc(0), Buffer.alloc(KEYLEN)).subarray(0, KEYLEN);
  return { name, encrypt, decrypt, rekey };
}

/** AES-256-GCM; nonce = 4 zero bytes || 64-bit big-endian counter (spec 12.4). */
export const AESGCM: CipherFunctions = cipherFunctions('AESGCM', aesGcm);

/** ChaCha20-Poly1305 (RFC 8439); nonce = 4 zero bytes || 64-bit little-endian counter (spec 12.3). */
export const ChaChaPoly: CipherFunctions = cipherFunctions('ChaChaPoly', chaChaPoly);

const AEADS = new Map<CipherFunctions, Aead>([
  [AESGCM, aesGcm],
  [ChaChaPoly, chaChaPoly],
]);

/** The fast path of a built-in cipher; undefined for a caller's own CipherFunctions. */
export function aeadOf(cipher: CipherFunctions): Aead | undefined {
  return AEADS.get(cipher);
}

export const CIPHERS: Readonly<Record<CipherName, CipherFunctions>> = { AESGCM, ChaChaPoly };

function decryptFailed(name: CipherName, why: string, cause?: unknown): NoiseError {
  return new NoiseError(
    'noise_decrypt_failed',
    `Noise ${name} decryption failed (${why}): the message was altered, truncated, reordered or sent under another key; close the connection`,
    { cause },
  );
}
