/**
 * What a SQLite implementation of a storage interface needs, for the core's repositories, the
 * Signal tables and each adapter's own tables alike: the database handle type and one cache of
 * prepared statements.
 */
import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';

export type { Db, Migration } from './database.js';
export { readMigrations } from './database.js';
export type { Statement } from 'better-sqlite3';

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
