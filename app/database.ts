/**
 * Which database the bridge runs on, from `bridge.database`: a SQLite file (the default) or
 * PostgreSQL (`postgres://user@host:port/database`, with `bridge.database_password_file` and
 * `bridge.database_sslmode`). Opens it for `start` (holding the one-process lock) and for
 * `db migrate`.
 *
 * On PostgreSQL the core's tables (puppets, portals, outbox, inbox, message map) and the Signal
 * state are in PostgreSQL; the Matrix and XMPP adapters' own tables are not yet: they stay in a
 * SQLite file beside the data (`<data_dir>/interop-bridge-adapters.db`), which this process locks
 * as it locks a SQLite database.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isPostgresUrl, type LoadedConfig } from '../src/config/loader.js';
import { ConfigError } from '../src/errors.js';
import { PostgresSignalBackend, SqliteSignalBackend, type SignalBackend } from '../src/signal/index.js';
import { openDatabase, type Db } from '../src/store/database.js';
import { PgDatabase, redactUrl, type PgConnectOptions } from '../src/store/postgres-database.js';
import { openPostgresStore } from '../src/store/postgres-store.js';
import { lockSqliteDatabase, type ProcessLock } from '../src/store/process-lock.js';
import type { Store } from '../src/store/repositories.js';
import { openSqliteStore } from '../src/store/sqlite-store.js';
import { matrixMigrations } from '../adapters/matrix/index.js';
import { xmppMigrations } from '../adapters/xmpp/index.js';
import { bridgeMigrations } from './migrations.js';

export interface BridgeDatabase {
  /** `sqlite:<file>` or the PostgreSQL URL without its password, for logs. */
  readonly label: string;
  readonly store: Store;
  signalBackend(puppetId: number): SignalBackend;
  /** The SQLite database the adapters' own tables are in (the bridge's, or the side file on PostgreSQL). */
  readonly adapterDb: Db;
  close(): Promise<void>;
}

export const ADAPTERS_SIDE_DATABASE = 'interop-bridge-adapters.db';

export function postgresOptions(loaded: LoadedConfig): PgConnectOptions {
  const b = loaded.config.bridge;
  let sslRootCert: string | undefined;
  if (b.database_sslrootcert) {
    const file = path.resolve(loaded.paths.dataDir, b.database_sslrootcert);
    try {
      sslRootCert = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(
        [`bridge.database_sslrootcert: cannot read ${file}: ${(err as Error).message}`],
        loaded.source,
      );
    }
  }
  return {
    url: b.database,
    password: b.database_password,
    sslmode: b.database_sslmode,
    sslRootCert,
  };
}

/** Opens the configured database with every migration, holding the one-process lock. */
export async function openBridgeDatabase(loaded: LoadedConfig): Promise<BridgeDatabase> {
  const locks: ProcessLock[] = [];
  const release = () => locks.splice(0).forEach((l) => l.release());
  try {
    if (!isPostgresUrl(loaded.config.bridge.database)) {
      const file = loaded.paths.database;
      locks.push(lockSqliteDatabase(file));
      const store = openSqliteStore(file, { migrations: bridgeMigrations() });
      return {
        label: `sqlite:${file}`,
        store,
        signalBackend: (puppetId) => new SqliteSignalBackend(store.db, puppetId),
        adapterDb: store.db,
        close: async () => {
          await store.close();
          release();
        },
      };
    }
    const store = await openPostgresStore(postgresOptions(loaded));
    try {
      await store.pg.lockExclusive();
      const side = path.join(loaded.paths.dataDir, ADAPTERS_SIDE_DATABASE);
      locks.push(lockSqliteDatabase(side));
      const adapterDb = openDatabase(side, { migrations: adapterMigrations() });
      return {
        label: store.pg.label,
        store,
        signalBackend: (puppetId) => new PostgresSignalBackend(store.pg, puppetId),
        adapterDb,
        close: async () => {
          await store.close();
          adapterDb.close();
          release();
        },
      };
    } catch (err) {
      await store.close();
      throw err;
    }
  } catch (err) {
    release();
    throw err;
  }
}

const adapterMigrations = () =>
  [...matrixMigrations(), ...xmppMigrations()].sort((a, b) => a.version - b.version);

/**
 * `interop-bridge db migrate`: applies the pending migrations to the configured database (refusing
 * while a bridge runs on it) and says where it stands.
 */
export async function migrateBridgeDatabase(
  loaded: LoadedConfig,
): Promise<{ label: string; version: number }> {
  if (!isPostgresUrl(loaded.config.bridge.database)) {
    const lock = lockSqliteDatabase(loaded.paths.database);
    try {
      const store = openSqliteStore(loaded.paths.database, { migrations: bridgeMigrations() });
      const version = await store.schemaVersion();
      await store.close();
      return { label: `sqlite:${loaded.paths.database}`, version };
    } finally {
      lock.release();
    }
  }
  const options = postgresOptions(loaded);
  // The lock first, on a connection of its own, so a running bridge is not migrated under its feet.
  const db = await PgDatabase.open({ ...options, migrations: false });
  try {
    await db.lockExclusive();
    const store = await openPostgresStore(options);
    const version = await store.schemaVersion();
    await store.close();
    return { label: redactUrl(options.url), version };
  } finally {
    await db.close();
  }
}
