import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { emulatorConfigSchema, loadEmulatorConfig, type ResolvedProvider } from '../../emulator/config.js';
import { ProviderRegistry } from '../../emulator/providers.js';
import { ConfigError, type InteropError } from '../../src/errors.js';
import { createLogger } from '../../src/observability/logger.js';
import {
  generateProviderKey,
  mintClientToken,
  publicJwks,
  verifyClientToken,
  type ProviderPrivateJwk,
} from '../../src/protocol/jwt.js';
import { ReplayCache } from '../../src/protocol/replay-cache.js';
import { tempDir } from '../support/tmp.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function problemsOf(run: () => unknown): readonly string[] {
  try {
    run();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('emulator configuration', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  const load = (yaml: string) => loadEmulatorConfig(tmp.file('emulator.yaml', yaml));

  it('refuses a YAML alias bomb with a configuration error', () => {
    const bomb = [
      'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
      ...'bcdefghi'
        .split('')
        .map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcdefghi'[i]}`).join(', ')}]`),
    ].join('\n');
    expect(problemsOf(() => load(bomb))).toEqual([
      expect.stringContaining('YAML aliases expand to too much'),
    ]);
  });

  it('has the documented defaults without a file', () => {
    const { config, paths, providers } = loadEmulatorConfig();
    expect(config.gateway).toMatchObject({ host: '127.0.0.1', port: 29400, gateway_id: 'emulator.interop' });
    expect(config.media).toMatchObject({ host: '127.0.0.1', port: 29401 });
    expect(paths.dataDir).toBe(path.resolve('emulator-data'));
    expect(providers).toEqual([]);
  });

  it('accepts the documented sample, and the sample documents every option', () => {
    const samplePath = path.join(repoRoot, 'emulator.sample.yaml');
    const sample = readFileSync(samplePath, 'utf8');
    tmp.file('provider-jwks.json', '{"keys": []}');
    const copy = tmp.file('emulator.yaml', sample);
    expect(() => loadEmulatorConfig(copy)).not.toThrow();
    const shape = emulatorConfigSchema.shape;
    for (const [section, schema] of Object.entries(shape)) {
      expect(sample).toMatch(new RegExp(`^${section}:`, 'm'));
      const inner = (schema as { def: { innerType: { shape?: Record<string, unknown> } } }).def.innerType;
      for (const key of Object.keys(inner.shape ?? {})) {
        expect(sample).toMatch(new RegExp(`^\\s*#?\\s*${key}:`, 'm'));
      }
    }
    for (const key of ['id', 'jwks_file', 'jwks_url', 'jwks_refresh_seconds', 'allowed_media_hosts']) {
      expect(sample).toMatch(new RegExp(`^\\s*#?\\s*(- )?${key}:`, 'm'));
    }
  });

  it('resolves the data directory and JWKS files against the configuration file', () => {
    tmp.file('jwks.json', '{"keys": []}');
    const loaded = load('emulator:\n  data_dir: state\nproviders:\n  - id: acme\n    jwks_file: jwks.json\n');
    expect(loaded.paths.dataDir).toBe(path.join(tmp.dir, 'state'));
    expect(loaded.paths.media).toBe(path.join(tmp.dir, 'state', 'media'));
    expect(loaded.providers[0]?.jwks).toEqual({ file: path.join(tmp.dir, 'jwks.json') });
  });

  it('lists every mistake at once, each as "key: expected X, found Y"', () => {
    const problems = problemsOf(() =>
      load(
        [
          'gateway:',
          '  port: 70000',
          'media:',
          '  max_bytes: ten',
          'providers:',
          '  - id: Acme',
          '    jwks_url: ftp://acme.example/jwks',
          '  - id: beta',
          '    allowed_media_hosts: [ok.example, "not a host"]',
          'logging:',
          '  level: loud',
        ].join('\n'),
      ),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        'gateway.port: expected a port number from 1 to 65535 (0: any free port), found 70000',
        'media.max_bytes: expected an integer from 1024 to 1099511627776, found "ten"',
        'providers.0.id: expected a provider id: 1-63 lower-case letters, digits and inner hyphens, not "wa", found "Acme"',
        'providers.0.jwks_url: expected an http:// or https:// URL, found "ftp://acme.example/jwks"',
        'providers.1.allowed_media_hosts.1: expected a host name or host:port, such as "media.provider.example" or "127.0.0.1:29330", found "not a host"',
        expect.stringMatching(/^providers\.1\.jwks_file: expected jwks_file or jwks_url/),
        expect.stringMatching(/^logging\.level: expected one of "trace"/),
      ]),
    );
    expect(problems).toHaveLength(7);
  });

  it('suggests the intended key for a misspelt one, also inside the provider list', () => {
    const problems = problemsOf(() =>
      load(
        'gateway:\n  gateway_di: x\nproviders:\n  - id: acme\n    jwks_url: http://a.example/j\n    jwks_refresh_second: 60\n',
      ),
    );
    expect(problems).toEqual([
      'gateway.gateway_di: unknown option; did you mean "gateway_id"?',
      'providers.0.jwks_refresh_second: unknown option; did you mean "jwks_refresh_seconds"?',
    ]);
  });

  it('refuses a provider with both a JWKS file and URL, a repeated id, and an unreadable JWKS file', () => {
    tmp.file('bad.json', 'not json');
    const problems = problemsOf(() =>
      load(
        [
          'providers:',
          '  - id: acme',
          '    jwks_file: bad.json',
          '  - id: acme',
          '    jwks_file: missing.json',
          '  - id: beta',
          '    jwks_file: bad.json',
          '    jwks_url: http://beta.example/jwks',
        ].join('\n'),
      ),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /^providers\.1\.id: expected a provider id not already listed \("acme" appears twice\)/,
        ),
        expect.stringMatching(/^providers\.2\.jwks_url: expected nothing here when jwks_file is given/),
      ]),
    );
    // File contents are checked once the structure is right.
    const fileProblems = problemsOf(() =>
      load('providers:\n  - id: acme\n    jwks_file: bad.json\n  - id: beta\n    jwks_file: missing.json\n'),
    );
    expect(fileProblems).toEqual([
      `providers.0.jwks_file: expected a JWKS (JSON with a "keys" list) in ${path.join(tmp.dir, 'bad.json')}, found text that is not JSON`,
      `providers.1.jwks_file: cannot read the JWKS file ${path.join(tmp.dir, 'missing.json')}: no such file`,
    ]);
  });

  it('refuses the reserved provider id "wa"', () => {
    const problems = problemsOf(() => load('providers:\n  - id: wa\n    jwks_url: http://a.example/j\n'));
    expect(problems).toEqual([
      expect.stringMatching(/^providers\.0\.id: expected a provider id other than "wa"/),
    ]);
  });
});

describe('emulator provider directory', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  const logged: { level: number; msg: string }[] = [];
  const logger = createLogger({
    level: 'info',
    format: 'json',
    destination: {
      write: (line: string) => void logged.push(JSON.parse(line) as { level: number; msg: string }),
    },
  });
  beforeEach(() => (logged.length = 0));

  const provider = (id: string, jwks: ResolvedProvider['jwks']): ResolvedProvider => ({
    id,
    jwks,
    refreshSeconds: 300,
    allowedMediaHosts: ['media.acme.example', '127.0.0.1:29330'],
  });

  /** A provider's JWKS endpoint whose answer the test changes; counts requests. */
  async function jwksServer() {
    const state = { jwks: { keys: [] as unknown[] } as unknown, status: 200, requests: 0 };
    const server = http.createServer((_req, res) => {
      state.requests++;
      res.writeHead(state.status, { 'content-type': 'application/json' }).end(JSON.stringify(state.jwks));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/_interop/jwks.json`;
    return { state, url, close: () => new Promise<void>((r) => server.close(() => r())) };
  }

  const token = async (key: ProviderPrivateJwk, iss = 'acme') => {
    const noiseStaticKey = new Uint8Array(32).fill(7);
    const compact = await mintClientToken({
      privateKey: key,
      kid: key.kid,
      alg: 'EdDSA',
      issuer: iss,
      subject: 'alice',
      audience: 'emulator.interop',
      noiseStaticKey,
    });
    return { compact, noiseStaticKey };
  };

  async function verifies(registry: ProviderRegistry, key: ProviderPrivateJwk, iss = 'acme') {
    const { compact, noiseStaticKey } = await token(key, iss);
    try {
      await verifyClientToken(compact, {
        keyResolver: registry.keyResolver,
        issuer: (i) => registry.isKnownProvider(i),
        audience: 'emulator.interop',
        noiseStaticKey,
        replayCache: new ReplayCache({ maxEntries: 10 }),
      });
      return 'ok';
    } catch (err) {
      return (err as InteropError).code;
    }
  }

  it('verifies tokens with the keys of a JWKS file, and only for that provider', async () => {
    const key = await generateProviderKey('EdDSA');
    const file = tmp.file('jwks.json', JSON.stringify(publicJwks([key])));
    const registry = await ProviderRegistry.create([provider('acme', { file })], {
      logger,
      periodicRefresh: false,
    });
    expect(registry.isKnownProvider('acme')).toBe(true);
    expect(registry.isKnownProvider('other')).toBe(false);
    expect(await verifies(registry, key)).toBe('ok');
    expect(await verifies(registry, key, 'other')).toBe('token_wrong_issuer');
    expect(registry.status()[0]?.kids).toEqual([key.kid]);
    registry.close();
  });

  it('fetches the JWKS from the provider URL and re-fetches on an unknown kid, rate-limited', async () => {
    const first = await generateProviderKey('EdDSA');
    const rotated = await generateProviderKey('EdDSA');
    const server = await jwksServer();
    server.state.jwks = publicJwks([first]);
    let now = 1_000_000;
    const registry = await ProviderRegistry.create([provider('acme', { url: server.url })], {
      logger,
      periodicRefresh: false,
      minRefetchSeconds: 30,
      now: () => now,
    });
    expect(await verifies(registry, first)).toBe('ok');
    expect(server.state.requests).toBe(1);

    server.state.jwks = publicJwks([first, rotated]);
    now += 5_000; // too soon after the last fetch: no new request
    expect(await verifies(registry, rotated)).toBe('token_unknown_kid');
    expect(server.state.requests).toBe(1);
    now += 30_000;
    expect(await verifies(registry, rotated)).toBe('ok');
    expect(server.state.requests).toBe(2);
    registry.close();
    await server.close();
  });

  it('keeps the last good JWKS and logs a clear error when the URL fails', async () => {
    const key = await generateProviderKey('EdDSA');
    const server = await jwksServer();
    server.state.jwks = publicJwks([key]);
    const registry = await ProviderRegistry.create([provider('acme', { url: server.url })], {
      logger,
      periodicRefresh: false,
    });
    server.state.status = 500;
    await registry.refresh('acme');
    expect(await verifies(registry, key)).toBe('ok');
    expect(registry.status()[0]?.lastError).toContain('answered HTTP 500');
    const error = logged.find((l) => l.level === 50); // pino's "error";
    expect(error?.msg).toContain('cannot load the JWKS of provider acme');
    expect(error?.msg).toContain('keeping the last good JWKS');

    await server.close();
    await registry.refresh('acme');
    expect(await verifies(registry, key)).toBe('ok');
    registry.close();
  });

  it('starts with a provider whose JWKS URL is not reachable yet, and loads it later', async () => {
    const key = await generateProviderKey('EdDSA');
    const server = await jwksServer();
    server.state.status = 503;
    const registry = await ProviderRegistry.create([provider('acme', { url: server.url })], {
      logger,
      periodicRefresh: false,
      minRefetchSeconds: 0,
    });
    expect(await verifies(registry, key)).toBe('token_unknown_kid');
    server.state.status = 200;
    server.state.jwks = publicJwks([key]);
    expect(await verifies(registry, key)).toBe('ok');
    registry.close();
    await server.close();
  });

  it('allows media URLs on the listed hosts and ports only', async () => {
    const registry = await ProviderRegistry.create(
      [provider('acme', { file: tmp.file('jwks.json', '{"keys": []}') })],
      { logger, periodicRefresh: false },
    );
    const allowed = (u: string) => registry.isAllowedMediaUrl('acme', new URL(u));
    expect(allowed('https://media.acme.example/m/1')).toBe(true);
    expect(allowed('http://MEDIA.acme.example/m/1')).toBe(true);
    expect(allowed('https://media.acme.example:8443/m/1')).toBe(false);
    expect(allowed('http://127.0.0.1:29330/m/1')).toBe(true);
    expect(allowed('http://127.0.0.1:29331/m/1')).toBe(false);
    expect(allowed('http://evil.example/m/1')).toBe(false);
    expect(allowed('http://media.acme.example.evil.example/m/1')).toBe(false);
    expect(registry.isAllowedMediaUrl('other', new URL('https://media.acme.example/m/1'))).toBe(false);
    registry.close();
  });
});
