/**
 * `interop-bridge backup`: a consistent copy of the bridge's state while it runs. SQLite's online
 * backup API copies the database page by page under a read transaction, so the copy is a
 * snapshot even with the daemon writing (WAL mode); the provider's signing key and the at-rest key
 * (without which the messages waiting in the copy cannot be opened) are copied as they are.
 * All land with mode 0600 in a 0700 directory: they hold every puppet's identity keys.
 *
 * On PostgreSQL the database is PostgreSQL's to dump: the keys are copied all the same, and the
 * answer says how to dump the database beside them (pg_dump, with the configured URL) and restore.
 */
import Database from 'better-sqlite3';
import { chmodSync, copyFileSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { isPostgresUrl, type LoadedConfig } from '../src/config/loader.js';
import { InteropError } from '../src/errors.js';
import { redactUrl } from '../src/store/postgres-database.js';

export interface Backup {
  /** The files written. */
  readonly written: string[];
  /** What is left for the operator to do (PostgreSQL: the pg_dump), if anything. */
  readonly todo?: string;
}

export async function backupState(loaded: LoadedConfig, outDir: string): Promise<Backup> {
  const { paths } = loaded;
  if (isPostgresUrl(loaded.config.bridge.database)) {
    prepareDir(outDir);
    return { written: copyKeys(loaded, outDir), todo: pgDumpAdvice(loaded, outDir) };
  }
  if (!existsSync(paths.database)) {
    throw new InteropError(
      'backup_no_database',
      `there is no database at ${paths.database} to back up: check bridge.data_dir and bridge.database`,
    );
  }
  prepareDir(outDir);
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
  return { written: [...written, ...copyKeys(loaded, outDir)] };
}

function prepareDir(outDir: string): void {
  mkdirSync(outDir, { recursive: true, mode: 0o700 });
  chmodSync(outDir, 0o700);
}

/** The provider's signing key and the at-rest key, as they are, mode 0600. */
function copyKeys({ paths }: LoadedConfig, outDir: string): string[] {
  const written: string[] = [];
  for (const key of [paths.signingKey, paths.atRestKey]) {
    if (!existsSync(key)) continue;
    const keyCopy = path.join(outDir, path.basename(key));
    copyFileSync(key, keyCopy);
    chmodSync(keyCopy, 0o600);
    written.push(keyCopy);
  }
  return written;
}

/** The pg_dump (and restore) command lines for the configured database, without its password. */
function pgDumpAdvice(loaded: LoadedConfig, outDir: string): string {
  const b = loaded.config.bridge;
  const url = new URL(b.database);
  url.password = '';
  if (b.database_sslmode) url.searchParams.set('sslmode', b.database_sslmode);
  const dump = path.join(outDir, 'interop-bridge.pgdump');
  const target = `'${url.toString()}'`;
  const password = loaded.secretFiles.find((f) => f.what === 'bridge.database_password_file')?.file;
  return [
    `the database is PostgreSQL (${redactUrl(b.database)}): interop-bridge does not copy it; dump it beside the keys with`,
    `  pg_dump --format=custom --file=${dump} ${target}`,
    password
      ? `  (with the password from ${password}: PGPASSWORD="$(cat ${password})" pg_dump ...)`
      : '  (with the password in PGPASSWORD or ~/.pgpass if it needs one)',
    'pg_dump takes a consistent snapshot while the bridge runs. To restore: stop the bridge, then',
    `  pg_restore --clean --if-exists --no-owner --dbname=${target} ${dump}`,
    'and put the key files back where bridge.data_dir expects them.',
  ].join('\n');
}
