/**
 * The Noise hash functions (spec sections 4.3, 12.5-12.8) and HKDF built on their HMAC. SHA256 is
 * the one the gateway uses; SHA512 and the BLAKE2 pair cost one table row each in OpenSSL, so the
 * published vectors for them can run too.
 */
import crypto from 'node:crypto';

export type HashName = 'SHA256' | 'SHA512' | 'BLAKE2s' | 'BLAKE2b';

export interface HashFunction {
  readonly name: HashName;
  /** HASHLEN in bytes. BLOCKLEN is implied by the OpenSSL digest, which HMAC uses. */
  readonly hashLen: number;
  hash(...data: Buffer[]): Buffer;
  hmac(key: Buffer, ...data: Buffer[]): Buffer;
}

function hashFunction(name: HashName, algorithm: string, hashLen: number): HashFunction {
  return {
    name,
    hashLen,
    // One-shot crypto.hash skips the Hash object: MixHash runs a dozen times per handshake.
    hash: (...data) =>
      crypto.hash(algorithm, data.length === 1 && data[0] ? data[0] : Buffer.concat(data), 'buffer'),
    hmac(key, ...data) {
      const h = crypto.createHmac(algorithm, key);
      for (const d of data) h.update(d);
      return h.digest();
    },
  };
}

export const HASHES: Readonly<Record<HashName, HashFunction>> = {
  SHA256: hashFunction('SHA256', 'sha256', 32),
  SHA512: hashFunction('SHA512', 'sha512', 64),
  BLAKE2s: hashFunction('BLAKE2s', 'blake2s256', 32),
  BLAKE2b: hashFunction('BLAKE2b', 'blake2b512', 64),
};

const BYTE_1 = Buffer.from([0x01]);
const BYTE_2 = Buffer.from([0x02]);
const BYTE_3 = Buffer.from([0x03]);

/** HKDF(chaining_key, input_key_material, 2) of spec section 4.3. */
export function hkdf2(hash: HashFunction, chainingKey: Buffer, ikm: Buffer): [Buffer, Buffer] {
  const tempKey = hash.hmac(chainingKey, ikm);
  const output1 = hash.hmac(tempKey, BYTE_1);
  const output2 = hash.hmac(tempKey, output1, BYTE_2);
  return [output1, output2];
}

/** HKDF(chaining_key, input_key_material, 3) of spec section 4.3. */
export function hkdf3(hash: HashFunction, chainingKey: Buffer, ikm: Buffer): [Buffer, Buffer, Buffer] {
  const tempKey = hash.hmac(chainingKey, ikm);
  const output1 = hash.hmac(tempKey, BYTE_1);
  const output2 = hash.hmac(tempKey, output1, BYTE_2);
  const output3 = hash.hmac(tempKey, output2, BYTE_3);
  return [output1, output2, output3];
}
