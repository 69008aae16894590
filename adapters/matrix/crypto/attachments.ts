/**
 * Encrypted attachments (client-server API, "Sending encrypted attachments"): in an encrypted room a
 * file is uploaded as AES-256-CTR ciphertext, and the event carries, instead of `url`, a `file`
 * object with the mxc URI, the key (a JWK), the IV and the ciphertext's SHA-256. The event itself is
 * encrypted, so only its readers learn the key.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { InteropError } from '../../../src/errors.js';

/** The `file` of an encrypted attachment (EncryptedFile). */
export interface EncryptedFile {
  readonly v: 'v2';
  readonly url: string;
  readonly key: {
    readonly kty: 'oct';
    readonly key_ops: readonly string[];
    readonly alg: 'A256CTR';
    readonly k: string;
    readonly ext: true;
  };
  readonly iv: string;
  readonly hashes: { readonly sha256: string };
}

const unpadded = (b: Buffer): string => b.toString('base64').replace(/=+$/, '');

/** Encrypts a file; `file(url)` is the event's `file` once the ciphertext is uploaded at `url`. */
export function encryptAttachment(plain: Uint8Array): {
  ciphertext: Buffer;
  file: (url: string) => EncryptedFile;
} {
  const key = randomBytes(32);
  // The spec's IV: 8 random bytes, then a zero counter (clients expect the high bit clear).
  const iv = Buffer.concat([randomBytes(8), Buffer.alloc(8)]);
  const cipher = createCipheriv('aes-256-ctr', key, iv);
  const ciphertext = Buffer.concat([cipher.update(plain), cipher.final()]);
  const sha256 = unpadded(createHash('sha256').update(ciphertext).digest());
  const k = key.toString('base64url');
  key.fill(0);
  return {
    ciphertext,
    file: (url) => ({
      v: 'v2',
      url,
      key: { kty: 'oct', key_ops: ['encrypt', 'decrypt'], alg: 'A256CTR', k, ext: true },
      iv: unpadded(iv),
      hashes: { sha256 },
    }),
  };
}

/** The `file` of an event, if it is a well-formed encrypted attachment. */
export function encryptedFileOf(value: unknown): EncryptedFile | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const f = value as Record<string, unknown>;
  const key = f['key'] as Record<string, unknown> | undefined;
  const hashes = f['hashes'] as Record<string, unknown> | undefined;
  return typeof f['url'] === 'string' &&
    typeof f['iv'] === 'string' &&
    typeof key?.['k'] === 'string' &&
    typeof hashes?.['sha256'] === 'string'
    ? (f as unknown as EncryptedFile)
    : undefined;
}

/** The plaintext of a downloaded attachment; throws when its hash or key does not fit. */
export function decryptAttachment(ciphertext: Buffer, file: EncryptedFile): Buffer {
  const actual = unpadded(createHash('sha256').update(ciphertext).digest());
  if (actual !== file.hashes.sha256.replace(/=+$/, '')) {
    throw new InteropError('matrix_attachment_altered', 'the encrypted file does not match its hash');
  }
  const key = Buffer.from(file.key.k, 'base64url');
  const iv = Buffer.from(file.iv, 'base64');
  if (key.length !== 32 || iv.length !== 16) {
    throw new InteropError('matrix_attachment_bad_key', 'the encrypted file has no valid key');
  }
  const decipher = createDecipheriv('aes-256-ctr', key, iv);
  const plain = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  key.fill(0);
  return plain;
}
