/**
 * `interop-bridge db copy --from sqlite:<file> --to postgres://...`: moves an installation from
 * SQLite to PostgreSQL without losing a Signal session or a queued message.
 *
 * - The source is locked as `start` locks it (refused while a bridge runs on it) and brought to
 *   this version's schema, as `start` would; the target is migrated, locked with the bridge's
 *   advisory lock, and must be empty (every table of the bridge without a row).
 * - Every table of the source is copied as it is, rows and values alike (the Signal state, queued
 *   outbox and pending inbox rows with their sealed payloads, the adapters' tables), in one
 *   transaction: parents before children (foreign keys), identity counters moved past the copied
 *   ids, and the row counts of both sides compared before the commit. Nothing is decrypted.
 * - A table of PostgreSQL's with an identity column SQLite does not have (`message_map.seq`) takes
 *   SQLite's rowid, the order that column stands for.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ENV_PREFIX } from '../src/config/loader.js';
import { InteropError, UsageError } from '../src/errors.js';
import { openDatabase, schemaVersion, type Db } from '../src/store/database.js';
import { PgDatabase, sql, type PgConnectOptions, type Row } from '../src/store/postgres-database.js';
import { lockSqliteDatabase } from '../src/store/process-lock.js';
import { bridgeMigrations } from './migrations.js';

export interface CopyReport {
  readonly from: string;
  readonly to: string;
  readonly version: number;
  /** Rows copied per table, in the order copied. */
  readonly tables: readonly { table: string; rows: number }[];
}

export interface DbCopyOptions {
  from: string;
  to: string;
  passwordFile?: string;
  sslmode?: PgConnectOptions['sslmode'];
  sslrootcert?: string;
}

/**
 * The target's connection from the command line: the password from `--password-file`, else from
 * `INTEROP_BRIDGE_BRIDGE__DATABASE_PASSWORD` (the variable `bridge.database_password` is read
 * from), else the URL's own.
 */
export function dbCopyTarget(o: DbCopyOptions, env: NodeJS.ProcessEnv): PgConnectOptions {
  if (!/^postgres(ql)?:\/\//.test(o.to)) {
    throw new UsageError(`--to: expected postgres://user@host:port/database, found "${o.to}"`);
  }
  const read = (option: string, file: string) => {
    try {
      return readFileSync(path.resolve(file), 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new UsageError(`${option}: cannot read ${file}: ${(err as Error).message}`);
    }
  };
  return {
    url: o.to,
    password:
      o.passwordFile !== undefined
        ? read('--password-file', o.passwordFile)
        : env[`${ENV_PREFIX}BRIDGE__DATABASE_PASSWORD`],
    sslmode: o.sslmode,
    sslRootCert: o.sslrootcert !== undefined ? read('--sslrootcert', o.sslrootcert) : undefined,
  };
}

/** Rows per INSERT (PostgreSQL takes at most 65535 parameters in a statement). */
const BATCH = 500;

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** The `<file>` of `sqlite:<file>`, resolved against the working directory. */
export function sqliteSource(from: string): string {
  const m = /^sqlite:(.+)$/.exec(from);
  if (!m) {
    throw new UsageError(`--from: expected sqlite:<file> (the bridge's SQLite database), found "${from}"`);
  }
  const file = path.resolve(m[1] as string);
  if (!existsSync(file)) {
    throw new InteropError('db_copy_no_source', `--from: there is no database at ${file}`);
  }
  return file;
}

export async function copySqliteToPostgres(from: string, to: PgConnectOptions): Promise<CopyReport> {
  const file = sqliteSource(from);
  const lock = lockSqliteDatabase(file);
  try {
    const source = openDatabase(file, { migrations: bridgeMigrations('sqlite') });
    try {
      const target = await PgDatabase.open({ ...to, migrations: bridgeMigrations('postgres'), poolSize: 1 });
      try {
        await target.lockExclusive();
        return await copyInto(source, target, `sqlite:${file}`);
      } finally {
        await target.close();
      }
    } finally {
      source.close();
    }
  } finally {
    lock.release();
  }
}

interface TablePlan {
  table: string;
  /** SQLite's order of the rows: rowid, or the primary key of a WITHOUT ROWID table. */
  order: string;
  /** PostgreSQL's columns, each with the SQLite expression that fills it. */
  columns: { name: string; from: string }[];
  identity: string[];
}

async function copyInto(source: Db, target: PgDatabase, label: string): Promise<CopyReport> {
  const version = schemaVersion(source);
  const targetVersion = await target.schemaVersion();
  if (version !== targetVersion) {
    throw new InteropError(
      'db_copy_versions',
      `the source is at schema version ${version}, the target ${target.label} at ${targetVersion}: both must be at this version's`,
    );
  }
  const plans = await plan(source, target);
  const nonEmpty: string[] = [];
  for (const p of plans) {
    if (await target.queryOne(`SELECT 1 FROM ${quote(p.table)} LIMIT 1`)) nonEmpty.push(p.table);
  }
  if (nonEmpty.length > 0) {
    throw new InteropError(
      'db_copy_target_not_empty',
      `the target ${target.label} is not empty (rows in ${nonEmpty.join(', ')}): db copy fills a new, empty database only; create one (createdb -O <user> <name>) and copy into it, or drop and create this one if what is in it can go`,
    );
  }
  const copied = await target.transact(async (query) => {
    const counts: { table: string; rows: number }[] = [];
    for (const p of plans) {
      const names = p.columns.map((c) => quote(c.name)).join(', ');
      const select = source.prepare(
        `SELECT ${p.columns.map((c) => c.from).join(', ')} FROM ${quote(p.table)} ORDER BY ${p.order}`,
      );
      select.raw(true);
      let batch: unknown[][] = [];
      const flush = async () => {
        if (batch.length === 0) return;
        const width = p.columns.length;
        const tuples = batch.map(
          (_, i) => `(${p.columns.map((_c, j) => `$${i * width + j + 1}`).join(', ')})`,
        );
        await query(
          sql(`INSERT INTO ${quote(p.table)} (${names}) VALUES ${tuples.join(', ')}`, ...batch.flat()),
        );
        batch = [];
      };
      for (const row of select.iterate() as IterableIterator<unknown[]>) {
        batch.push(row);
        if (batch.length === BATCH) await flush();
      }
      await flush();
      for (const column of p.identity) {
        await query(
          sql(
            `SELECT setval(pg_get_serial_sequence($1, $2), coalesce(max(${quote(column)}), 0) + 1, false) FROM ${quote(p.table)}`,
            p.table,
            column,
          ),
        );
      }
      const expected = (source.prepare(`SELECT count(*) AS n FROM ${quote(p.table)}`).get() as Row)
        .n as number;
      const got = ((await query(sql(`SELECT count(*) AS n FROM ${quote(p.table)}`))).rows[0] as Row)
        .n as number;
      if (got !== expected) {
        throw new InteropError(
          'db_copy_count_mismatch',
          `${p.table}: ${expected} rows in the source, ${got} in the target after the copy: nothing was committed`,
        );
      }
      counts.push({ table: p.table, rows: got });
    }
    return counts;
  });
  return { from: label, to: target.label, version, tables: copied };
}

/** Every table of the source, parents first, with how each PostgreSQL column is filled. */
async function plan(source: Db, target: PgDatabase): Promise<TablePlan[]> {
  const tables = (
    source
      .prepare(
        `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'schema_version'`,
      )
      .pluck()
      .all() as string[]
  )
    // Leases and relay events are the live state of running workers (src/cluster/): a SQLite
    // database, which one process uses alone, holds none, and a copied database starts with none.
    .filter((t) => t !== 'leases' && t !== 'relay_events')
    .sort();
  const pgColumns = await target.query(
    `SELECT table_name, column_name, is_identity FROM information_schema.columns
     WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position`,
  );
  const plans = tables.map((table): TablePlan => {
    const withoutRowid = /WITHOUT\s+ROWID/i.test(
      source
        .prepare(`SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?`)
        .pluck()
        .get(table) as string,
    );
    const key = (
      source
        .prepare('SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk')
        .pluck()
        .all(table) as string[]
    ).map(quote);
    const sqliteColumns = new Set(
      source.prepare(`SELECT name FROM pragma_table_info(?)`).pluck().all(table) as string[],
    );
    const mine = pgColumns.filter((c) => c.table_name === table);
    if (mine.length === 0) {
      throw new InteropError(
        'db_copy_schema',
        `the source's table ${table} has no counterpart in the target ${target.label}: is the target this version's schema?`,
      );
    }
    const columns = mine.map((c) => {
      const name = c.column_name as string;
      if (sqliteColumns.has(name)) return { name, from: quote(name) };
      if (c.is_identity === 'YES' && !withoutRowid) return { name, from: 'rowid' };
      throw new InteropError(
        'db_copy_schema',
        `${table}.${name} is in the target but not in the source: is the source this version's schema?`,
      );
    });
    const missing = [...sqliteColumns].filter((c) => !mine.some((m) => m.column_name === c));
    if (missing.length > 0) {
      throw new InteropError(
        'db_copy_schema',
        `${table}: the source's columns ${missing.join(', ')} are not in the target ${target.label}`,
      );
    }
    return {
      table,
      order: withoutRowid ? key.join(', ') : 'rowid',
      columns,
      identity: mine.filter((c) => c.is_identity === 'YES').map((c) => c.column_name as string),
    };
  });
  return parentsFirst(source, plans);
}

/** Tables ordered so that every table comes after those its foreign keys point at. */
function parentsFirst(source: Db, plans: TablePlan[]): TablePlan[] {
  const parents = new Map(
    plans.map((p) => [
      p.table,
      (
        source.prepare('SELECT "table" FROM pragma_foreign_key_list(?)').pluck().all(p.table) as string[]
      ).filter((t) => t !== p.table),
    ]),
  );
  const ordered: TablePlan[] = [];
  const placed = new Set<string>();
  const place = (p: TablePlan, path: string[]) => {
    if (placed.has(p.table)) return;
    if (path.includes(p.table)) {
      throw new InteropError('db_copy_schema', `foreign keys in a cycle: ${[...path, p.table].join(' -> ')}`);
    }
    for (const parent of parents.get(p.table) ?? []) {
      const pp = plans.find((q) => q.table === parent);
      if (pp) place(pp, [...path, p.table]);
    }
    placed.add(p.table);
    ordered.push(p);
  };
  for (const p of plans) place(p, []);
  return ordered;
}
