/**
 * What an implementation of a storage interface needs, for the core's repositories, the Signal
 * tables and each adapter's own tables alike: on SQLite the database handle type and one cache of
 * prepared statements; on PostgreSQL the database (postgres-database.ts: pooled reads, one ordered
 * writer) and its `sql` statements; and `AdapterDatabase`, the one an adapter opens its store on.
 */
import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';
import type { PgDatabase } from './postgres-database.js';

export type { Db, Migration } from './database.js';
export { readMigrations } from './database.js';
export type { Statement } from 'better-sqlite3';
export { sql, type PgDatabase, type Row, type Sql } from './postgres-database.js';

/** The database an adapter keeps its own tables in: the bridge's, on either backend. */
export type AdapterDatabase =
  { readonly kind: 'sqlite'; readonly db: Db } | { readonly kind: 'postgres'; readonly pg: PgDatabase };

/** A function that prepares each SQL text once, on first use, and returns the statement after. */
export type Prepared = (sql: string) => Statement;

/** Rows a store keeps in memory, by key, at most (then forgotten all at once and read again). */
export const KNOWN_ROWS_MAX = 20_000;

/**
 * Keeps a row just read in a store's memory (`known`), frozen, and returns it: for a table this
 * process alone writes (SQLite, the store's process lock), whose writes forget `known`.
 */
export function keepRow<T extends object>(known: Map<string, T>, key: string, row: T): T {
  if (known.size >= KNOWN_ROWS_MAX) known.clear();
  const frozen = Object.freeze(row);
  known.set(key, frozen);
  return frozen;
}

/** Prepares each statement once, on first use. */
export function preparedStatements(db: Db): Prepared {
  const cache = new Map<string, Statement>();
  return (sql: string): Statement => {
    let stmt = cache.get(sql);
    if (!stmt) {
      stmt = db.prepare(sql);
      cache.set(sql, stmt);
    }
    return stmt;
  };
}
