import { EventEmitter } from 'node:events';
import { chmodSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { keyFiles, loadKeys } from '../../emulator/keys.js';
import { RunningEmulator, serveUntilSignal } from '../../emulator/main.js';
import { loadEmulatorConfig } from '../../emulator/config.js';
import { EXIT, runCli } from '../../app/cli.js';
import { createLogger } from '../../src/observability/logger.js';
import { awaitAuthResult, ConnectReason, encodeClientPayload } from '../../src/protocol/auth.js';
import { verifyCertChain } from '../../src/protocol/cert-chain.js';
import { clientHandshake } from '../../src/protocol/handshake/index.js';
import {
  generateProviderKey,
  mintClientToken,
  publicJwks,
  type ProviderPrivateJwk,
} from '../../src/protocol/jwt.js';
import { generateKeyPair } from '../../src/protocol/noise/index.js';
import { decodeStanza, NATIVE_SERVER, toBytes } from '../../src/protocol/stanza/index.js';
import { tempDir } from '../support/tmp.js';

async function run(args: string[], waitForStop?: () => Promise<string>) {
  let out = '';
  let err = '';
  const code = await runCli(args, {
    out: (t) => (out += t),
    err: (t) => (err += t),
    env: {},
    ...(waitForStop ? { waitForStop } : {}),
  });
  return { code, out, err };
}

/** The value of `key:` in the YAML snippet the CLI prints. */
const printed = (out: string, key: string) => new RegExp(`^\\s*${key}: (\\S+)$`, 'm').exec(out)?.[1] ?? '';

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

type PayloadFor = (noiseStaticKey: Uint8Array) => Promise<Uint8Array>;

/** A provider's client opting in: a third-party account that has not enlisted may only connect to enlist. */
const enlistingClient =
  (providerKey: ProviderPrivateJwk): PayloadFor =>
  async (noiseStaticKey) =>
    encodeClientPayload({
      accountId: 'alice',
      providerId: 'acme',
      device: 1,
      connectReason: ConnectReason.ENLISTMENT,
      token: await mintClientToken({
        privateKey: providerKey,
        kid: providerKey.kid,
        alg: 'EdDSA',
        issuer: 'acme',
        subject: 'alice',
        audience: 'emulator.test',
        noiseStaticKey,
      }),
    });

/** Connects, checks the gateway's chain against the pinned root, and awaits the authentication result. */
async function handshake(
  port: number,
  rootPublicKey: Uint8Array,
  payload: PayloadFor,
  serverStaticKey?: Uint8Array,
) {
  const staticKey = generateKeyPair();
  const stream = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
  const hs = await clientHandshake(stream, {
    staticKey,
    rootPublicKey,
    serverStaticKey,
    payload: () => payload(staticKey.publicKey),
  });
  const success = await awaitAuthResult(hs.socket);
  return { ...hs, success };
}

describe('interop-bridge emulator (command line and main)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let providerKey: ProviderPrivateJwk;
  let config: string;

  beforeEach(async () => {
    tmp = tempDir();
    providerKey = await generateProviderKey('EdDSA');
    tmp.file('acme-jwks.json', JSON.stringify(publicJwks([providerKey])));
    config = tmp.file(
      'emulator.yaml',
      [
        'gateway:',
        '  port: 0',
        '  gateway_id: emulator.test',
        'emulator:',
        '  data_dir: data',
        'media:',
        '  port: 0',
        'admin:',
        '  port: 0',
        'providers:',
        '  - id: acme',
        '    jwks_file: acme-jwks.json',
        'logging:',
        '  level: silent',
        '',
      ].join('\n'),
    );
  });
  afterEach(() => tmp.cleanup());

  it('init creates private key files and prints a root key that verifies the chain built from them', async () => {
    const { code, out, err } = await run(['emulator', 'init', '--config', config, '--validity-days', '5']);
    expect(code).toBe(EXIT.ok);
    expect(err).toContain("put these in the bridge's configuration");
    const files = keyFiles(path.join(tmp.dir, 'data'));
    expect(statSync(files.dir).mode & 0o777).toBe(0o700);
    for (const f of [files.root, files.intermediate, files.noiseStatic])
      expect(statSync(f).mode & 0o777).toBe(0o600);

    const keys = loadKeys(path.join(tmp.dir, 'data'));
    expect(printed(out, 'gateway_id')).toBe('emulator.test');
    expect(printed(out, 'static_key')).toBe(Buffer.from(keys.staticKey.publicKey).toString('base64'));
    const chain = verifyCertChain(keys.certChain, {
      rootPublicKey: new Uint8Array(Buffer.from(printed(out, 'root_key'), 'base64')),
      serverStaticKey: keys.staticKey.publicKey,
    });
    expect(Number(chain.leaf.details.notAfter - chain.leaf.details.notBefore)).toBe(5 * 86_400 + 300);
  });

  it('init refuses to overwrite existing keys without --force (exit 1)', async () => {
    const first = await run(['emulator', 'init', '--config', config]);
    const again = await run(['emulator', 'init', '--config', config]);
    expect(again.code).toBe(EXIT.failure);
    expect(again.err).toContain('error (emulator_keys_exist)');
    expect(again.err).toContain('--force');
    const forced = await run(['emulator', 'init', '--config', config, '--force']);
    expect(forced.code).toBe(EXIT.ok);
    expect(printed(forced.out, 'root_key')).not.toBe(printed(first.out, 'root_key'));
  });

  it('rotate prints a new static key under the same root', async () => {
    const init = await run(['emulator', 'init', '--config', config]);
    const rotated = await run(['emulator', 'rotate', '--config', config]);
    expect(rotated.code).toBe(EXIT.ok);
    expect(printed(rotated.out, 'static_key')).not.toBe(printed(init.out, 'static_key'));
    const keys = loadKeys(path.join(tmp.dir, 'data'));
    expect(Buffer.from(keys.rootPublicKey).toString('base64')).toBe(printed(init.out, 'root_key'));
  });

  it('emulator --help and emulator init --help exit 0', async () => {
    await run(['emulator', 'init', '--config', config]);
    const help = await run(['emulator', '--help']);
    expect(help.code).toBe(EXIT.ok);
    expect(help.out).toContain('--config <file>');
    expect(help.out).toMatch(/^\s+init /m);
    expect(help.out).toMatch(/^\s+rotate /m);
    expect((await run(['emulator', 'init', '--help'])).code).toBe(EXIT.ok);
  });

  it('exits 2 with every problem of a bad configuration, and on a bad --validity-days', async () => {
    const bad = tmp.file('bad.yaml', 'gateway:\n  port: nope\nproviders:\n  - id: acme\n');
    const { code, err } = await run(['emulator', '--config', bad]);
    expect(code).toBe(EXIT.usage);
    expect(err).toContain(`2 problems in ${bad}:`);
    expect(err).toContain('gateway.port: expected a port number');
    expect(err).toContain('providers.0.jwks_file: expected jwks_file or jwks_url');
    expect((await run(['emulator', 'init', '--config', config, '--validity-days', '0'])).code).toBe(
      EXIT.usage,
    );
  });

  it('refuses key files open to group or others (exit 2, with the chmod to run), unless --allow-insecure-secrets', async () => {
    await run(['emulator', 'init', '--config', config]);
    await run(['emulator', 'rotate', '--config', config]); // there is a previous static key too
    const files = keyFiles(path.join(tmp.dir, 'data'));
    chmodSync(files.root, 0o644);
    chmodSync(files.previousStatic, 0o640);
    // A configuration holding the admin token inline is a secret file too.
    const withToken = tmp.file(
      'token.yaml',
      `${readFileSync(config, 'utf8')}admin:\n  port: 0\n  token: a-very-secret-admin-token\n`.replace(
        'admin:\n  port: 0\nproviders',
        'providers',
      ),
    );
    chmodSync(withToken, 0o644);

    for (const args of [
      ['emulator', '--config', withToken],
      ['emulator', 'rotate', '--config', withToken],
    ]) {
      let waited = false;
      const { code, err } = await run(args, async () => {
        waited = true;
        return 'SIGTERM';
      });
      expect(code).toBe(EXIT.usage);
      expect(waited).toBe(false); // nothing was started
      expect(err).toContain(
        `the emulator's root key: ${files.root} is open to its group and other users (mode 0644): run "chmod 600 ${files.root}"`,
      );
      expect(err).toContain(`${files.previousStatic} is open to its group (mode 0640)`);
      expect(err).toContain(`the configuration file (it holds admin.token inline): ${withToken}`);
      expect(err).toContain(`run "chmod 600 ${withToken}"`);
      expect(err).toContain('--allow-insecure-secrets');
      expect(err).not.toContain('a-very-secret-admin-token');
      expect(err).not.toContain('unexpected error');
    }
    expect(statSync(files.root).mode & 0o777).toBe(0o644); // rotate refused: nothing rewritten

    // Started anyway on request, with a loud warning per file.
    let log = '';
    const logDestination = new Writable({
      write(chunk, _enc, done) {
        log += String(chunk);
        done();
      },
    }) as unknown as NonNullable<Parameters<typeof runCli>[1]>['logDestination'];
    const quiet = tmp.file(
      'quiet.yaml',
      readFileSync(config, 'utf8').replace('level: silent', 'level: warn'),
    );
    const code = await runCli(['emulator', '--config', quiet, '--allow-insecure-secrets'], {
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
      .filter((l) => l.level === 40 && l.msg.startsWith('INSECURE: '))
      .map((l) => l.msg);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toContain(`the emulator's root key: ${files.root}`);
    expect(warnings[1]).toContain(`run "chmod 600 ${files.previousStatic}"`);

    // Fixed as told, it starts without a word about it.
    for (const f of [files.root, files.previousStatic]) chmodSync(f, 0o600);
    const fixed = await run(['emulator', '--config', config], async () => 'SIGTERM');
    expect(fixed.code).toBe(EXIT.ok);
  });

  it('exits 1 and says to run init when there are no keys', async () => {
    const { code, err } = await run(['emulator', '--config', config]);
    expect(code).toBe(EXIT.failure);
    expect(err).toContain('interop-bridge emulator init');
  });

  it('runs from its configuration until told to stop, and a client completes a handshake', async () => {
    const port = await freePort();
    const withPort = tmp.file('fixed.yaml', readFileSync(config, 'utf8').replace('port: 0', `port: ${port}`));
    const init = await run(['emulator', 'init', '--config', withPort]);
    const root = new Uint8Array(Buffer.from(printed(init.out, 'root_key'), 'base64'));
    let stop!: (signal: string) => void;
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const exit = run(['emulator', '--config', withPort], () => {
      started();
      return new Promise<string>((resolve) => (stop = resolve));
    });
    await running;
    try {
      const client = await handshake(port, root, enlistingClient(providerKey));
      expect(client.success.kind).toBe('success');
      client.socket.close();
    } finally {
      stop('SIGTERM');
    }
    expect((await exit).code).toBe(EXIT.ok);
  });

  it('rotates in process without dropping open connections; new clients meet the new key', async () => {
    const init = await run(['emulator', 'init', '--config', config]);
    const root = new Uint8Array(Buffer.from(printed(init.out, 'root_key'), 'base64'));
    const emulator = await RunningEmulator.start({
      loaded: loadEmulatorConfig(config),
      logger: createLogger({ level: 'silent' }),
    });
    try {
      expect(emulator.summary()).toMatchObject({
        gatewayId: 'emulator.test',
        providers: ['acme'],
        rootKey: printed(init.out, 'root_key'),
      });
      const phone = '+4915112345678';
      emulator.gateway.createNativeUser(phone);
      const native: PayloadFor = (noiseStaticKey) =>
        emulator.gateway.nativeClientPayload({ phone, device: 0, noiseStaticKey });
      const before = await handshake(emulator.gateway.port, root, native);
      const rotated = emulator.rotateKeys();
      expect(rotated.staticKey.publicKey).not.toEqual(before.serverStaticKey);

      // A client that pinned the old key falls back to XX and learns the new one.
      const after = await handshake(
        emulator.gateway.port,
        root,
        enlistingClient(providerKey),
        before.serverStaticKey,
      );
      expect(after.serverStaticKey).toEqual(rotated.staticKey.publicKey);
      expect(after.pattern).toBe('XXfallback');
      // The connection opened before the rotation is still usable, and its account gets media credentials.
      before.socket.send(toBytes({ kind: 'iq', id: 'm1', to: NATIVE_SERVER, body: { op: 'media_conn' } }));
      const answer = decodeStanza(await before.socket.receive());
      expect(answer).toMatchObject({
        kind: 'iq',
        id: 'm1',
        body: { op: 'media_conn_result', ttl: 300, hosts: [`127.0.0.1:${emulator.media.port}`] },
      });
      before.socket.close();
      after.socket.close();
    } finally {
      await emulator.stop();
    }
  });

  it('picks up keys rotated on disk on SIGHUP, and keeps its keys when the reload fails', async () => {
    await run(['emulator', 'init', '--config', config]);
    const logger = createLogger({ level: 'silent' });
    const emulator = await RunningEmulator.start({ loaded: loadEmulatorConfig(config), logger });
    let stop!: (signal: string) => void;
    const hangups = new EventEmitter();
    const serving = serveUntilSignal(emulator, logger, {
      waitForStop: () => new Promise<string>((resolve) => (stop = resolve)),
      hangups,
    });
    try {
      const rotated = await run(['emulator', 'rotate', '--config', config]);
      hangups.emit('SIGHUP');
      expect(emulator.summary().staticKey).toBe(printed(rotated.out, 'static_key'));
      expect(emulator.gateway.identity.staticKey.publicKey.toString('base64')).toBe(
        printed(rotated.out, 'static_key'),
      );
      rmSync(keyFiles(path.join(tmp.dir, 'data')).noiseStatic);
      hangups.emit('SIGHUP');
      expect(emulator.summary().staticKey).toBe(printed(rotated.out, 'static_key'));
    } finally {
      stop('SIGTERM');
      await serving;
      await emulator.stop();
    }
  });
});
