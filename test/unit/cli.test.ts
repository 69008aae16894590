import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import { Writable } from 'node:stream';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXIT, runCli } from '../../app/cli.js';
import { tempDir } from '../support/tmp.js';
import { freePort } from '../support/wait.js';

async function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  let out = '';
  let err = '';
  const code = await runCli(args, { out: (t) => (out += t), err: (t) => (err += t), env });
  return { code, out, err };
}

const ALIAS_BOMB = [
  'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
  ...'bcdefghi'.split('').map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcdefghi'[i]}`).join(', ')}]`),
].join('\n');

describe('command line', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  it('lists every command in --help and exits 0', async () => {
    const { code, out } = await run(['--help']);
    expect(code).toBe(EXIT.ok);
    for (const command of ['start', 'doctor', 'keys', 'generate-registration', 'emulator']) {
      expect(out).toMatch(new RegExp(`^  ${command} `, 'm'));
    }
    expect(out).toContain('Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.');
  });

  it('offers --config and --version on every command', async () => {
    for (const command of [
      ['start'],
      ['doctor'],
      ['keys', 'generate'],
      ['generate-registration'],
      ['emulator'],
    ]) {
      const { code, out } = await run([...command, '--help']);
      expect(code).toBe(EXIT.ok);
      expect(out).toContain('--config <file>');
      expect(out).toContain('--version');
    }
    const version = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;
    expect(await run(['doctor', '--version'])).toMatchObject({ code: EXIT.ok, out: `${version}\n` });
  });

  it('exits 2 on a usage error: no command, unknown command or unknown option', async () => {
    expect((await run([])).code).toBe(EXIT.usage);
    const unknown = await run(['frobnicate']);
    expect(unknown.code).toBe(EXIT.usage);
    expect(unknown.err).toContain("unknown command 'frobnicate'");
    expect((await run(['doctor', '--bogus'])).code).toBe(EXIT.usage);
  });

  it('exits 2 with every configuration problem listed', async () => {
    const config = tmp.file('config.yaml', 'gateway:\n  port: -1\nlogging:\n  level: loud\n');
    const { code, err } = await run(['doctor', '--config', config]);
    expect(code).toBe(EXIT.usage);
    expect(err).toContain(`2 problems in ${config}:`);
    expect(err).toContain('gateway.port: expected a port number from 1 to 65535, found -1');
    expect(err).toContain('logging.level: expected one of');
  });

  it('exits 2 with a clear configuration error, not a stack, on a YAML alias bomb', async () => {
    const config = tmp.file('config.yaml', ALIAS_BOMB);
    for (const command of [['doctor', '--offline'], ['start'], ['emulator']]) {
      const { code, err } = await run([...command, '--config', config]);
      expect(code).toBe(EXIT.usage);
      expect(err).toContain(`invalid configuration in ${config}:`);
      expect(err).toContain('YAML aliases expand to too much');
      expect(err).not.toContain('unexpected error');
      expect(err).not.toMatch(/^\s+at /m);
    }
  });

  it('takes the config file from INTEROP_BRIDGE_CONFIG too', async () => {
    const config = tmp.file('config.yaml', 'gateway:\n  port: nope\n');
    expect((await run(['doctor'], { INTEROP_BRIDGE_CONFIG: config })).code).toBe(EXIT.usage);
  });

  it('doctor prints a readable report and exits 0 when nothing fails', async () => {
    const config = tmp.file('config.yaml', 'bridge:\n  data_dir: state\n');
    const { code, out } = await run(['doctor', '--config', config]);
    expect(code).toBe(EXIT.ok);
    expect(out).toContain(`interop-bridge doctor: configuration from ${config} is valid`);
    expect(out).toMatch(/^ {2}ok {4}database +.*does not exist yet/m);
    expect(out).toMatch(
      /^ {2}warn {2}provider signing key .*\n.*-> "interop-bridge keys generate" creates it/m,
    );
    expect(out).toMatch(/^checks: \d+ ok, \d+ with warnings, 0 failing$/m);
  });

  it('doctor reads the documented sample configuration and prints a readable report', async () => {
    const sample = fileURLToPath(new URL('../../config.sample.yaml', import.meta.url));
    const { code, out } = await run(['doctor', '--config', sample]);
    expect(code).toBe(EXIT.ok);
    expect(out).toContain(`configuration from ${sample} is valid`);
    expect(out).toMatch(/^ {2}warn {2}gateway +gateway\.root_key is not set/m);
  });

  it('doctor exits 1 when a check fails', async () => {
    const config = tmp.file('config.yaml', 'bridge:\n  data_dir: state\n');
    tmp.file('state', 'a file, not a directory');
    const { code, out } = await run(['doctor', '--config', config]);
    expect(code).toBe(EXIT.failure);
    expect(out).toMatch(/^ {2}fail {2}data directory +.*state is not a directory/m);
  });

  it('keys generate --at-rest writes a 32-byte key with mode 0600, and replaces it only with --force', async () => {
    const config = tmp.file('bridge.yaml', 'bridge:\n  data_dir: state\n');
    const file = path.join(tmp.dir, 'state', 'at-rest.key');
    const first = await run(['keys', 'generate', '--at-rest', '--config', config]);
    expect(first.code).toBe(EXIT.ok);
    expect(first.err).toContain(`wrote a new at-rest key to ${file}`);
    expect(statSync(file).size).toBe(32);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const again = await run(['keys', 'generate', '--at-rest', '--config', config]);
    expect(again.code).not.toBe(EXIT.ok);
    expect(again.err).toContain('already exists: keep it, or pass --force');
    expect((await run(['keys', 'generate', '--at-rest', '--force', '--config', config])).code).toBe(EXIT.ok);
  });

  it('keys generate writes a private JWK with mode 0600, prints only the public JWKS, and will not overwrite', async () => {
    const config = tmp.file('config.yaml', 'bridge:\n  data_dir: state\n');
    const first = await run(['keys', 'generate', '--config', config]);
    expect(first.code).toBe(EXIT.ok);
    const file = path.join(tmp.dir, 'state', 'provider-signing-key.jwk');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const jwk = JSON.parse(readFileSync(file, 'utf8'));
    expect(jwk).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
    const jwks = JSON.parse(first.out);
    expect(jwks.keys).toEqual([
      { kty: 'OKP', crv: 'Ed25519', x: jwk.x, kid: jwk.kid, alg: 'EdDSA', use: 'sig' },
    ]);
    expect(first.out + first.err).not.toContain(jwk.d);

    const again = await run(['keys', 'generate', '--config', config]);
    expect(again.code).toBe(EXIT.failure);
    expect(again.err).toContain('already exists: keep it, or pass --force');
    expect(JSON.parse(readFileSync(file, 'utf8')).kid).toBe(jwk.kid);

    const es = await run(['keys', 'generate', '--alg', 'ES256', '--out', path.join(tmp.dir, 'es.jwk')]);
    expect(es.code).toBe(EXIT.ok);
    expect(JSON.parse(es.out).keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256' });
    expect(
      (await run(['keys', 'generate', '--alg', 'RS256', '--out', path.join(tmp.dir, 'rs.jwk')])).code,
    ).toBe(EXIT.usage);
    expect(existsSync(path.join(tmp.dir, 'rs.jwk'))).toBe(false);
  });

  it('keys jwks prints the public half of the existing key, or says how to create one', async () => {
    const config = tmp.file('config.yaml', 'bridge:\n  data_dir: state\n');
    const missing = await run(['keys', 'jwks', '--config', config]);
    expect(missing.code).toBe(EXIT.failure);
    expect(missing.err).toContain('create it with "interop-bridge keys generate"');
    const generated = await run(['keys', 'generate', '--config', config]);
    expect((await run(['keys', 'jwks', '--config', config])).out).toBe(generated.out);
  });

  it('start serves health and the JWKS, then shuts down cleanly when told to stop', async () => {
    const port = await freePort();
    const config = tmp.file(
      'config.yaml',
      `bridge:\n  data_dir: state\n  http:\n    port: ${port}\nlogging:\n  level: silent\n`,
    );
    let stop!: (signal: string) => void;
    const stopped = new Promise<string>((resolve) => (stop = resolve));
    const running = runCli(['start', '--config', config], {
      out: () => undefined,
      err: () => undefined,
      env: {},
      waitForStop: () => stopped,
    });
    let health: Response | undefined;
    for (let i = 0; i < 100 && !health; i++) {
      health = await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined);
      if (!health) await new Promise((r) => setTimeout(r, 50));
    }
    expect(await health!.json()).toMatchObject({ status: 'ok', puppets: 0, outbox_queued: 0 });
    const jwks = (await (await fetch(`http://127.0.0.1:${port}/_interop/jwks.json`)).json()) as {
      keys: Record<string, unknown>[];
    };
    expect(jwks.keys[0]).toMatchObject({ kty: 'OKP', alg: 'EdDSA' });
    expect(jwks.keys[0]!.d).toBeUndefined();
    stop('SIGTERM');
    expect(await running).toBe(EXIT.ok);
    await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow();
  });

  describe('secret files open to group or others', () => {
    /** A config holding the XMPP secret inline and naming two token files, every file mode 0644. */
    const exposedSetup = (port: number) => {
      const asToken = tmp.file('as_token', 'as-secret\n', 0o644);
      const hsToken = tmp.file('hs_token', 'hs-secret\n', 0o644);
      const config = tmp.file(
        'config.yaml',
        [
          'bridge:',
          '  data_dir: state',
          '  http:',
          `    port: ${port}`,
          'matrix:',
          '  as_token_file: as_token',
          '  hs_token_file: hs_token',
          'xmpp:',
          '  secret: inline-component-secret',
          'logging:',
          '  level: warn',
          '  format: json',
          '',
        ].join('\n'),
        0o644,
      );
      for (const f of [asToken, hsToken, config]) chmodSync(f, 0o644); // whatever the umask
      return { asToken, hsToken, config };
    };

    it('start refuses them (exit 2), naming each file and the exact chmod to run', async () => {
      const { asToken, hsToken, config } = exposedSetup(await freePort());
      const { code, err } = await run(['start', '--config', config]);
      expect(code).toBe(EXIT.usage);
      for (const file of [asToken, hsToken, config]) expect(err).toContain(`run "chmod 600 ${file}"`);
      expect(err).toContain(
        `matrix.as_token_file: ${asToken} is open to its group and other users (mode 0644)`,
      );
      expect(err).toContain('the configuration file (it holds xmpp.secret inline)');
      expect(err).toContain('--allow-insecure-secrets');
      expect(err).not.toContain('unexpected error');
      // Nothing was started: no data directory, no signing key.
      expect(existsSync(path.join(tmp.dir, 'state'))).toBe(false);

      for (const f of [asToken, hsToken, config]) chmodSync(f, 0o600);
      const fixed = await runCli(['start', '--config', config], {
        out: () => undefined,
        err: () => undefined,
        env: {},
        waitForStop: async () => 'SIGTERM',
      });
      expect(fixed).toBe(EXIT.ok);
    });

    it('start refuses an at-rest key open to others, with its chmod', async () => {
      const config = tmp.file(
        'config.yaml',
        `bridge:\n  data_dir: state\n  http:\n    port: ${await freePort()}\n`,
      );
      expect((await run(['keys', 'generate', '--config', config])).code).toBe(EXIT.ok);
      const key = path.join(tmp.dir, 'state', 'at-rest.key');
      chmodSync(key, 0o644);
      const { code, err } = await run(['start', '--config', config]);
      expect(code).toBe(EXIT.usage);
      expect(err).toContain(
        `bridge.at_rest_key_file: ${key} is open to its group and other users (mode 0644)`,
      );
      expect(err).toContain(`run "chmod 600 ${key}"`);
    });

    it('start --allow-insecure-secrets starts anyway with a loud warning per file', async () => {
      const { asToken, config } = exposedSetup(await freePort());
      let log = '';
      const logDestination = new Writable({
        write(chunk, _enc, done) {
          log += String(chunk);
          done();
        },
      }) as unknown as NonNullable<Parameters<typeof runCli>[1]>['logDestination'];
      const code = await runCli(['start', '--config', config, '--allow-insecure-secrets'], {
        out: () => undefined,
        err: () => undefined,
        env: {},
        waitForStop: async () => 'SIGTERM',
        logDestination,
      });
      expect(code).toBe(EXIT.ok);
      const warnings = log
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { level: number; msg: string })
        .filter((l) => l.level === 40 && l.msg.startsWith('INSECURE: '));
      expect(warnings).toHaveLength(3);
      expect(warnings.map((w) => w.msg)).toContainEqual(
        expect.stringContaining(`run "chmod 600 ${asToken}"`),
      );
    });

    it('doctor lists each one as a failed check with its chmod, and the signing key too', async () => {
      const { asToken, hsToken, config } = exposedSetup(await freePort());
      expect((await run(['keys', 'generate', '--config', config])).code).toBe(EXIT.ok);
      const key = path.join(tmp.dir, 'state', 'provider-signing-key.jwk');
      chmodSync(key, 0o640);
      const { code, out } = await run(['doctor', '--offline', '--config', config]);
      expect(code).toBe(EXIT.failure);
      for (const file of [asToken, hsToken, config]) {
        expect(out).toMatch(new RegExp(`fail {2}secret file .*${file.replace(/[.]/g, '\\.')}.*mode 0644`));
        expect(out).toContain(`-> run "chmod 600 ${file}"`);
      }
      expect(out).toContain(`-> run "chmod 600 ${key}"`);
    });

    it('keys generate --force and generate-registration --force leave owner-only files, whatever was there', async () => {
      const config = tmp.file('config.yaml', 'bridge:\n  data_dir: state\n');
      expect((await run(['keys', 'generate', '--config', config])).code).toBe(EXIT.ok);
      const key = path.join(tmp.dir, 'state', 'provider-signing-key.jwk');
      chmodSync(key, 0o644);
      expect((await run(['keys', 'generate', '--config', config, '--force'])).code).toBe(EXIT.ok);
      expect(statSync(key).mode & 0o777).toBe(0o600);
      const out = path.join(tmp.dir, 'reg');
      expect((await run(['generate-registration', '--config', config, '--out', out])).code).toBe(EXIT.ok);
      for (const f of ['registration.yaml', 'as_token', 'hs_token']) chmodSync(path.join(out, f), 0o644);
      expect((await run(['generate-registration', '--config', config, '--out', out, '--force'])).code).toBe(
        EXIT.ok,
      );
      for (const f of ['registration.yaml', 'as_token', 'hs_token']) {
        expect(statSync(path.join(out, f)).mode & 0o777).toBe(0o600);
      }
    });
  });
});
