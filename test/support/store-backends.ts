/**
 * The store backends a contract test runs against: `describe.each(storeBackends())` shows every
 * behaviour on SQLite and on PostgreSQL (a real server, test/support/postgres.ts, one per test
 * file, started in beforeAll; a fresh database per test).
 *
 *   describe.each(storeBackends())('$name store', (backend) => {
 *     beforeAll(() => backend.setUp());
 *     afterAll(() => backend.tearDown());
 *     beforeEach(() => backend.fresh());
 *     it('...', async () => { const store = await backend.open(); ... });
 *   });
 */
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openBridgeDatabase, type BridgeDatabase } from '../../app/database.js';
import { configSchema } from '../../src/config/schema.js';
import { PostgresSignalBackend } from '../../src/signal/postgres-store.js';
import { SqliteSignalBackend } from '../../src/signal/sqlite-store.js';
import type { SignalBackend } from '../../src/signal/store.js';
import { readMigrations, type Migration } from '../../src/store/database.js';
import { readPgMigrations } from '../../src/store/postgres-database.js';
import { openPostgresStore, type PostgresStore } from '../../src/store/postgres-store.js';
import type { Store } from '../../src/store/repositories.js';
import type { AdapterDatabase } from '../../src/store/sql.js';
import { bridgeMigrations } from '../../app/migrations.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite-store.js';
import { startPostgres, type PostgresServer } from './postgres.js';
import { tempDir, type TempDir } from './tmp.js';

export interface StoreBackend {
  readonly name: 'sqlite' | 'postgres';
  /** beforeAll: starts what the backend needs (PostgreSQL: a server). */
  setUp(): Promise<void>;
  /** afterAll: closes what `open` opened and stops the server. */
  tearDown(): Promise<void>;
  /** beforeEach: a new empty database; `open` opens it from now on. */
  fresh(): Promise<void>;
  /** Opens (again) the current database; closed by `closeAll` / `tearDown`. */
  open(options?: { migrations?: readonly Migration[]; now?: () => number }): Promise<Store>;
  /** A puppet's Signal state on the store's database. */
  signal(store: Store, puppetId: number, now?: () => number): SignalBackend;
  /** The core's migrations in this backend's dialect. */
  migrations(): Migration[];
  /** The whole sequence (core and adapters) in this backend's dialect, as app/ opens it. */
  bridgeMigrations(): Migration[];
  /** The store's database as the adapters open their stores on it. */
  adapterDb(store: Store): AdapterDatabase;
  /** Closes every store `open` returned. */
  closeAll(): Promise<void>;
}

function sqliteBackend(): StoreBackend {
  let tmp: TempDir | undefined;
  let file = '';
  const opened: Store[] = [];
  const closeAll = async () => {
    for (const s of opened.splice(0)) await s.close();
  };
  return {
    name: 'sqlite',
    setUp: () => Promise.resolve(),
    async tearDown() {
      await closeAll();
      tmp?.cleanup();
    },
    async fresh() {
      await closeAll();
      tmp?.cleanup();
      tmp = tempDir();
      file = path.join(tmp.dir, 'bridge.db');
    },
    open(options = {}) {
      const store = openSqliteStore(file, options);
      opened.push(store);
      return Promise.resolve(store);
    },
    signal: (store, puppetId, now) =>
      new SqliteSignalBackend((store as SqliteStore).db, puppetId, now ? { now } : {}),
    migrations: () => readMigrations(),
    bridgeMigrations: () => bridgeMigrations('sqlite'),
    adapterDb: (store) => ({ kind: 'sqlite', db: (store as SqliteStore).db }),
    closeAll,
  };
}

function postgresBackend(): StoreBackend {
  let server: PostgresServer | undefined;
  let url = '';
  const opened: Store[] = [];
  const closeAll = async () => {
    for (const s of opened.splice(0)) await s.close();
  };
  return {
    name: 'postgres',
    async setUp() {
      server = await startPostgres();
    },
    async tearDown() {
      await closeAll();
      await server?.stop();
    },
    async fresh() {
      await closeAll();
      if (!server) throw new Error('postgres backend: setUp() was not called (beforeAll)');
      url = await server.createDatabase();
    },
    async open(options = {}) {
      const store = await openPostgresStore({ url, ...options });
      opened.push(store);
      return store;
    },
    signal: (store, puppetId, now) =>
      new PostgresSignalBackend((store as PostgresStore).pg, puppetId, now ? { now } : {}),
    migrations: () => readPgMigrations(),
    bridgeMigrations: () => bridgeMigrations('postgres'),
    adapterDb: (store) => ({ kind: 'postgres', pg: (store as PostgresStore).pg }),
    closeAll,
  };
}

/** Both backends, for `describe.each`. */
export const storeBackends = (): StoreBackend[] => [sqliteBackend(), postgresBackend()];

/**
 * The bridge's whole database as the daemon opens it (app/database.ts `openBridgeDatabase`: every
 * migration, the one-process lock, the Signal state and the adapters' tables on the same backend),
 * on a SQLite file or a PostgreSQL URL; for the harnesses that run the bridge in-process.
 */
export function openTestBridgeDatabase(database: string): Promise<BridgeDatabase> {
  const postgres = /^postgres(ql)?:\/\//.test(database);
  const config = configSchema.parse({ bridge: { database } });
  const dir = postgres ? tmpdir() : path.dirname(database);
  return openBridgeDatabase({
    config,
    source: 'a test',
    paths: {
      dataDir: dir,
      database,
      signingKey: path.join(dir, 'unused.jwk'),
      atRestKey: path.join(dir, 'unused.key'),
      provisioningSecret: path.join(dir, 'unused.secret'),
    },
    secretFiles: [],
  });
}
