/**
 * One bridge process per SQLite database. A second process on the same file would connect every
 * puppet a second time, so `start` takes this lock first: an exclusive SQLite lock (fcntl, which
 * works beside WAL because it is on a file of its own, `<database>.lock`) held for the life of the
 * process, released by the kernel if the process dies. The PostgreSQL equivalent is
 * `PgDatabase.lockExclusive` (an advisory lock).
 */
import Database from 'better-sqlite3';
import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { StoreError } from '../errors.js';

export interface ProcessLock {
  readonly file: string;
  release(): void;
}

export function lockSqliteDatabase(databaseFile: string): ProcessLock {
  const file = `${databaseFile}.lock`;
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  closeSync(openSync(file, 'a', 0o600));
  chmodSync(file, 0o600);
  const db = new Database(file, { timeout: 0 });
  try {
    db.pragma('journal_mode = DELETE');
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code?.startsWith('SQLITE_BUSY')) {
      throw new StoreError(
        'store_in_use',
        `the database ${databaseFile} is in use by another interop-bridge process (it holds ${file}): stop that process first; two processes on one database would connect every puppet twice`,
        { cause: err },
      );
    }
    throw new StoreError(
      'store_open_failed',
      `cannot lock the database ${databaseFile}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  return {
    file,
    release: () => {
      if (db.open) db.close();
    },
  };
}
