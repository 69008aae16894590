/**
 * The Noise hash functions (spec sections 4.3, 12.5-12.8) and HKDF built on their HMAC. SHA256 is
 * the one the gateway uses; SHA512 and the BLAKE2 pair cost one table row each in OpenSSL, so the
 * published vectors for them can run too.
 */
import crypto from 'node:crypto';

import { hkdfSha256 } from './hkdf-sha256.js';

export type HashName = 'SHA256' | 'SHA512' | 'BLAKE2s' | 'BLAKE2b';

export interface HashFunction {
  readonly name: HashName;
  /** HASHLEN in bytes (BLOCKLEN is internal to HMAC). */
  readonly hashLen: number;
  hash(...data: Buffer[]): Buffer;
  hmac(key: Buffer, ...data: Buffer[]): Buffer;
}

/**
 * HMAC (RFC 2104) from two one-shot hashes over a reused scratch buffer. node:crypto's createHmac
 * builds a stream object and a native handle per call; a handshake does about 30 HMACs (three per
 * HKDF) and those short-lived native objects made the garbage collector the third-largest cost of
 * a handshake. Same output, byte for byte (the vectors pin it).
 */
function hashFunction(name: HashName, algorithm: string, hashLen: number, blockLen: number): HashFunction {
  const digest = (data: Buffer): Buffer => crypto.hash(algorithm, data, 'buffer');
  // (key XOR ipad) || message, and (key XOR opad) || inner hash. Zeroed after each use: they hold
  // key material and live as long as the process.
  const inner = Buffer.alloc(blockLen + 512);
  const outer = Buffer.alloc(blockLen + hashLen);
  const joined = Buffer.alloc(1024);
  const hmac = (key: Buffer, ...data: Buffer[]): Buffer => {
    const k = key.length > blockLen ? digest(key) : key;
    let length = blockLen;
    for (const d of data) length += d.length;
    const scratch = length <= inner.length ? inner : Buffer.alloc(length);
    for (let i = 0; i < blockLen; i++) {
      const byte = i < k.length ? (k[i] as number) : 0;
      scratch[i] = byte ^ 0x36;
      outer[i] = byte ^ 0x5c;
    }
    let offset = blockLen;
    for (const d of data) offset += d.copy(scratch, offset);
    digest(scratch.subarray(0, length)).copy(outer, blockLen);
    const mac = digest(outer);
    scratch.fill(0, 0, length);
    outer.fill(0);
    return mac;
  };
  return {
    name,
    hashLen,
    // One-shot crypto.hash skips the Hash object: MixHash runs a dozen times per handshake. Its
    // h || data is assembled in a scratch buffer rather than a new one each time.
    hash(...data) {
      if (data.length === 1 && data[0]) return digest(data[0]);
      let length = 0;
      for (const d of data) length += d.length;
      if (length > joined.length) return digest(Buffer.concat(data, length));
      let offset = 0;
      for (const d of data) offset += d.copy(joined, offset);
      return digest(joined.subarray(0, length));
    },
    hmac,
  };
}

export const HASHES: Readonly<Record<HashName, HashFunction>> = {
  SHA256: hashFunction('SHA256', 'sha256', 32, 64),
  SHA512: hashFunction('SHA512', 'sha512', 64, 128),
  BLAKE2s: hashFunction('BLAKE2s', 'blake2s256', 32, 64),
  BLAKE2b: hashFunction('BLAKE2b', 'blake2b512', 64, 128),
};

const BYTE_1 = Buffer.from([0x01]);
const BYTE_2 = Buffer.from([0x02]);
const BYTE_3 = Buffer.from([0x03]);

/** HKDF(chaining_key, input_key_material, 2) of spec section 4.3. */
export function hkdf2(hash: HashFunction, chainingKey: Buffer, ikm: Buffer): [Buffer, Buffer] {
  if (hash === HASHES.SHA256) {
    const [output1, output2] = hkdfSha256(chainingKey, ikm, 2) as [Buffer, Buffer];
    return [output1, output2];
  }
  const tempKey = hash.hmac(chainingKey, ikm);
  const output1 = hash.hmac(tempKey, BYTE_1);
  const output2 = hash.hmac(tempKey, output1, BYTE_2);
  return [output1, output2];
}

/** HKDF(chaining_key, input_key_material, 3) of spec section 4.3. */
export function hkdf3(hash: HashFunction, chainingKey: Buffer, ikm: Buffer): [Buffer, Buffer, Buffer] {
  if (hash === HASHES.SHA256) {
    const [output1, output2, output3] = hkdfSha256(chainingKey, ikm, 3) as [Buffer, Buffer, Buffer];
    return [output1, output2, output3];
  }
  const tempKey = hash.hmac(chainingKey, ikm);
  const output1 = hash.hmac(tempKey, BYTE_1);
  const output2 = hash.hmac(tempKey, output1, BYTE_2);
  const output3 = hash.hmac(tempKey, output2, BYTE_3);
  return [output1, output2, output3];
}
