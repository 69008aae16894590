/**
 * Content that must wait (an outgoing message for a puppet that is offline, an incoming one the
 * local server has not taken yet) is kept sealed with the operator's at-rest key (the sealing
 * itself is src/util/payload-vault.ts, shared with the adapters); this file holds the key file and
 * the core's row identities. Once delivered, the content is cleared, not kept sealed.
 *
 * The key is a file of 32 random bytes, mode 0600 (`interop-bridge keys generate`, or created at
 * the first start). Losing it loses only what was waiting: those rows fail, nothing else does.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { writeSecretFile } from '../util/secret-file.js';
import { AT_REST_KEY_BYTES, AtRestKeyError } from '../util/payload-vault.js';

export {
  AT_REST_KEY_BYTES,
  AtRestKeyError,
  isSealed,
  openPayload,
  PayloadUnreadableError,
  PayloadVault,
  sealPayload,
} from '../util/payload-vault.js';

/** The row identities sealed payloads are bound to. */
export const outboxRowId = (id: string): string => `outbox:${id}`;
export const inboxRowId = (puppetId: number, sender: string, messageId: string): string =>
  `inbox:${puppetId}:${sender}:${messageId}`;

/**
 * Writes a new random key (mode 0600, directory 0700); refuses to replace one unless `force`. The
 * file appears whole or not at all (written aside, then linked or renamed into place): processes
 * starting together never read a key half-written.
 */
export function writeAtRestKey(file: string, options: { force?: boolean } = {}): void {
  try {
    writeSecretFile(file, randomBytes(AT_REST_KEY_BYTES), options);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new AtRestKeyError(
        'at_rest_key_exists',
        `${file} already exists: keep it, or pass --force to replace it (messages waiting under the old key are then lost)`,
      );
    }
    throw new AtRestKeyError('at_rest_key_unwritable', `cannot write ${file}: ${(err as Error).message}`);
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
  try {
    writeAtRestKey(file);
  } catch (err) {
    // Another process starting on the same data_dir made it first: theirs is the key.
    if ((err as { code?: string }).code === 'at_rest_key_exists')
      return { key: readAtRestKey(file), created: false };
    throw err;
  }
  return { key: readAtRestKey(file), created: true };
}

/** True when group or others can read the key file. */
export function atRestKeyTooOpen(file: string): boolean {
  return (statSync(file).mode & 0o077) !== 0;
}
