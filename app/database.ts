/**
 * Which database the bridge runs on, from `bridge.database`: a SQLite file (the default) or
 * PostgreSQL (`postgres://user@host:port/database`, with `bridge.database_password_file` and
 * `bridge.database_sslmode`). Opens it for `start` (holding the one-process lock) and for
 * `db migrate`.
 *
 * Every table is in the one database, on either backend: the core's (puppets, portals, outbox,
 * inbox, message map), the Signal state, and the Matrix and XMPP adapters' own (`adapterDb`, which
 * each adapter opens its store on).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isPostgresUrl, type LoadedConfig } from '../src/config/loader.js';
import { ConfigError } from '../src/errors.js';
import {
  PostgresSenderKeyBackend,
  PostgresSignalBackend,
  SqliteSenderKeyBackend,
  SqliteSignalBackend,
  type SenderKeyBackend,
  type SignalBackend,
} from '../src/signal/index.js';
import { PgDatabase, redactUrl, type PgConnectOptions } from '../src/store/postgres-database.js';
import { openPostgresStore } from '../src/store/postgres-store.js';
import { lockSqliteDatabase } from '../src/store/process-lock.js';
import type { Store } from '../src/store/repositories.js';
import type { AdapterDatabase } from '../src/store/sql.js';
import { Leases } from '../src/cluster/leases.js';
import { ClusterRelay } from '../src/cluster/relay.js';
import type { Logger } from '../src/observability/logger.js';

/** What a worker (`start --worker`, PostgreSQL only) coordinates through. */
export interface ClusterDatabase {
  readonly leases: Leases;
  /** The relay between the workers and the front, as worker `selfId`. */
  relay(selfId: string, log?: Logger): ClusterRelay;
  /** The puppets to share out (all of them). */
  puppetIds(): Promise<number[]>;
}
import { openSqliteStore } from '../src/store/sqlite-store.js';
import { bridgeMigrations } from './migrations.js';

export interface BridgeDatabase {
  /** `sqlite:<file>` or the PostgreSQL URL without its password, for logs. */
  readonly label: string;
  readonly store: Store;
  /** With `lease` (a worker's puppet): its Signal session writes are fenced with it (PostgreSQL). */
  signalBackend(puppetId: number, lease?: () => { name: string; fence: number } | undefined): SignalBackend;
  /** The puppet's Signal sender keys (groups), fenced the same way. */
  senderKeyBackend(
    puppetId: number,
    lease?: () => { name: string; fence: number } | undefined,
  ): SenderKeyBackend;
  /** The database the adapters open their stores on (`openMatrixStore`, `openXmppStore`). */
  readonly adapterDb: AdapterDatabase;
  /** With `start --worker` (PostgreSQL only): the leases, and the puppets to share out. */
  readonly cluster?: ClusterDatabase | undefined;
  close(): Promise<void>;
}

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

/**
 * Opens the configured database with every migration, holding the one-process lock; as one worker
 * of several (`worker`, PostgreSQL only) without it: the leases keep the workers apart.
 */
export async function openBridgeDatabase(
  loaded: LoadedConfig,
  options: { worker?: boolean } = {},
): Promise<BridgeDatabase> {
  if (!isPostgresUrl(loaded.config.bridge.database)) {
    if (options.worker) {
      throw new ConfigError(
        [
          `start --worker needs bridge.database on PostgreSQL (postgres://...); ${loaded.config.bridge.database} is a SQLite file, which one process uses alone: start without --worker, or move to PostgreSQL (interop-bridge db copy)`,
        ],
        loaded.source,
      );
    }
    const file = loaded.paths.database;
    const lock = lockSqliteDatabase(file);
    try {
      const store = openSqliteStore(file, { migrations: bridgeMigrations() });
      return {
        label: `sqlite:${file}`,
        store,
        signalBackend: (puppetId) => new SqliteSignalBackend(store.db, puppetId),
        senderKeyBackend: (puppetId) => new SqliteSenderKeyBackend(store.db, puppetId),
        adapterDb: { kind: 'sqlite', db: store.db },
        close: async () => {
          await store.close();
          lock.release();
        },
      };
    } catch (err) {
      lock.release();
      throw err;
    }
  }
  const store = await openPostgresStore({
    ...postgresOptions(loaded),
    migrations: bridgeMigrations('postgres'),
  });
  try {
    // Workers share the process lock; a process that owns every puppet holds it alone.
    if (options.worker) await store.pg.lockShared();
    else await store.pg.lockExclusive();
  } catch (err) {
    await store.close();
    throw err;
  }
  return {
    label: store.pg.label,
    store,
    signalBackend: (puppetId, lease) => new PostgresSignalBackend(store.pg, puppetId, { lease }),
    senderKeyBackend: (puppetId, lease) => new PostgresSenderKeyBackend(store.pg, puppetId, { lease }),
    adapterDb: { kind: 'postgres', pg: store.pg },
    cluster: options.worker
      ? {
          leases: new Leases(store.pg),
          relay: (selfId, log) => new ClusterRelay(store.pg, selfId, log),
          // Every puppet has an owner: an enlisted one to run, one half enlisted or opted out to finish.
          puppetIds: async () =>
            (await store.pg.query('SELECT id FROM puppets ORDER BY id')).map((r) => r.id as number),
        }
      : undefined,
    close: () => store.close(),
  };
}

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
    const store = await openPostgresStore({ ...options, migrations: bridgeMigrations('postgres') });
    const version = await store.schemaVersion();
    await store.close();
    return { label: redactUrl(options.url), version };
  } finally {
    await db.close();
  }
}
