/**
 * `interop-bridge doctor --offline`: each failure of the checks that need no network, provoked for
 * real on files, with the fix it prints. (The network checks: test/integration/doctor.test.ts.)
 */
import Database from 'better-sqlite3';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { EXIT, runCli } from '../../app/cli.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { bridgeMigrations } from '../../app/migrations.js';
import { tempDir } from '../support/tmp.js';
import { doctorLine } from '../support/wait.js';

async function doctor(config: string): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runCli(['doctor', '--offline', '--config', config], {
    out: (t) => (out += t),
    err: (t) => (out += t),
    env: {},
  });
  return { code, out };
}

const lineOf = doctorLine;

describe('interop-bridge doctor --offline', () => {
  let tmp: ReturnType<typeof tempDir>;
  let config: string;
  let state: string;
  beforeEach(async () => {
    tmp = tempDir();
    config = tmp.file('bridge.yaml', 'bridge:\n  data_dir: state\n');
    state = path.join(tmp.dir, 'state');
    const quiet = { out: () => undefined, err: () => undefined, env: {} };
    expect(await runCli(['keys', 'generate', '--config', config], quiet)).toBe(EXIT.ok);
  });
  afterEach(() => tmp.cleanup());

  it('passes with a fresh database and key', async () => {
    await openSqliteStore(path.join(state, 'interop-bridge.db'), { migrations: bridgeMigrations() }).close();
    const { code, out } = await doctor(config);
    expect(lineOf(out, 'database')).toMatch(
      /ok .*schema version \d+ \(current\), no bridge process runs on it, mode 600/,
    );
    expect(lineOf(out, 'provider signing key')).toMatch(/ok .*EdDSA key, kid /);
    expect(code).toBe(EXIT.ok);
  });

  it('refuses a database written by a newer version and says to upgrade or restore', async () => {
    const file = path.join(state, 'interop-bridge.db');
    openSqliteStore(file).close();
    const db = new Database(file);
    db.prepare('INSERT INTO schema_version (version, name, applied_at) VALUES (999, ?, 0)').run('future');
    db.close();
    const { code, out } = await doctor(config);
    expect(lineOf(out, 'database')).toMatch(
      /fail .*schema version 999, newer than this interop-bridge knows/,
    );
    expect(lineOf(out, 'database')).toMatch(/-> upgrade interop-bridge, or restore a backup/);
    expect(code).toBe(EXIT.failure);
  });

  it('says a file that is not a database must be restored from a backup', async () => {
    writeFileSync(path.join(state, 'interop-bridge.db'), 'this is not SQLite '.repeat(300));
    const { code, out } = await doctor(config);
    expect(lineOf(out, 'database')).toMatch(/fail .*cannot be read as a database|fail .*is damaged/);
    expect(lineOf(out, 'database')).toMatch(/restore .*from a backup/);
    expect(code).toBe(EXIT.failure);
  });

  it('warns when others can read the database, with the chmod to run', async () => {
    const file = path.join(state, 'interop-bridge.db');
    openSqliteStore(file).close();
    chmodSync(file, 0o644);
    const { code, out } = await doctor(config);
    expect(lineOf(out, 'database')).toMatch(/warn .*mode 644\n.*-> others can read it: run "chmod 600 /);
    expect(code).toBe(EXIT.ok);
  });

  it('fails when others can read the signing key, with the chmod to run', async () => {
    chmodSync(path.join(state, 'provider-signing-key.jwk'), 0o644);
    const { code, out } = await doctor(config);
    expect(lineOf(out, 'provider signing key')).toMatch(/fail .*is readable by others\n.*-> run "chmod 600 /);
    expect(code).toBe(EXIT.failure);
  });

  it('checks the at-rest key: missing (start creates it), open to others (the chmod to run), not a key', async () => {
    const key = path.join(state, 'at-rest.key');
    rmSync(key);
    let { out } = await doctor(config);
    expect(lineOf(out, 'at-rest key')).toMatch(/warn .*does not exist yet\n.*keys generate --at-rest/);
    const quiet = { out: () => undefined, err: () => undefined, env: {} };
    expect(await runCli(['keys', 'generate', '--at-rest', '--config', config], quiet)).toBe(EXIT.ok);
    ({ out } = await doctor(config));
    expect(lineOf(out, 'at-rest key')).toMatch(/ok .*32 bytes, mode 600/);
    chmodSync(key, 0o640);
    const open = await doctor(config);
    expect(lineOf(open.out, 'at-rest key')).toMatch(
      /fail .*open to group or others \(mode 640\)\n.*-> run "chmod 600 /,
    );
    expect(open.code).toBe(EXIT.failure);
    writeFileSync(key, 'short', { mode: 0o600 });
    chmodSync(key, 0o600);
    const bad = await doctor(config);
    expect(lineOf(bad.out, 'at-rest key')).toMatch(/fail .*is 5 bytes/);
    expect(bad.code).toBe(EXIT.failure);
  });

  it('fails on a signing key that is not a key, and says how to replace it', async () => {
    writeFileSync(path.join(state, 'provider-signing-key.jwk'), '{"kty":"nonsense"}', { mode: 0o600 });
    const { code, out } = await doctor(config);
    expect(lineOf(out, 'provider signing key')).toMatch(/fail /);
    expect(lineOf(out, 'provider signing key')).toMatch(
      /-> replace it with "interop-bridge keys generate --force"/,
    );
    expect(code).toBe(EXIT.failure);
  });

  it('fails when the data directory is a file', async () => {
    const other = tmp.file('other.yaml', 'bridge:\n  data_dir: afile\n');
    mkdirSync(path.join(tmp.dir, 'x'), { recursive: true });
    writeFileSync(path.join(tmp.dir, 'afile'), 'not a directory');
    const { code, out } = await doctor(other);
    expect(lineOf(out, 'data directory')).toMatch(
      /fail .*afile is not a directory\n.*-> set bridge\.data_dir to a directory/,
    );
    expect(code).toBe(EXIT.failure);
  });

  it('warns that the bridge will not connect without the gateway root key', async () => {
    const { out } = await doctor(config);
    expect(lineOf(out, 'gateway')).toMatch(
      /warn .*gateway\.root_key is not set.*\n.*-> set gateway\.root_key/,
    );
  });
});
