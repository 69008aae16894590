/**
 * Files that wait on disk sealed with the operator's at-rest key (`bridge.at_rest_key_file`): an
 * adapter's spool of files a local user sent until the core has sent them, and the files the XMPP
 * adapter serves to XMPP clients. The core opens them with the same key when it sends them.
 *
 * Format: "IBSF" | 0x01 | salt (16) | chunks. The file's key is HKDF-SHA256(at-rest key, salt,
 * "interop-bridge sealed file v1"); the plaintext is cut into chunks of 64 KiB, each sealed with
 * AES-256-GCM under the nonce counter (11 bytes, big-endian) | last (1 byte: 1 on the final chunk),
 * the header as associated data (the STREAM construction, as age uses it). A reader therefore
 * notices a chunk altered, moved, dropped or added, and a file cut short, before the end.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InteropError } from '../errors.js';

const MAGIC = Buffer.from('IBSF\x01', 'latin1');
const SALT = 16;
const HEADER = MAGIC.length + SALT;
const TAG = 16;
/** Plaintext bytes per chunk. */
export const SEALED_CHUNK = 64 * 1024;
const INFO = Buffer.from('interop-bridge sealed file v1');

export class SealedFileError extends InteropError {}

/** Seals files with one 32-byte at-rest key and opens them again. */
export class FileSealer {
  readonly #key: Buffer;

  constructor(key: Uint8Array) {
    if (key.length !== 32) {
      throw new SealedFileError('sealed_file_key_invalid', `an at-rest key is 32 bytes, not ${key.length}`);
    }
    this.#key = Buffer.from(key);
  }

  /** A stream transform for `pipeline`: plaintext in, the sealed file's bytes out. */
  sealing(): (source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>) => AsyncGenerator<Buffer> {
    const key = this.#key;
    return async function* (source) {
      const salt = randomBytes(SALT);
      const header = Buffer.concat([MAGIC, salt]);
      const fileKey = deriveKey(key, salt);
      yield header;
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      let counter = 0;
      for await (const piece of source) {
        pending.push(Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength));
        pendingBytes += piece.byteLength;
        // A chunk goes out only when more follows it, so that the final one is known as final.
        while (pendingBytes > SEALED_CHUNK) {
          const all = Buffer.concat(pending);
          yield sealChunk(fileKey, header, counter++, all.subarray(0, SEALED_CHUNK), false);
          pending = [all.subarray(SEALED_CHUNK)];
          pendingBytes = all.length - SEALED_CHUNK;
        }
      }
      yield sealChunk(fileKey, header, counter, Buffer.concat(pending), true);
    };
  }

  /** Writes `plain` to `file` sealed (mode 0600). */
  async writeSealed(file: string, plain: Uint8Array): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const part of this.sealing()([plain])) chunks.push(part);
    await writeFile(file, Buffer.concat(chunks), { mode: 0o600 });
  }

  /** Copies the plain file `from` to `to`, sealed (mode 0600). */
  async sealCopy(from: string, to: string): Promise<void> {
    await pipeline(createReadStream(from), this.sealing(), createWriteStream(to, { mode: 0o600 }));
  }

  /**
   * The plaintext of a sealed file as a stream. It fails (SealedFileError) as soon as a chunk does
   * not open: another key, or altered; and at the end when the file was cut short.
   */
  open(file: string): Readable {
    return Readable.from(this.#opened(file));
  }

  /** The whole plaintext of a sealed file. */
  async read(file: string): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const part of this.#opened(file)) parts.push(part);
    return Buffer.concat(parts);
  }

  async *#opened(file: string): AsyncGenerator<Buffer> {
    let buf: Buffer = Buffer.alloc(0);
    let header: Buffer | undefined;
    let fileKey: Buffer | undefined;
    let counter = 0;
    for await (const piece of createReadStream(file, { highWaterMark: SEALED_CHUNK + TAG })) {
      buf = buf.length === 0 ? (piece as Buffer) : Buffer.concat([buf, piece as Buffer]);
      if (header === undefined) {
        if (buf.length < HEADER) continue;
        header = Buffer.from(buf.subarray(0, HEADER));
        if (!header.subarray(0, MAGIC.length).equals(MAGIC)) throw notSealed(file);
        fileKey = deriveKey(this.#key, header.subarray(MAGIC.length));
        buf = buf.subarray(HEADER);
      }
      while (buf.length > SEALED_CHUNK + TAG) {
        yield openChunk(fileKey!, header, counter++, buf.subarray(0, SEALED_CHUNK + TAG), false, file);
        buf = buf.subarray(SEALED_CHUNK + TAG);
      }
    }
    if (header === undefined) throw notSealed(file);
    yield openChunk(fileKey!, header, counter, buf, true, file);
  }
}

/** The plaintext size of a sealed file of `sealedSize` bytes. */
export function plainSizeOf(sealedSize: number): number {
  const body = sealedSize - HEADER;
  const chunks = Math.max(1, Math.ceil(body / (SEALED_CHUNK + TAG)));
  return body - chunks * TAG;
}

/** Whether the file starts as a sealed file does (legacy plain files do not). */
export async function isSealedFile(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const head = Buffer.alloc(MAGIC.length);
    const { bytesRead } = await handle.read(head, 0, MAGIC.length, 0);
    return bytesRead === MAGIC.length && head.equals(MAGIC);
  } finally {
    await handle.close();
  }
}

function deriveKey(key: Buffer, salt: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', key, salt, INFO, 32));
}

function nonceOf(counter: number, last: boolean): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeUIntBE(counter, 5, 6);
  nonce[11] = last ? 1 : 0;
  return nonce;
}

function sealChunk(key: Buffer, header: Buffer, counter: number, plain: Buffer, last: boolean): Buffer {
  const cipher = createCipheriv('aes-256-gcm', key, nonceOf(counter, last));
  cipher.setAAD(header);
  return Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
}

function openChunk(
  key: Buffer,
  header: Buffer,
  counter: number,
  sealed: Buffer,
  last: boolean,
  file: string,
): Buffer {
  if (sealed.length < TAG) throw damaged(file);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, nonceOf(counter, last));
    decipher.setAAD(header);
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG));
    return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG)), decipher.final()]);
  } catch {
    throw damaged(file);
  }
}

const notSealed = (file: string) =>
  new SealedFileError('sealed_file_not_sealed', `${file} is not a sealed file`);
const damaged = (file: string) =>
  new SealedFileError(
    'sealed_file_unreadable',
    `${file} cannot be opened: it was sealed under another at-rest key, altered or cut short`,
  );
