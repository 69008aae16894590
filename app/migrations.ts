/**
 * The bridge database's whole migration sequence: the core's (src/store/migrations) and each
 * adapter's own (beside it). Everything in app/ that opens the database passes this, so a database
 * always has every table, whichever adapters are enabled.
 */
import { matrixMigrations } from '../adapters/matrix/index.js';
import { xmppMigrations } from '../adapters/xmpp/index.js';
import { mergeMigrations, readMigrations, type Migration } from '../src/store/database.js';
import { readPgMigrations } from '../src/store/postgres-database.js';

/** The whole sequence in SQLite's dialect (the default) or PostgreSQL's: the same versions in both. */
export function bridgeMigrations(dialect: 'sqlite' | 'postgres' = 'sqlite'): Migration[] {
  return mergeMigrations(
    dialect === 'sqlite' ? readMigrations() : readPgMigrations(),
    matrixMigrations(dialect),
    xmppMigrations(dialect),
  );
}
