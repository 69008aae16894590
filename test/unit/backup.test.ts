import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { EXIT, runCli } from '../../app/cli.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { tempDir } from '../support/tmp.js';

async function run(args: string[]) {
  let out = '';
  let err = '';
  const code = await runCli(args, { out: (t) => (out += t), err: (t) => (err += t), env: {} });
  return { code, out, err };
}

describe('interop-bridge backup', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  it('copies the database (with writes not yet checkpointed) and the signing key while the bridge has it open', async () => {
    const config = tmp.file('bridge.yaml', 'bridge:\n  data_dir: state\n');
    expect((await run(['keys', 'generate', '--config', config])).code).toBe(EXIT.ok);
    const live = openSqliteStore(path.join(tmp.dir, 'state', 'interop-bridge.db'));
    await live.puppets.create({
      localId: '@alice:example.org',
      network: 'matrix',
      accountId: 'alice=0123',
      deviceId: 0,
      registrationId: 7,
      identityPublic: new Uint8Array(33).fill(1),
      identityPrivate: new Uint8Array(32).fill(2),
      noisePublic: new Uint8Array(32).fill(3),
      noisePrivate: new Uint8Array(32).fill(4),
    });
    try {
      const out = tmp.file('backup');
      const { code, out: printed } = await run(['backup', '--config', config, '--out', out]);
      expect(code).toBe(EXIT.ok);
      expect(printed).toContain(`wrote ${path.join(out, 'interop-bridge.db')}`);
      expect(printed).toContain(`wrote ${path.join(out, 'provider-signing-key.jwk')}`);
      expect(statSync(out).mode & 0o777).toBe(0o700);
      expect(statSync(path.join(out, 'interop-bridge.db')).mode & 0o777).toBe(0o600);
      expect(statSync(path.join(out, 'provider-signing-key.jwk')).mode & 0o777).toBe(0o600);
      // The at-rest key (made by keys generate) goes with it: without it, what waits in the copy is lost.
      expect(printed).toContain(`wrote ${path.join(out, 'at-rest.key')}`);
      expect(
        readFileSync(path.join(out, 'at-rest.key')).equals(
          readFileSync(path.join(tmp.dir, 'state', 'at-rest.key')),
        ),
      ).toBe(true);
      expect(statSync(path.join(out, 'at-rest.key')).mode & 0o777).toBe(0o600);
      const restored = openSqliteStore(path.join(out, 'interop-bridge.db'));
      expect((await restored.puppets.byLocalId('@alice:example.org'))?.accountId).toBe('alice=0123');
      await restored.close();
    } finally {
      await live.close();
    }
  });

  it('says there is nothing to back up when the database does not exist', async () => {
    const config = tmp.file('bridge.yaml', 'bridge:\n  data_dir: state\n');
    const { code, err } = await run(['backup', '--config', config, '--out', tmp.file('b')]);
    expect(code).toBe(EXIT.failure);
    expect(err).toMatch(/there is no database at .*interop-bridge\.db to back up/);
  });
});
