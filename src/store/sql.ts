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
