/**
 * Operating on PostgreSQL: `doctor` checks the database (reachable, TLS as configured, the schema,
 * who holds the one-process lock) and says what to fix; `backup` copies the keys and gives the
 * pg_dump and pg_restore command lines, which are run here for real: a dump restored into a new
 * database carries the bridge's rows.
 */
import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { EXIT } from '../../app/cli.js';
import { cliOutput } from '../support/cli.js';
import { openBridgeDatabase } from '../../app/database.js';
import { bridgeMigrations } from '../../app/migrations.js';
import { loadConfig } from '../../src/config/loader.js';
import { PgDatabase } from '../../src/store/postgres-database.js';
import { postgresBinDir, usePostgres } from '../support/postgres.js';
import { tempDir, type TempDir } from '../support/tmp.js';
import { doctorLine } from '../support/wait.js';

const postgres = usePostgres();
let tmp: TempDir;
beforeEach(() => (tmp = tempDir()));
afterEach(() => tmp.cleanup());

function config(database: string, extra = ''): string {
  const file = path.join(tmp.dir, 'config.yaml');
  writeFileSync(file, `bridge:\n  data_dir: ${tmp.dir}/data\n  database: "${database}"\n${extra}`, {
    mode: 0o600,
  });
  return file;
}

const cli = cliOutput;

const LATEST = bridgeMigrations('postgres').length;
const doctor = (file: string) => cli(['doctor', '--offline', '--config', file]);

describe('doctor on PostgreSQL', () => {
  it('says the database is reachable, unencrypted on loopback, how far migrated, and who holds the lock', async () => {
    const url = await postgres().createDatabase();
    const file = config(url);
    const empty = await doctor(file);
    expect(doctorLine(empty.out, 'database')).toMatch(/ok\s+database\s+postgres:\/\/.* is reachable/);
    expect(doctorLine(empty.out, 'database TLS')).toMatch(
      /ok\s+database TLS\s+not encrypted \(sslmode disable\), to 127\.0\.0\.1 on this machine/,
    );
    expect(doctorLine(empty.out, 'database schema')).toContain(
      `schema version 0: ${LATEST} migration(s) will run at start (or now: interop-bridge db migrate)`,
    );
    expect(doctorLine(empty.out, 'database lock')).toMatch(/free: no bridge process runs on this database/);
    expect(empty.out).not.toContain('interop-bridge.db'); // no SQLite check on PostgreSQL

    const running = await openBridgeDatabase(loadConfig({ path: file, env: {} }));
    const busy = await doctor(file);
    await running.close();
    expect(doctorLine(busy.out, 'database schema')).toContain(`schema version ${LATEST} (current)`);
    expect(doctorLine(busy.out, 'database lock')).toMatch(
      /held by a bridge process \(PostgreSQL backend pid \d+, from 127\.0\.0\.1, since \d{4}-\d\d-\d\dT/,
    );
  });

  it('fails, saying what to fix, on an unreachable server, TLS the server does not offer, and a newer schema', async () => {
    const down = await doctor(config('postgres://bridge@127.0.0.1:1/nowhere'));
    expect(down.code).toBe(EXIT.failure);
    expect(doctorLine(down.out, 'database')).toMatch(
      /fail\s+database\s+cannot connect to the database postgres:\/\/bridge@127\.0\.0\.1:1\/nowhere: .*\n.*-> check bridge\.database \(host, port, user, database\)/,
    );
    const url = await postgres().createDatabase();
    const tls = await doctor(config(url, '  database_sslmode: require\n'));
    expect(tls.code).toBe(EXIT.failure);
    expect(doctorLine(tls.out, 'database')).toMatch(/fail\s+database\s+cannot connect .*SSL/i);

    const db = await PgDatabase.open({ url });
    await db.exec({ text: "INSERT INTO schema_version VALUES (99, 'future', 0)", values: [] });
    await db.close();
    const newer = await doctor(config(url));
    expect(newer.code).toBe(EXIT.failure);
    expect(doctorLine(newer.out, 'database schema')).toMatch(
      /fail\s+database schema\s+schema version 99, newer than this interop-bridge knows \(\d+\)\n.*-> upgrade interop-bridge/,
    );
  });

  it('on SQLite says whether a bridge process runs on the file', async () => {
    const file = config('interop-bridge.db');
    const running = await openBridgeDatabase(loadConfig({ path: file, env: {} }));
    expect(doctorLine((await doctor(file)).out, 'database')).toMatch(/in use by a running bridge process/);
    await running.close();
    expect(doctorLine((await doctor(file)).out, 'database')).toMatch(/no bridge process runs on it/);
  });
});

describe('backup on PostgreSQL', () => {
  it('copies the keys and gives the pg_dump and pg_restore lines, which work', async () => {
    const url = await postgres().createDatabase();
    writeFileSync(path.join(tmp.dir, 'pw'), 'secret\n', { mode: 0o600 });
    const file = config(url, '  database_password_file: pw\n');
    const bridge = await openBridgeDatabase(loadConfig({ path: file, env: {} }));
    await bridge.store.puppets.create({
      localId: 'alice@example.org',
      network: 'xmpp',
      accountId: 'a',
      deviceId: 1,
      registrationId: 1,
      identityPublic: new Uint8Array(33),
      identityPrivate: new Uint8Array(32),
      noisePublic: new Uint8Array(32),
      noisePrivate: new Uint8Array(32),
    });
    expect((await cli(['keys', 'generate', '--config', file])).code).toBe(EXIT.ok);
    const out = path.join(tmp.dir, 'backup');
    const backup = await cli(['backup', '--config', file, '--out', out]);
    expect(backup.code).toBe(EXIT.ok);
    expect(backup.out).toContain(`wrote ${path.join(out, 'provider-signing-key.jwk')}\n`);
    expect(backup.out).toContain(`wrote ${path.join(out, 'at-rest.key')}\n`);
    expect(backup.out).toContain(`the database is PostgreSQL (${url}): interop-bridge does not copy it`);
    expect(backup.out).toContain(`PGPASSWORD="$(cat ${path.join(tmp.dir, 'pw')})"`);
    expect(backup.out).not.toContain('secret');
    const dumpLine = /^ {2}pg_dump --format=custom --file=(\S+) '([^']+)'$/m.exec(backup.out);
    expect(dumpLine).not.toBeNull();
    const bin = postgresBinDir();
    // Run them as an operator would (trust authentication: the password is not asked for).
    await promisify(execFile)(path.join(bin, 'pg_dump'), [
      '--format=custom',
      `--file=${dumpLine![1]}`,
      dumpLine![2]!,
    ]);
    await bridge.close();
    expect(existsSync(dumpLine![1]!)).toBe(true);
    const restored = await postgres().createDatabase();
    const restoreLine = /^ {2}pg_restore --clean --if-exists --no-owner --dbname='([^']+)' (\S+)$/m.exec(
      backup.out,
    );
    expect(restoreLine).not.toBeNull();
    await promisify(execFile)(path.join(bin, 'pg_restore'), [
      '--clean',
      '--if-exists',
      '--no-owner',
      `--dbname=${restored}`,
      restoreLine![2]!,
    ]);
    const back = await openBridgeDatabase(loadConfig({ path: config(restored), env: {} }));
    expect((await back.store.puppets.list()).map((p) => p.localId)).toEqual(['alice@example.org']);
    await back.close();
  });
});
