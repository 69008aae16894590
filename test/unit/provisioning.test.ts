/**
 * The provisioning API's pieces that need no network: the shared secret file (created 0600, kept,
 * refused when short, flagged when open to others), the caller's token (no header, not Bearer,
 * the secret, an unknown token without a homeserver), and the admin commands' puppet line.
 */
import { chmodSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { IncomingMessage } from 'node:http';
import { describePuppet } from '../../src/bridge/commands.js';
import { loadConfig } from '../../src/config/loader.js';
import { exposedSecretFiles } from '../../src/config/secret-files.js';
import { ProvisioningAuth } from '../../src/provisioning/auth.js';
import { ProvisioningError } from '../../src/provisioning/http.js';
import { ensureProvisioningSecret } from '../../src/provisioning/secret.js';
import { inProcessesAtOnce } from '../support/together.js';
import { tempDir } from '../support/tmp.js';

describe('the provisioning secret file', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it('is created with mode 0600 at the first call and read as it is afterwards', () => {
    const file = tmp.file('data/provisioning-secret');
    const first = ensureProvisioningSecret(file);
    expect(first.created).toBe(true);
    expect(first.secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).toBe(`${first.secret}\n`);
    expect(ensureProvisioningSecret(file)).toEqual({ secret: first.secret, created: false });
  });

  it('is the one secret for processes starting together on one data_dir, and nothing is left aside', async () => {
    // Workers of one bridge start at once. The file is written aside and linked into place, so none
    // can read it half-written (CI once saw a worker stop on a "short" secret another had just
    // created: a window of microseconds, which this cannot make appear at will). The built module,
    // in 8 processes, 5 times: one secret each time, and only the secret file in the directory.
    const module = path.resolve('dist/src/provisioning/secret.js');
    const run = (file: string) =>
      inProcessesAtOnce(
        8,
        (f) =>
          `import { ensureProvisioningSecret as e } from ${JSON.stringify(module)}; process.stdout.write(e(${f}).secret);`,
        file,
      );
    for (let round = 0; round < 5; round++) {
      const file = tmp.file(`race-${round}/provisioning-secret`);
      const secrets = await run(file);
      expect(new Set(secrets).size).toBe(1);
      expect(readdirSync(path.dirname(file))).toEqual(['provisioning-secret']);
    }
  }, 60_000);

  it('refuses a secret shorter than 16 characters, saying what to do', () => {
    const file = tmp.file('short', 'abc\n', 0o600);
    expect(() => ensureProvisioningSecret(file)).toThrow(
      /shorter than 16 characters: delete the file and restart/,
    );
  });

  it('is one of the secret files start refuses and doctor reports when others may read it', () => {
    const config = tmp.file('bridge.yaml', `bridge:\n  data_dir: ${tmp.dir}/state\n`, 0o600);
    const loaded = loadConfig({ path: config, env: {} });
    const file = loaded.paths.provisioningSecret;
    expect(file).toBe(`${tmp.dir}/state/provisioning-secret`);
    ensureProvisioningSecret(file);
    expect(exposedSecretFiles(loaded)).toEqual([]);
    chmodSync(file, 0o644);
    expect(exposedSecretFiles(loaded)).toEqual([
      expect.objectContaining({ file, what: 'bridge.provisioning_secret_file', mode: 0o644 }),
    ]);
  });
});

describe("the provisioning API's callers", () => {
  const request = (authorization?: string) =>
    ({ headers: authorization === undefined ? {} : { authorization } }) as IncomingMessage;
  const auth = new ProvisioningAuth({ secret: 'the-shared-secret-0123456789' });
  const refusal = async (authorization?: string) => {
    const err = await auth.caller(request(authorization)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ProvisioningError);
    return { status: (err as ProvisioningError).status, errcode: (err as ProvisioningError).errcode };
  };

  it('takes the shared secret as a Bearer token', async () => {
    expect(await auth.caller(request('Bearer the-shared-secret-0123456789'))).toEqual({ kind: 'secret' });
    expect(await auth.caller(request('bearer   the-shared-secret-0123456789'))).toEqual({ kind: 'secret' });
  });

  it('refuses no token, another scheme and an unknown token (without a homeserver to ask)', async () => {
    expect(await refusal()).toEqual({ status: 401, errcode: 'M_MISSING_TOKEN' });
    expect(await refusal('Basic the-shared-secret-0123456789')).toEqual({
      status: 401,
      errcode: 'M_MISSING_TOKEN',
    });
    expect(await refusal('Bearer')).toEqual({ status: 401, errcode: 'M_MISSING_TOKEN' });
    expect(await refusal('Bearer the-shared-secret-012345678')).toEqual({
      status: 401,
      errcode: 'M_UNKNOWN_TOKEN',
    });
  });

  it('answers 502 when the homeserver cannot be asked whose token it is', async () => {
    const unreachable = new ProvisioningAuth({ secret: 'x'.repeat(20), homeserverUrl: 'http://127.0.0.1:1' });
    const err = (await unreachable
      .caller(request('Bearer syt_abc'))
      .catch((e: unknown) => e)) as ProvisioningError;
    expect([err.status, err.errcode]).toEqual([502, 'M_UNKNOWN']);
    expect(err.message).not.toContain('syt_abc');
  });
});

describe('the admin commands', () => {
  it('show a puppet on one line, with its last error when it had one', () => {
    const base = {
      localUser: '@alice:example.org',
      network: 'matrix' as const,
      state: 'enlisted',
      enlisted: true,
      connection: 'refused',
      queued: 3,
      inboxPending: 0,
      address: 'alice@x.interop',
    };
    expect(describePuppet(base)).toBe('@alice:example.org (matrix): opted in, gateway refused, 3 queued');
    expect(
      describePuppet({
        ...base,
        state: 'opting_out',
        lastError: {
          code: 'refused',
          message: 'the gateway refused the account (account_not_enlisted)',
          at: '2026-01-01T00:00:00.000Z',
        },
      }),
    ).toBe(
      '@alice:example.org (matrix): opting out, gateway refused, 3 queued, last error at 2026-01-01T00:00:00.000Z: the gateway refused the account (account_not_enlisted)',
    );
  });
});
