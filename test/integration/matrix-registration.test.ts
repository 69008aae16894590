/**
 * `interop-bridge generate-registration`: what a homeserver operator installs. The registration is
 * checked against the spec's registration schema (by the stand-in homeserver) and loaded by a real
 * Synapse, which then knows the bridge's bot by its as_token.
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { EXIT, runCli } from '../../app/cli.js';
import { loadConfig } from '../../src/config/loader.js';
import { StandInHomeserver, type Registration } from '../support/homeserver/index.js';
import { Synapse } from '../support/synapse/synapse.js';
import { tempDir } from '../support/tmp.js';

async function run(args: string[]) {
  let out = '';
  let err = '';
  const code = await runCli(args, { out: (t) => (out += t), err: (t) => (err += t), env: {} });
  return { code, out, err };
}

describe('generate-registration', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  it('writes a registration the homeserver accepts, private token files, and the config lines to use them', async () => {
    const config = tmp.file(
      'config.yaml',
      'bridge:\n  data_dir: state\nmatrix:\n  enabled: true\n  server_name: example.test\n  listen_port: 29999\n',
    );
    const { code, out, err } = await run(['generate-registration', '--config', config]);
    expect(code).toBe(EXIT.ok);
    const dir = path.join(tmp.dir, 'state', 'matrix');
    expect(err).toContain(`wrote ${path.join(dir, 'registration.yaml')}`);
    for (const f of ['registration.yaml', 'as_token', 'hs_token']) {
      expect(statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
    }
    const registration = parse(readFileSync(path.join(dir, 'registration.yaml'), 'utf8')) as Registration;
    expect(registration).toMatchObject({
      url: 'http://127.0.0.1:29999',
      sender_localpart: 'interop',
      receive_ephemeral: true,
      'de.sorunome.msc2409.push_ephemeral': true,
    });
    expect(registration.as_token).toBe(readFileSync(path.join(dir, 'as_token'), 'utf8').trim());
    expect(registration.as_token).not.toBe(registration.hs_token);
    expect(registration.as_token.length).toBeGreaterThanOrEqual(40);
    const ghosts = new RegExp(`^${registration.namespaces.users![0]!.regex}$`);
    expect(ghosts.test('@wa_4915112345678:example.test')).toBe(true);
    expect(ghosts.test('@alice:example.test')).toBe(false);
    expect(registration.namespaces.users!.every((n) => n.exclusive)).toBe(true);

    const hs = await StandInHomeserver.start({ registration, serverName: 'example.test' });
    try {
      hs.assertNoViolations();
    } finally {
      await hs.close();
    }
    // Synapse loads it as written (app_service_config_files) and knows the bot by its as_token.
    const synapse = await Synapse.start({
      dir: path.join(tmp.dir, 'synapse'),
      appserviceFiles: [path.join(dir, 'registration.yaml')],
    });
    try {
      const whoami = await fetch(`${synapse.url}/_matrix/client/v3/account/whoami`, {
        headers: { authorization: `Bearer ${registration.as_token}` },
      });
      expect(await whoami.json()).toMatchObject({ user_id: '@interop:example.test' });
    } finally {
      await synapse.close();
    }

    // The printed lines make a valid Matrix section: the tokens come from the files.
    const withTokens = tmp.file(
      'config2.yaml',
      `bridge:\n  data_dir: state\n${out.replace('matrix:\n', 'matrix:\n  server_name: example.test\n')}`,
    );
    const loaded = loadConfig({ path: withTokens, env: {} });
    expect(loaded.config.matrix.as_token).toBe(registration.as_token);
    expect(loaded.config.matrix.hs_token).toBe(registration.hs_token);
  });

  it('keeps existing tokens unless told to replace them', async () => {
    const config = tmp.file('config.yaml', 'bridge:\n  data_dir: state\n');
    expect((await run(['generate-registration', '--config', config])).code).toBe(EXIT.ok);
    const token = readFileSync(path.join(tmp.dir, 'state', 'matrix', 'as_token'), 'utf8');
    const again = await run(['generate-registration', '--config', config]);
    expect(again.code).toBe(EXIT.failure);
    expect(again.err).toContain('already exists: keep it, or pass --force');
    expect(readFileSync(path.join(tmp.dir, 'state', 'matrix', 'as_token'), 'utf8')).toBe(token);
    expect((await run(['generate-registration', '--config', config, '--force'])).code).toBe(EXIT.ok);
    expect(readFileSync(path.join(tmp.dir, 'state', 'matrix', 'as_token'), 'utf8')).not.toBe(token);
  });
});
