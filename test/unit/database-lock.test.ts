/**
 * One bridge process per database, on SQLite (a lock file beside it) and PostgreSQL (an advisory
 * lock): a second open for `start` or `db migrate` refuses with a clear message while the first
 * holds it, and succeeds once it is closed. Also: `bridge.database` chooses the backend.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { migrateBridgeDatabase, openBridgeDatabase } from '../../app/database.js';
import { loadConfig } from '../../src/config/loader.js';
import { PostgresSignalBackend } from '../../src/signal/postgres-store.js';
import { startPostgres, type PostgresServer } from '../support/postgres.js';
import { tempDir, type TempDir } from '../support/tmp.js';

let server: PostgresServer;
let tmp: TempDir;
beforeAll(async () => (server = await startPostgres()));
afterAll(() => server.stop());
beforeEach(() => (tmp = tempDir()));
afterEach(() => tmp.cleanup());

function config(database: string, extra = ''): ReturnType<typeof loadConfig> {
  const file = path.join(tmp.dir, 'config.yaml');
  writeFileSync(file, `bridge:\n  data_dir: ${tmp.dir}/data\n  database: "${database}"\n${extra}`, {
    mode: 0o600,
  });
  return loadConfig({ path: file, env: {} });
}

describe.each(['sqlite', 'postgres'] as const)('the one-process lock on %s', (kind) => {
  const loaded = async () =>
    kind === 'sqlite' ? config('interop-bridge.db') : config(await server.createDatabase());

  it('refuses a second bridge on a database in use, and lets one in once the first is gone', async () => {
    const cfg = await loaded();
    const first = await openBridgeDatabase(cfg);
    await expect(openBridgeDatabase(cfg)).rejects.toThrow(
      /is in use by another interop-bridge process .*stop that process first/,
    );
    await expect(migrateBridgeDatabase(cfg)).rejects.toThrow(/in use by another interop-bridge process/);
    await first.close();
    const second = await openBridgeDatabase(cfg);
    expect(await second.store.puppets.count()).toBe(0);
    await second.close();
    expect((await migrateBridgeDatabase(cfg)).version).toBeGreaterThanOrEqual(5);
  });
});

describe('bridge.database on PostgreSQL', () => {
  it('opens PostgreSQL with the password from a 0600 file, the Signal state on it', async () => {
    const url = await server.createDatabase();
    // trust authentication ignores the password; the file is read and passed all the same.
    writeFileSync(path.join(tmp.dir, 'db-password'), 'secret\n', { mode: 0o600 });
    const cfg = config(url, '  database_password_file: db-password\n  database_sslmode: disable\n');
    expect(cfg.config.bridge.database_password).toBe('secret');
    expect(cfg.secretFiles.map((f) => f.what)).toContain('bridge.database_password_file');
    expect((await migrateBridgeDatabase(cfg)).label).toBe(url);
    const db = await openBridgeDatabase(cfg);
    expect(db.label).toBe(url);
    expect(db.signalBackend(1)).toBeInstanceOf(PostgresSignalBackend);
    expect(await db.store.schemaVersion()).toBeGreaterThanOrEqual(5);
    await db.close();
  });

  it('reads a Signal state that was not prepared as an error, not as nothing', async () => {
    const db = await openBridgeDatabase(config(await server.createDatabase()));
    const signal = db.signalBackend(1);
    expect(() => signal.loadSession('491.1')).toThrow(/before prepare\(491\)/);
    expect(() => signal.localIdentity()).toThrow(/before prepare\(\)/);
    await db.close();
  });
});

describe('workers (start --worker) and the one-process lock', () => {
  it('lets several workers in together, keeps a process that owns every puppet out while they run, and the reverse', async () => {
    const cfg = config(await server.createDatabase());
    const w1 = await openBridgeDatabase(cfg, { worker: true });
    const w2 = await openBridgeDatabase(cfg, { worker: true });
    expect(w1.cluster).toBeDefined();
    await expect(openBridgeDatabase(cfg)).rejects.toThrow(/in use by another interop-bridge process/);
    await expect(migrateBridgeDatabase(cfg)).rejects.toThrow(/in use by another interop-bridge process/);
    await w1.close();
    await w2.close();
    const single = await openBridgeDatabase(cfg);
    expect(single.cluster).toBeUndefined();
    await expect(openBridgeDatabase(cfg, { worker: true })).rejects.toThrow(
      /in use by an interop-bridge started without --worker \(it owns every puppet\): stop it before starting workers/,
    );
    await single.close();
  });

  it('refuses --worker on SQLite, saying why', async () => {
    await expect(openBridgeDatabase(config('interop-bridge.db'), { worker: true })).rejects.toThrow(
      /start --worker needs bridge.database on PostgreSQL .*one process uses alone/,
    );
  });
});
