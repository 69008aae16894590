/**
 * `interop-bridge backup`: a consistent copy of the bridge's state while it runs. SQLite's online
 * backup API copies the database page by page under a read transaction, so the copy is a
 * snapshot even with the daemon writing (WAL mode); the provider's signing key and the at-rest key
 * (without which the messages waiting in the copy cannot be opened) are copied as they are.
 * All land with mode 0600 in a 0700 directory: they hold every puppet's identity keys.
 */
import Database from 'better-sqlite3';
import { chmodSync, copyFileSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { LoadedConfig } from '../src/config/loader.js';
import { InteropError } from '../src/errors.js';

export async function backupState({ paths }: LoadedConfig, outDir: string): Promise<string[]> {
  if (!existsSync(paths.database)) {
    throw new InteropError(
      'backup_no_database',
      `there is no database at ${paths.database} to back up: check bridge.data_dir and bridge.database`,
    );
  }
  mkdirSync(outDir, { recursive: true, mode: 0o700 });
  chmodSync(outDir, 0o700);
  const written: string[] = [];
  const dbCopy = path.join(outDir, path.basename(paths.database));
  if (existsSync(dbCopy)) {
    throw new InteropError('backup_exists', `${dbCopy} exists already: choose an empty directory`);
  }
  const db = new Database(paths.database, { readonly: true, fileMustExist: true });
  try {
    await db.backup(dbCopy);
  } finally {
    db.close();
  }
  chmodSync(dbCopy, 0o600);
  written.push(dbCopy);
  for (const key of [paths.signingKey, paths.atRestKey]) {
    if (!existsSync(key)) continue;
    const keyCopy = path.join(outDir, path.basename(key));
    copyFileSync(key, keyCopy);
    chmodSync(keyCopy, 0o600);
    written.push(keyCopy);
  }
  return written;
}
