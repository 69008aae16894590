import Database from 'better-sqlite3';
import { chmodSync, closeSync, mkdirSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StoreError } from '../errors.js';

export type Db = Database.Database;

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export interface OpenOptions {
  /**
   * The whole sequence, from version 1 (`mergeMigrations` of every owner's list). Defaults to the
   * core's own migrations: enough for the core, not for the adapters' tables (app/ passes all).
   */
  migrations?: readonly Migration[];
}

const MIGRATION_FILE = /^(\d{3,})_([a-z0-9_]+)\.sql$/;
const bundledMigrationsDir = fileURLToPath(new URL('./migrations/', import.meta.url));

/**
 * Reads the `NNN_name.sql` files of one folder in version order. The bridge's database has one
 * numbered sequence of migrations whose files live with their owners (the core's here, each
 * adapter's next to it); `mergeMigrations` puts the folders' lists together.
 */
export function readMigrations(dir: string = bundledMigrationsDir): Migration[] {
  return readdirSync(dir)
    .map((file) => MIGRATION_FILE.exec(file))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({
      version: Number(m[1]),
      name: m[2] as string,
      sql: readFileSync(path.join(dir, m[0]), 'utf8'),
    }))
    .sort((a, b) => a.version - b.version);
}

/** One sequence from the lists of several owners; a gap or a duplicate is a packaging bug. */
export function mergeMigrations(...lists: readonly (readonly Migration[])[]): Migration[] {
  const merged = lists.flat().sort((a, b) => a.version - b.version);
  checkSequence(merged);
  return merged;
}

/**
 * What `openDatabase` takes: versions increasing, no duplicate. A subset of the whole sequence is
 * fine (the core alone, as its tests open it: 1, 2, 5 without the adapters' 3 and 4); a migration
 * is applied when its version is not recorded yet, so the others can be applied later.
 */
function checkOrdered(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    const before = migrations[i - 1];
    if (before !== undefined && m.version <= before.version) {
      throw new StoreError(
        'store_migrations_broken',
        `migration ${m.version}_${m.name} out of sequence (after version ${before.version})`,
      );
    }
  });
}

function checkSequence(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new StoreError(
        'store_migrations_broken',
        `migration ${m.version}_${m.name} out of sequence (expected version ${i + 1})`,
      );
    }
  });
}

/**
 * Opens (creating with mode 0600 if needed) the SQLite database, in WAL mode with foreign keys on,
 * and applies pending migrations. Refuses a database written by a newer version.
 *
 * Durability: WAL with synchronous=NORMAL. Every committed transaction survives a crash of the
 * process; an operating-system crash or power loss may roll back the most recent transactions but
 * never corrupts the file.
 */
export function openDatabase(file: string, options: OpenOptions = {}): Db {
  const migrations = options.migrations ?? readMigrations();
  checkOrdered(migrations);
  createPrivateFile(file);
  let db: Db;
  try {
    db = new Database(file, { fileMustExist: true });
  } catch (err) {
    throw new StoreError('store_open_failed', `cannot open the database ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    // Deleted and overwritten content is zeroed, not left in free pages and cells: message payloads
    // are cleared once delivered, and must then be gone from the file too.
    db.pragma('secure_delete = ON');
    migrate(db, file, migrations);
    return db;
  } catch (err) {
    db.close();
    if (err instanceof StoreError) throw err;
    throw new StoreError('store_open_failed', `cannot use the database ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

export function schemaVersion(db: Db): number {
  const row = db.prepare('SELECT max(version) AS v FROM schema_version').get() as { v: number | null };
  return row.v ?? 0;
}

function migrate(db: Db, file: string, migrations: readonly Migration[]): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
  )`);
  const current = schemaVersion(db);
  const latest = migrations.at(-1)?.version ?? 0;
  const applied = new Set(db.prepare('SELECT version FROM schema_version').pluck().all() as number[]);
  if (current > latest) {
    throw new StoreError(
      'store_newer_schema',
      `the database ${file} was written by a newer interop-bridge (schema version ${current}; this version knows up to ${latest}): upgrade interop-bridge, or restore a backup taken before the upgrade`,
    );
  }
  const record = db.prepare('INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)');
  for (const m of migrations) {
    if (applied.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      record.run(m.version, m.name, Date.now());
    })();
  }
}

/** Creates the file (and its directory, mode 0700) so that nobody but the owner can ever read it. */
/**
 * Writes the WAL back into the database file and truncates it, so old page images (content since
 * cleared) do not linger in the -wal file. Cheap when there is little to write; skipped (busy) when
 * a reader holds an old snapshot, and tried again next time.
 */
export function checkpoint(db: Db): void {
  if (db.open) db.pragma('wal_checkpoint(TRUNCATE)');
}

function createPrivateFile(file: string): void {
  const dir = path.dirname(file);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    closeSync(openSync(file, 'a', 0o600));
  } catch (err) {
    throw new StoreError(
      'store_open_failed',
      `cannot create the database ${file}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  // A restored backup may have come back with wider permissions: narrow them again.
  if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
}
