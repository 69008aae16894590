/**
 * WhatsApp's media encryption, streaming both ways so a file is never held whole in memory.
 *
 *   keys     = HKDF-SHA256(ikm = mediaKey (32 random bytes), salt = 32 zero bytes, info = per type, 112)
 *              -> iv (16) | cipherKey (32) | macKey (32) | refKey (32, unused)
 *   uploaded = AES-256-CBC(cipherKey, iv, PKCS#7(plaintext)) | HMAC-SHA256(macKey, iv | ciphertext)[0..10)
 *
 * Decryption verifies before it releases: the plaintext is decrypted into a private spool file
 * while the MAC and both hashes are computed, and `decryptMedia` only returns a handle to that file
 * once every check has passed (on any failure the spool is deleted). One pass over the download,
 * and no caller can read a byte of plaintext from a blob that fails a check.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import type { Cipher, Decipher, Hash, Hmac } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import type { Readable, TransformCallback, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InteropError } from '../errors.js';

export type MediaType = 'image' | 'video' | 'audio' | 'document';

/** HKDF info strings, as WhatsApp's clients use them (voice notes are audio). */
export const MEDIA_KEY_INFO: Readonly<Record<MediaType, string>> = {
  image: 'WhatsApp Image Keys',
  video: 'WhatsApp Video Keys',
  audio: 'WhatsApp Audio Keys',
  document: 'WhatsApp Document Keys',
};

export const MEDIA_KEY_LENGTH = 32;
/** Bytes of the truncated HMAC-SHA256 appended to the ciphertext. */
export const MEDIA_MAC_LENGTH = 10;
const BLOCK = 16;
const EXPANDED_LENGTH = 112;
const WRITE_BATCH = 64 * 1024;
/** RFC 5869: "not provided" salt is HashLen zero bytes (identical to an empty salt under HMAC). */
const HKDF_SALT = Buffer.alloc(32);

export type MediaErrorCode =
  | 'media_bad_key'
  | 'media_too_large'
  | 'media_truncated'
  | 'media_mac_mismatch'
  | 'media_hash_mismatch'
  | 'media_bad_padding'
  | 'media_length_mismatch';

export class MediaError extends InteropError {
  declare readonly code: MediaErrorCode;

  constructor(code: MediaErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** `fileEncSha256` (the uploaded bytes) or `fileSha256` (the plaintext) did not match the message. */
export class MediaHashMismatchError extends MediaError {
  readonly which: 'enc' | 'plain';

  constructor(which: 'enc' | 'plain', message: string) {
    super('media_hash_mismatch', message);
    this.which = which;
  }
}

export interface MediaKeys {
  iv: Buffer;
  cipherKey: Buffer;
  macKey: Buffer;
  /** Derived but unused, as in WhatsApp's scheme. */
  refKey: Buffer;
}

export function generateMediaKey(): Uint8Array {
  return new Uint8Array(randomBytes(MEDIA_KEY_LENGTH));
}

export function deriveMediaKeys(mediaKey: Uint8Array, type: MediaType): MediaKeys {
  if (mediaKey.length !== MEDIA_KEY_LENGTH) {
    throw new MediaError(
      'media_bad_key',
      `media key is ${mediaKey.length} bytes, expected ${MEDIA_KEY_LENGTH}: the message's mediaKey is ` +
        'corrupt, the media cannot be decrypted; ask the sender to send it again',
    );
  }
  const expanded = Buffer.from(
    hkdfSync('sha256', mediaKey, HKDF_SALT, MEDIA_KEY_INFO[type], EXPANDED_LENGTH),
  );
  return {
    iv: expanded.subarray(0, 16),
    cipherKey: expanded.subarray(16, 48),
    macKey: expanded.subarray(48, 80),
    refKey: expanded.subarray(80, 112),
  };
}

/** Size of the uploaded blob for a plaintext of `fileLength` bytes (PKCS#7 always adds 1..16). */
export function encryptedMediaLength(fileLength: number): number {
  return (Math.floor(fileLength / BLOCK) + 1) * BLOCK + MEDIA_MAC_LENGTH;
}

/** What the sender puts in the media message (besides url / directPath). */
export interface EncryptedMediaInfo {
  mediaKey: Uint8Array;
  /** SHA-256 of the plaintext. */
  fileSha256: Uint8Array;
  /** SHA-256 of the uploaded bytes (ciphertext | mac). */
  fileEncSha256: Uint8Array;
  /** Plaintext length in bytes. */
  fileLength: number;
  /** Uploaded length in bytes. */
  encLength: number;
}

export type MediaSource = Readable | AsyncIterable<Uint8Array>;

export interface EncryptOptions {
  /** Use this key instead of a fresh random one (tests, or re-encrypting the same upload). */
  mediaKey?: Uint8Array;
  /** Refuse plaintexts longer than this many bytes, as soon as the stream passes it. */
  maxBytes?: number;
}

/**
 * A Transform: plaintext in, uploaded bytes (ciphertext | mac) out. Hashes and length are computed
 * on the fly; read `result` after the stream has finished.
 */
export class MediaEncryptor extends Transform {
  readonly mediaKey: Uint8Array;
  private readonly cipher: Cipher;
  private readonly hmac: Hmac;
  private readonly plainSha: Hash = createHash('sha256');
  private readonly encSha: Hash = createHash('sha256');
  private readonly maxBytes: number | undefined;
  private fileLength = 0;
  private encLength = 0;
  private done: EncryptedMediaInfo | undefined;

  constructor(type: MediaType, options: EncryptOptions = {}) {
    super();
    this.mediaKey = options.mediaKey ?? generateMediaKey();
    this.maxBytes = options.maxBytes;
    const keys = deriveMediaKeys(this.mediaKey, type);
    this.cipher = createCipheriv('aes-256-cbc', keys.cipherKey, keys.iv);
    this.hmac = createHmac('sha256', keys.macKey).update(keys.iv);
  }

  /** The values for the media message; throws if the stream has not finished. */
  get result(): EncryptedMediaInfo {
    if (this.done === undefined) throw new Error('MediaEncryptor.result read before the stream finished');
    return this.done;
  }

  override _transform(chunk: unknown, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (!(chunk instanceof Uint8Array))
      return callback(new TypeError('MediaEncryptor takes binary chunks only'));
    this.fileLength += chunk.length;
    if (this.maxBytes !== undefined && this.fileLength > this.maxBytes) {
      return callback(tooLarge('plaintext', this.maxBytes));
    }
    this.plainSha.update(chunk);
    this.emit_(this.cipher.update(chunk));
    callback();
  }

  override _flush(callback: TransformCallback): void {
    this.emit_(this.cipher.final());
    const mac = this.hmac.digest().subarray(0, MEDIA_MAC_LENGTH);
    this.encSha.update(mac);
    this.encLength += mac.length;
    this.push(mac);
    this.done = {
      mediaKey: this.mediaKey,
      fileSha256: new Uint8Array(this.plainSha.digest()),
      fileEncSha256: new Uint8Array(this.encSha.digest()),
      fileLength: this.fileLength,
      encLength: this.encLength,
    };
    callback();
  }

  private emit_(ciphertext: Buffer): void {
    if (ciphertext.length === 0) return;
    this.hmac.update(ciphertext);
    this.encSha.update(ciphertext);
    this.encLength += ciphertext.length;
    this.push(ciphertext);
  }
}

/** Encrypt `source` into `destination` (a file, an HTTP upload...), with backpressure. */
export async function encryptMedia(
  source: MediaSource,
  destination: Writable,
  type: MediaType,
  options: EncryptOptions = {},
): Promise<EncryptedMediaInfo> {
  const encryptor = new MediaEncryptor(type, options);
  await pipeline(source, encryptor, destination);
  return encryptor.result;
}

/** What the media message says about the blob: every field is checked. */
export interface ExpectedMedia {
  type: MediaType;
  mediaKey: Uint8Array;
  fileEncSha256: Uint8Array;
  fileSha256: Uint8Array;
  /** Checked when given (the message's fileLength). */
  fileLength?: number | bigint;
}

export interface DecryptOptions {
  /** Largest accepted download (uploaded bytes), enforced while streaming. */
  maxBytes: number;
  /** Directory for the private spool directory (default: the OS temp directory). */
  spoolDir?: string;
}

/** A plaintext that passed every check, spooled to a private file. Call `dispose` when done. */
export interface VerifiedMedia {
  /** The spooled plaintext (mode 0600 in a 0700 directory); move or read it before `dispose`. */
  readonly path: string;
  readonly fileLength: number;
  readonly fileSha256: Uint8Array;
  /** A fresh stream over the plaintext. */
  open(): Readable;
  /** Delete the spool. Safe to call twice. */
  dispose(): Promise<void>;
}

/**
 * Download-side decryption. Reads `source` (the uploaded bytes) once, enforcing `maxBytes` before
 * each chunk is processed, decrypts into a spool, and checks in this order: whole blob
 * (media_truncated), MAC (media_mac_mismatch), fileEncSha256 (media_hash_mismatch, enc), padding
 * (media_bad_padding), fileLength (media_length_mismatch), fileSha256 (media_hash_mismatch, plain).
 * Resolves only if all pass; otherwise the spool is deleted and a MediaError is thrown.
 */
export async function decryptMedia(
  source: MediaSource,
  expected: ExpectedMedia,
  options: DecryptOptions,
): Promise<VerifiedMedia> {
  const keys = deriveMediaKeys(expected.mediaKey, expected.type);
  if (
    expected.fileLength !== undefined &&
    encryptedMediaLength(Number(expected.fileLength)) > options.maxBytes
  ) {
    // Refuse before downloading a byte: the message itself says the file is too big.
    throw tooLarge('download', options.maxBytes, `the message announces ${expected.fileLength} bytes`);
  }
  const dir = await mkdtemp(join(options.spoolDir ?? tmpdir(), 'interop-media-'));
  const path = join(dir, 'plaintext');
  let file: FileHandle | undefined;
  try {
    file = await open(path, 'wx', 0o600);
    const decrypted = await decryptInto(source, keys, file, options.maxBytes);
    await file.close();
    file = undefined;
    checkDecrypted(decrypted, expected);
    const fileSha256 = decrypted.fileSha256;
    return {
      path,
      fileLength: decrypted.fileLength,
      fileSha256,
      open: () => createReadStream(path),
      dispose: () => rm(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    await file?.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

interface Decrypted {
  macOk: boolean;
  fileEncSha256: Buffer;
  paddingOk: boolean;
  fileLength: number;
  fileSha256: Uint8Array;
}

/** One streaming pass: hash, MAC and decrypt into `file`; the verdicts are judged afterwards. */
async function decryptInto(
  source: MediaSource,
  keys: MediaKeys,
  file: FileHandle,
  maxBytes: number,
): Promise<Decrypted> {
  const decipher: Decipher = createDecipheriv('aes-256-cbc', keys.cipherKey, keys.iv);
  const hmac = createHmac('sha256', keys.macKey).update(keys.iv);
  const encSha = createHash('sha256');
  const plainSha = createHash('sha256');
  let total = 0;
  let fileLength = 0;
  // The MAC is the stream's last 10 bytes: hold back the latest 10 until the stream ends.
  let tail: Uint8Array = new Uint8Array(0);

  // Small chunks are gathered into writes of WRITE_BATCH bytes: one syscall per network chunk is slow.
  let pending: Buffer[] = [];
  let pendingLength = 0;
  const flush = async (): Promise<void> => {
    if (pendingLength === 0) return;
    const batch = Buffer.concat(pending, pendingLength);
    pending = [];
    pendingLength = 0;
    await file.write(batch);
  };
  const writePlain = async (plain: Buffer): Promise<void> => {
    if (plain.length === 0) return;
    plainSha.update(plain);
    fileLength += plain.length;
    pending.push(plain);
    pendingLength += plain.length;
    if (pendingLength >= WRITE_BATCH) await flush();
  };
  const ciphertext = async (bytes: Uint8Array): Promise<void> => {
    if (bytes.length === 0) return;
    hmac.update(bytes);
    await writePlain(decipher.update(bytes));
  };

  for await (const chunk of source as AsyncIterable<unknown>) {
    if (!(chunk instanceof Uint8Array)) throw new TypeError('decryptMedia takes binary chunks only');
    if (total + chunk.length > maxBytes) throw tooLarge('download', maxBytes);
    total += chunk.length;
    encSha.update(chunk);
    if (chunk.length >= MEDIA_MAC_LENGTH) {
      await ciphertext(tail);
      await ciphertext(chunk.subarray(0, chunk.length - MEDIA_MAC_LENGTH));
      tail = new Uint8Array(chunk.subarray(chunk.length - MEDIA_MAC_LENGTH)); // a copy: the source may reuse its buffer
    } else {
      const joined = new Uint8Array(tail.length + chunk.length);
      joined.set(tail);
      joined.set(chunk, tail.length);
      const keep = Math.max(0, joined.length - MEDIA_MAC_LENGTH);
      await ciphertext(joined.subarray(0, keep));
      tail = joined.slice(keep);
    }
  }

  const cipherLength = total - MEDIA_MAC_LENGTH;
  if (cipherLength < BLOCK || cipherLength % BLOCK !== 0) {
    throw new MediaError(
      'media_truncated',
      `media blob is ${total} bytes, not a whole number of ${BLOCK}-byte blocks plus a ` +
        `${MEDIA_MAC_LENGTH}-byte MAC: the download was cut short or is not this media; retry the download`,
    );
  }
  const mac = hmac.digest().subarray(0, MEDIA_MAC_LENGTH);
  const macOk = timingSafeEqual(mac, tail);
  let paddingOk = true;
  if (macOk) {
    // Padding is only looked at on authenticated data: no padding oracle.
    try {
      await writePlain(decipher.final());
    } catch {
      paddingOk = false;
    }
  }
  await flush();
  return { macOk, fileEncSha256: encSha.digest(), paddingOk, fileLength, fileSha256: plainSha.digest() };
}

function checkDecrypted(d: Decrypted, expected: ExpectedMedia): void {
  if (!d.macOk) {
    throw new MediaError(
      'media_mac_mismatch',
      "media MAC does not match: the blob is corrupt or was not encrypted with this message's media key; " +
        'do not use it, retry the download once, then report the media as unavailable',
    );
  }
  if (!sameBytes(d.fileEncSha256, expected.fileEncSha256)) {
    throw new MediaHashMismatchError(
      'enc',
      'media fileEncSha256 does not match the downloaded bytes: the server returned a different blob than ' +
        'the message names; do not use it, report the media as unavailable',
    );
  }
  if (!d.paddingOk) {
    throw new MediaError(
      'media_bad_padding',
      'media plaintext has invalid PKCS#7 padding although its MAC is valid: the sender encrypted it ' +
        'incorrectly; report the media as undecryptable',
    );
  }
  if (expected.fileLength !== undefined && BigInt(d.fileLength) !== BigInt(expected.fileLength)) {
    throw new MediaError(
      'media_length_mismatch',
      `media plaintext is ${d.fileLength} bytes but the message says ${expected.fileLength}: the sender's ` +
        'message is inconsistent; report the media as undecryptable',
    );
  }
  if (!sameBytes(d.fileSha256, expected.fileSha256)) {
    throw new MediaHashMismatchError(
      'plain',
      "media fileSha256 does not match the decrypted file: the sender's message is inconsistent with its " +
        'upload; do not use it, report the media as undecryptable',
    );
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function tooLarge(what: 'plaintext' | 'download', maxBytes: number, detail?: string): MediaError {
  return new MediaError(
    'media_too_large',
    `media ${what} exceeds the limit of ${maxBytes} bytes${detail === undefined ? '' : ` (${detail})`}; ` +
      'it was refused and nothing of it was kept; raise the configured media size limit if such files must pass',
  );
}
