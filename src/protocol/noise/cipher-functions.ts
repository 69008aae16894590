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

function cipherFunctions(
  name: CipherName,
  algorithm: Algorithm,
  nonce: (n: bigint) => Buffer,
): CipherFunctions {
  const encrypt = (k: Buffer, n: bigint, ad: Buffer, plaintext: Buffer): Buffer => {
    const cipher = createCipher(algorithm, k, nonce(n));
    cipher.setAAD(ad, { plaintextLength: plaintext.length });
    const head = cipher.update(plaintext);
    const tail = cipher.final();
    return Buffer.concat([head, tail, cipher.getAuthTag()]);
  };
  const decrypt = (k: Buffer, n: bigint, ad: Buffer, ciphertext: Buffer): Buffer => {
    if (ciphertext.length < TAGLEN) {
      throw decryptFailed(name, `ciphertext of ${ciphertext.length} bytes is shorter than the tag`);
    }
    const body = ciphertext.subarray(0, ciphertext.length - TAGLEN);
    const decipher = createDecipher(algorithm, k, nonce(n));
    decipher.setAAD(ad, { plaintextLength: body.length });
    decipher.setAuthTag(ciphertext.subarray(ciphertext.length - TAGLEN));
    const head = decipher.update(body);
    try {
      return Buffer.concat([head, decipher.final()]);
    } catch (cause) {
      throw decryptFailed(name, 'authentication tag mismatch', cause);
    }
  };
  const rekey = (k: Buffer): Buffer =>
    encrypt(k, MAX_NONCE, Buffer.alloc(0), Buffer.alloc(KEYLEN)).subarray(0, KEYLEN);
  return { name, encrypt, decrypt, rekey };
}

/** AES-256-GCM; nonce = 4 zero bytes || 64-bit big-endian counter (spec 12.4). */
export const AESGCM: CipherFunctions = cipherFunctions('AESGCM', 'aes-256-gcm', (n) => {
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64BE(n, 4);
  return iv;
});

/** ChaCha20-Poly1305 (RFC 8439); nonce = 4 zero bytes || 64-bit little-endian counter (spec 12.3). */
export const ChaChaPoly: CipherFunctions = cipherFunctions('ChaChaPoly', 'chacha20-poly1305', (n) => {
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64LE(n, 4);
  return iv;
});

export const CIPHERS: Readonly<Record<CipherName, CipherFunctions>> = { AESGCM, ChaChaPoly };

function decryptFailed(name: CipherName, why: string, cause?: unknown): NoiseError {
  return new NoiseError(
    'noise_decrypt_failed',
    `Noise ${name} decryption failed (${why}): the message was altered, truncated, reordered or sent under another key; close the connection`,
    { cause },
  );
}
