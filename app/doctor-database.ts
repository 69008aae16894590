/**
 * doctor's checks of a PostgreSQL database (`bridge.database: postgres://...`), run with and without
 * `--offline` (it is the bridge's own database, not a peer): reachable with the configured password
 * and TLS, the TLS as configured, the schema this version's, and who holds the one-process lock.
 * Read only: it applies no migration and takes no lock.
 */
import type { LoadedConfig } from '../src/config/loader.js';
import { PgDatabase } from '../src/store/postgres-database.js';
import { postgresOptions } from './database.js';
import type { CheckResult } from './doctor.js';
import { bridgeMigrations } from './migrations.js';

const LOOPBACK = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\]|::1)$/;

export async function checkPostgres(loaded: LoadedConfig): Promise<CheckResult[]> {
  let options;
  try {
    options = postgresOptions(loaded);
  } catch (err) {
    return [{ name: 'database', status: 'fail', detail: (err as Error).message }];
  }
  let db: PgDatabase;
  try {
    db = await PgDatabase.open({ ...options, migrations: false, poolSize: 1 });
  } catch (err) {
    return [
      {
        name: 'database',
        status: 'fail',
        detail: (err as Error).message,
        hint: 'check bridge.database (host, port, user, database), bridge.database_password_file and database_sslmode, and that PostgreSQL accepts this host (pg_hba.conf)',
      },
    ];
  }
  try {
    return [
      { name: 'database', status: 'ok', detail: `${db.label} is reachable` },
      await checkTls(db, options.url, options.sslmode),
      await checkSchema(db),
      await checkLock(db),
    ];
  } catch (err) {
    return [{ name: 'database', status: 'fail', detail: `${db.label}: ${(err as Error).message}` }];
  } finally {
    await db.close();
  }
}

async function checkTls(db: PgDatabase, url: string, configured: string | undefined): Promise<CheckResult> {
  const name = 'database TLS';
  const u = new URL(url);
  const mode = configured ?? u.searchParams.get('sslmode') ?? 'disable';
  const tls = await db.tls();
  if (tls === undefined) {
    const host = u.hostname;
    const local = host === '' || LOOPBACK.test(host);
    return local
      ? {
          name,
          status: 'ok',
          detail: `not encrypted (sslmode ${mode}), to ${host || 'a local socket'} on this machine`,
        }
      : {
          name,
          status: 'warn',
          detail: `not encrypted (sslmode ${mode}) to ${host}: the Signal keys and waiting messages cross the network in the clear`,
          hint: 'set bridge.database_sslmode: verify-full (with database_sslrootcert if the CA is private)',
        };
  }
  const what = `${tls.version}, ${tls.cipher}`;
  return mode === 'verify-full'
    ? { name, status: 'ok', detail: `encrypted (${what}), the server's certificate verified (verify-full)` }
    : {
        name,
        status: 'warn',
        detail: `encrypted (${what}) but the server's certificate is not verified (sslmode ${mode})`,
        hint: 'set bridge.database_sslmode: verify-full (with database_sslrootcert if the CA is private)',
      };
}

async function checkSchema(db: PgDatabase): Promise<CheckResult> {
  const name = 'database schema';
  const latest = bridgeMigrations('postgres').length;
  const hasVersions =
    (await db.queryOne("SELECT to_regclass('schema_version') IS NOT NULL AS t"))?.t === true;
  const version = hasVersions ? await db.schemaVersion() : 0;
  if (version > latest) {
    return {
      name,
      status: 'fail',
      detail: `schema version ${version}, newer than this interop-bridge knows (${latest})`,
      hint: 'upgrade interop-bridge, or restore a dump taken before the upgrade',
    };
  }
  if (version < latest) {
    return {
      name,
      status: 'ok',
      detail: `schema version ${version}: ${latest - version} migration(s) will run at start (or now: interop-bridge db migrate)`,
    };
  }
  return { name, status: 'ok', detail: `schema version ${version} (current)` };
}

async function checkLock(db: PgDatabase): Promise<CheckResult> {
  const holder = await db.lockHolder();
  return {
    name: 'database lock',
    status: 'ok',
    detail:
      holder === undefined
        ? 'free: no bridge process runs on this database'
        : `held by a bridge process (PostgreSQL backend pid ${holder.pid}, from ${holder.client}, since ${holder.since.toISOString()})`,
  };
}
