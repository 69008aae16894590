/**
 * Files in an encrypted Matrix room as a client sends and reads them (the Matrix spec's
 * "Sending encrypted attachments", v2: AES-256-CTR with a fresh key and IV, the key as a JWK, the
 * ciphertext's SHA-256): what Element does, written here for the demo's check and the tests' user,
 * independently of the bridge's own code (adapters/matrix/crypto/attachments.ts) so that a mistake
 * there cannot hide itself.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/** An encrypted attachment's `file` (client-server API, "Sending encrypted attachments"). */
export interface EncryptedFile {
  v: 'v2';
  url: string;
  key: { kty: 'oct'; key_ops: string[]; alg: 'A256CTR'; k: string; ext: true };
  iv: string;
  hashes: { sha256: string };
}

const unpadded = (b: Buffer): string => b.toString('base64').replace(/=+$/, '');

/** As Element encrypts a file: AES-256-CTR, a fresh key and IV, the ciphertext's SHA-256. */
export function encryptAttachment(plain: Buffer): {
  ciphertext: Buffer;
  file: (url: string) => EncryptedFile;
} {
  const key = randomBytes(32);
  // 8 random bytes, then a zero counter.
  const iv = Buffer.concat([randomBytes(8), Buffer.alloc(8)]);
  const cipher = createCipheriv('aes-256-ctr', key, iv);
  const ciphertext = Buffer.concat([cipher.update(plain), cipher.final()]);
  return {
    ciphertext,
    file: (url) => ({
      v: 'v2',
      url,
      key: {
        kty: 'oct',
        key_ops: ['encrypt', 'decrypt'],
        alg: 'A256CTR',
        k: key.toString('base64url'),
        ext: true,
      },
      iv: unpadded(iv),
      hashes: { sha256: unpadded(createHash('sha256').update(ciphertext).digest()) },
    }),
  };
}

/** As Element decrypts a file: the hash checked first, then AES-256-CTR with the event's key. */
export function decryptAttachment(ciphertext: Buffer, file: EncryptedFile): Buffer {
  if (file.v !== 'v2') throw new Error(`an encrypted file of version ${String(file.v)}, not v2`);
  const hash = unpadded(createHash('sha256').update(ciphertext).digest());
  if (hash !== file.hashes.sha256.replace(/=+$/, '')) throw new Error('the file does not match its hash');
  const decipher = createDecipheriv(
    'aes-256-ctr',
    Buffer.from(file.key.k, 'base64url'),
    Buffer.from(file.iv, 'base64'),
  );
  return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
}
