/**
 * Content that must wait (an outgoing message for a puppet that is offline, an incoming one the
 * local server has not taken yet) is kept sealed with the operator's at-rest key: AES-256-GCM with
 * a random 96-bit nonce per row and the row's identity as associated data, so a sealed payload
 * cannot be moved to another row. Once delivered, the content is cleared, not kept sealed.
 *
 * The key is a file of 32 random bytes, mode 0600 (`interop-bridge keys generate`, or created at
 * the first start). Losing it loses only what was waiting: those rows fail, nothing else does.
 *
 * A sealed payload: 0x01 | nonce (12) | ciphertext | tag (16). A payload written before sealing
 * existed is JSON (it starts with `{`) and is read as it is; an empty payload has been cleared.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { constants, closeSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { InteropError } from '../errors.js';

export const AT_REST_KEY_BYTES = 32;
const VERSION = 0x01;
const NONCE = 12;
const TAG = 16;

export class AtRestKeyError extends InteropError {}

/** The content of a row could not be opened: sealed under another key, or damaged. */
export class PayloadUnreadableError extends InteropError {}

/** Seals and opens row payloads with one 32-byte key. */
export class PayloadVault {
  readonly #key: Buffer;

  constructor(key: Uint8Array) {
    if (key.length !== AT_REST_KEY_BYTES) {
      throw new AtRestKeyError(
        'at_rest_key_invalid',
        `an at-rest key is ${AT_REST_KEY_BYTES} bytes, not ${key.length}`,
      );
    }
    this.#key = Buffer.from(key);
  }

  /** `rowId` is the row's identity (table and key), bound to the ciphertext as associated data. */
  seal(rowId: string, plain: Uint8Array): Uint8Array {
    const nonce = randomBytes(NONCE);
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce);
    cipher.setAAD(Buffer.from(rowId, 'utf8'));
    const body = cipher.update(plain);
    const end = cipher.final();
    return Buffer.concat([Buffer.of(VERSION), nonce, body, end, cipher.getAuthTag()]);
  }

  /**
   * The payload's content: opened if sealed, as it is if written before sealing (JSON), empty if
   * cleared. Throws PayloadUnreadableError when it was sealed under another key or altered.
   */
  open(rowId: string, stored: Uint8Array): Uint8Array {
    return openPayload(this, rowId, stored);
  }

  /** @internal */
  decrypt(rowId: string, stored: Uint8Array): Uint8Array {
    if (stored.length < 1 + NONCE + TAG) throw unreadable(rowId, 'too short');
    const buf = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength);
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, buf.subarray(1, 1 + NONCE));
      decipher.setAAD(Buffer.from(rowId, 'utf8'));
      decipher.setAuthTag(buf.subarray(buf.length - TAG));
      return Buffer.concat([decipher.update(buf.subarray(1 + NONCE, buf.length - TAG)), decipher.final()]);
    } catch {
      throw unreadable(rowId, 'it was sealed under another at-rest key, or altered');
    }
  }
}

function unreadable(rowId: string, why: string): PayloadUnreadableError {
  return new PayloadUnreadableError(
    'at_rest_payload_unreadable',
    `the stored content of ${rowId} cannot be opened: ${why}`,
  );
}

/** Whether a stored payload is sealed (as opposed to cleared, or plain from before sealing). */
export const isSealed = (stored: Uint8Array): boolean => stored.length > 0 && stored[0] === VERSION;

/** Opens with `vault` when sealed; a sealed payload without a vault is unreadable. */
export function openPayload(vault: PayloadVault | undefined, rowId: string, stored: Uint8Array): Uint8Array {
  if (!isSealed(stored)) return stored;
  if (!vault) throw unreadable(rowId, 'the bridge has no at-rest key');
  return vault.decrypt(rowId, stored);
}

/** Seals with `vault` when there is one (tests and tools may run without). */
export const sealPayload = (vault: PayloadVault | undefined, rowId: string, plain: Uint8Array): Uint8Array =>
  vault ? vault.seal(rowId, plain) : plain;

/** The row identities sealed payloads are bound to. */
export const outboxRowId = (id: string): string => `outbox:${id}`;
export const inboxRowId = (puppetId: number, sender: string, messageId: string): string =>
  `inbox:${puppetId}:${sender}:${messageId}`;

/** Writes a new random key (mode 0600, directory 0700); refuses to replace one unless `force`. */
export function writeAtRestKey(file: string, options: { force?: boolean } = {}): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const flags =
    constants.O_WRONLY | constants.O_CREAT | (options.force ? constants.O_TRUNC : constants.O_EXCL);
  let fd: number;
  try {
    fd = openSync(file, flags, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new AtRestKeyError(
        'at_rest_key_exists',
        `${file} already exists: keep it, or pass --force to replace it (messages waiting under the old key are then lost)`,
      );
    }
    throw new AtRestKeyError('at_rest_key_unwritable', `cannot write ${file}: ${(err as Error).message}`);
  }
  try {
    writeSync(fd, randomBytes(AT_REST_KEY_BYTES));
  } finally {
    closeSync(fd);
  }
}

/** Reads the key file: exactly 32 bytes. */
export function readAtRestKey(file: string): Uint8Array {
  let key: Buffer;
  try {
    key = readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new AtRestKeyError(
        'at_rest_key_missing',
        `the at-rest key ${file} does not exist: create it with "interop-bridge keys generate --at-rest"`,
      );
    }
    throw new AtRestKeyError('at_rest_key_unreadable', `cannot read ${file}: ${(err as Error).message}`);
  }
  if (key.length !== AT_REST_KEY_BYTES) {
    throw new AtRestKeyError(
      'at_rest_key_invalid',
      `${file} is ${key.length} bytes: an at-rest key is ${AT_REST_KEY_BYTES} random bytes (restore it from a backup, or move it away and start again to create a new one: what was waiting under the old key is then lost)`,
    );
  }
  return new Uint8Array(key);
}

/**
 * The key at `file`, created if missing (the first start). `created` says whether it was: a
 * database that already holds sealed rows then cannot open them.
 */
export function ensureAtRestKey(file: string): { key: Uint8Array; created: boolean } {
  try {
    return { key: readAtRestKey(file), created: false };
  } catch (err) {
    if ((err as { code?: string }).code !== 'at_rest_key_missing') throw err;
  }
  writeAtRestKey(file);
  return { key: readAtRestKey(file), created: true };
}

/** True when group or others can read the key file. */
export function atRestKeyTooOpen(file: string): boolean {
  return (statSync(file).mode & 0o077) !== 0;
}
