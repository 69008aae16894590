/**
 * Safety numbers: Signal's numeric fingerprint (version 0, as the library's FingerprintGenerator
 * computes it), on node:crypto. For each side: SHA-512 iterated 5200 times over
 * (0x0000 ‖ identity key (33 bytes) ‖ identifier), each round hashing the previous digest ‖ key;
 * the first 30 bytes make six 5-digit groups. The two 30-digit halves are sorted and joined, so both
 * sides see the same 60 digits.
 */
import crypto from 'node:crypto';

export const FINGERPRINT_ITERATIONS = 5200;

function displayString(identifier: string, identityKey: Uint8Array, iterations: number): string {
  const key = Buffer.from(identityKey);
  let hash: Buffer = Buffer.concat([Buffer.alloc(2), key, Buffer.from(identifier, 'utf8')]);
  for (let i = 0; i < iterations; i++) {
    hash = crypto.createHash('sha512').update(hash).update(key).digest();
  }
  let out = '';
  for (let offset = 0; offset < 30; offset += 5) {
    const chunk = hash.readUIntBE(offset, 5) % 100000;
    out += chunk.toString().padStart(5, '0');
  }
  return out;
}

/** The 60-digit safety number of two identities (keys in their 33-byte 0x05 form). */
export function safetyNumber(
  localIdentifier: string,
  localIdentityKey: Uint8Array,
  remoteIdentifier: string,
  remoteIdentityKey: Uint8Array,
  iterations = FINGERPRINT_ITERATIONS,
): string {
  return [
    displayString(localIdentifier, localIdentityKey, iterations),
    displayString(remoteIdentifier, remoteIdentityKey, iterations),
  ]
    .sort()
    .join('');
}
