import { chmodSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/config/loader.js';
import { ConfigError } from '../../src/errors.js';
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

describe('configuration', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  const load = (yaml: string, env: NodeJS.ProcessEnv = {}) =>
    loadConfig({ path: tmp.file('config.yaml', yaml), env });

  it('accepts the documented sample, which sets every option to its default', () => {
    const sample = loadConfig({ path: path.join(repoRoot, 'config.sample.yaml'), env: {} });
    const defaults = loadConfig({ env: {} });
    expect(sample.config).toEqual({
      ...defaults.config,
      matrix: {
        ...defaults.config.matrix,
        permissions: { localhost: 'user' },
        encryption: { ...defaults.config.matrix.encryption, allow: true, default: true },
      },
    });
  });

  it('documents every option of the schema in config.sample.yaml', () => {
    const sample = readFileSync(path.join(repoRoot, 'config.sample.yaml'), 'utf8');
    const { config } = loadConfig({ env: {} });
    const keys: string[] = [];
    for (const [section, values] of Object.entries(config)) {
      for (const key of Object.keys(values as object)) keys.push(`${section}.${key}`);
    }
    const undocumented = keys.filter(
      (k) => !new RegExp(`^\\s*#?\\s*${k.split('.')[1]}(_file)?:`, 'm').test(sample),
    );
    expect(undocumented).toEqual([]);
    for (const secret of ['as_token', 'hs_token', 'secret'])
      expect(sample).toMatch(new RegExp(`${secret}_file:`));
  });

  it('resolves data paths against the config file directory', () => {
    const { paths } = load('bridge:\n  data_dir: state\n  database: bridge.db\n');
    expect(paths.dataDir).toBe(path.join(tmp.dir, 'state'));
    expect(paths.database).toBe(path.join(tmp.dir, 'state', 'bridge.db'));
  });

  it('names the key, the value found and what is expected for a wrong type', () => {
    expect(problemsOf(() => load('gateway:\n  port: "not a port"\n'))).toEqual([
      'gateway.port: expected a port number from 1 to 65535, found "not a port"',
    ]);
  });

  it('rejects a URL that is not http(s)', () => {
    expect(problemsOf(() => load('matrix:\n  homeserver_url: ftp://example.org\n'))).toEqual([
      'matrix.homeserver_url: expected an http:// or https:// URL, found "ftp://example.org"',
    ]);
  });

  it('reports a missing required key', () => {
    expect(problemsOf(() => load('matrix:\n  enabled: true\n  hs_token: abc\n'))).toEqual([
      'matrix.as_token: expected the application service token (or as_token_file) when matrix.enabled is true; run "interop-bridge generate-registration", found nothing',
    ]);
  });

  it('reports an unknown key with a suggestion', () => {
    expect(problemsOf(() => load('gateway:\n  prot: 1\n'))).toEqual([
      'gateway.prot: unknown option; did you mean "port"?',
    ]);
  });

  it('reports several mistakes at once', () => {
    const problems = problemsOf(() =>
      load(
        'bridge:\n  lifecycle: sometimes\ngateway:\n  port: 0\n  root_key: short\nlogging:\n  level: loud\n',
      ),
    );
    expect(problems).toEqual([
      'bridge.lifecycle: expected one of "always", "presence", found "sometimes"',
      'gateway.port: expected a port number from 1 to 65535, found 0',
      'gateway.root_key: expected a base64-encoded 32-byte key, found "short"',
      'logging.level: expected one of "trace", "debug", "info", "warn", "error", "fatal", "silent", found "loud"',
    ]);
  });

  it('says where in the file a YAML syntax error is', () => {
    const problems = problemsOf(() => load('gateway:\n  port: [1, 2\n'));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^line \d+, column \d+: YAML syntax error/);
  });

  it('reports an unreadable configuration file', () => {
    expect(problemsOf(() => loadConfig({ path: path.join(tmp.dir, 'missing.yaml'), env: {} }))).toEqual([
      'cannot read the configuration file: no such file',
    ]);
  });

  it('applies environment overrides with their types, and names the variable in errors', () => {
    const { config } = load('gateway:\n  port: 1000\n', {
      INTEROP_BRIDGE_GATEWAY__PORT: '5000',
      INTEROP_BRIDGE_MATRIX__ENABLED: 'false',
      INTEROP_BRIDGE_BRIDGE__HTTP__HOST: '0.0.0.0',
      UNRELATED: 'x',
    });
    expect(config.gateway.port).toBe(5000);
    expect(config.bridge.http.host).toBe('0.0.0.0');

    expect(problemsOf(() => load('', { INTEROP_BRIDGE_GATEWAY__PORT: 'abc' }))).toEqual([
      'gateway.port: expected a port number from 1 to 65535, found "abc" (from the environment variable INTEROP_BRIDGE_GATEWAY__PORT)',
    ]);
  });

  it('reads secrets from files, without a trailing newline', () => {
    const tokenFile = tmp.file('as_token', 'secret-as-token\n');
    tmp.file('hs_token', 'secret-hs-token');
    const { config } = load(
      'matrix:\n  enabled: true\n  as_token_file: as_token\n  hs_token_file: ' +
        path.join(tmp.dir, 'hs_token') +
        '\n',
    );
    expect(config.matrix.as_token).toBe('secret-as-token');
    expect(config.matrix.hs_token).toBe('secret-hs-token');
    expect(tokenFile).toBeTruthy();
  });

  it('reports an unreadable secret file, and never prints secret values', () => {
    const unreadable = tmp.file('xmpp_secret', 'hunter2');
    chmodSync(unreadable, 0o000);
    const readable = process.getuid?.() === 0; // root reads anything: use a missing file instead
    const problems = problemsOf(() =>
      load(
        `xmpp:\n  enabled: true\n  secret_file: ${readable ? 'nope' : 'xmpp_secret'}\nmatrix:\n  enabled: true\n  as_token: 42\n  hs_token: x\n`,
      ),
    );
    expect(problems).toEqual([
      readable
        ? `xmpp.secret_file: cannot read the secret file ${path.join(tmp.dir, 'nope')}: no such file`
        : `xmpp.secret_file: cannot read the secret file ${unreadable}: permission denied`,
      'matrix.as_token: expected the application service token, found a value (not shown: it is a secret)',
    ]);
  });

  it('refuses a secret given both inline and as a file', () => {
    tmp.file('s', 'x');
    expect(problemsOf(() => load('xmpp:\n  secret: a\n  secret_file: s\n'))).toEqual([
      'xmpp.secret and xmpp.secret_file: give one or the other, not both',
    ]);
  });
});
