/**
 * `interop-bridge doctor` against real peers: the emulator (gateway), a real Prosody (XMPP
 * component) and a real Synapse (behind the validating proxy) with the bridge's registration. Each
 * failure it can report is provoked for real and must come with its fix.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { EXIT, runCli } from '../../app/cli.js';
import { generateProviderKey, type ProviderPrivateJwk } from '../../src/protocol/jwt.js';
import { writeProviderKey } from '../../src/provider-keys.js';
import { SynapseSuite } from '../support/synapse/suite.js';
import { startEmulator, type StartedEmulator } from '../support/emulator-process.js';
import { tempDir } from '../support/tmp.js';
import { doctorLine, freePort } from '../support/wait.js';
import { startProsody, type XmppServer } from '../support/xmpp-servers.js';

const PROVIDER = 'doctorbridge';
const DOMAIN = 'wa.localhost';
const SECRET = 'doctor-component-secret';
const SERVER = 'example.test';
const AS_TOKEN = 'as-token-for-the-doctor';
const HS_TOKEN = 'hs-token-for-the-doctor';

async function doctor(config: string): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runCli(['doctor', '--config', config], {
    out: (t) => (out += t),
    err: (t) => (out += t),
    env: {},
  });
  return { code, out };
}

const lineOf = doctorLine;

describe('interop-bridge doctor against real peers', () => {
  let tmp: ReturnType<typeof tempDir>;
  let emulator: StartedEmulator;
  let prosody: XmppServer;
  let key: ProviderPrivateJwk;
  let synapse: SynapseSuite;
  let listenPort: number;

  beforeAll(async () => {
    tmp = tempDir();
    key = await generateProviderKey('EdDSA');
    [emulator, prosody] = await Promise.all([
      startEmulator(tmp, { provider: { id: PROVIDER, signingKey: key } }),
      startProsody({ componentDomain: DOMAIN, componentSecret: SECRET }),
    ]);
    synapse = await SynapseSuite.forBridge({ asToken: AS_TOKEN, hsToken: HS_TOKEN });
    listenPort = synapse.bridgePort;
  }, 60_000);

  afterAll(async () => {
    await emulator?.running.stop();
    await prosody?.stop();
    await synapse?.close();
    tmp?.cleanup();
  });

  /** A config with the given overrides, its own data dir, and `signingKey` as the provider key. */
  let n = 0;
  const configWith = (
    o: {
      gatewayPort?: number;
      rootKey?: Uint8Array;
      signingKey?: ProviderPrivateJwk;
      providerId?: string;
      xmpp?: { port?: number; secret?: string };
      matrix?: { url?: string; asToken?: string; hsToken?: string };
    } = {},
  ): string => {
    const dir = tmp.file(`case-${++n}`);
    mkdirSync(dir, { recursive: true });
    writeProviderKey(path.join(dir, 'provider-signing-key.jwk'), o.signingKey ?? key);
    const lines = [
      'bridge:',
      `  provider_id: ${o.providerId ?? PROVIDER}`,
      `  data_dir: ${dir}`,
      'gateway:',
      `  port: ${o.gatewayPort ?? emulator.running.gateway.port}`,
      `  root_key: ${Buffer.from(o.rootKey ?? emulator.root).toString('base64')}`,
      'xmpp:',
      '  enabled: true',
      `  server_port: ${o.xmpp?.port ?? prosody.componentPort}`,
      `  component_domain: ${DOMAIN}`,
      `  secret: ${o.xmpp?.secret ?? SECRET}`,
      'matrix:',
      '  enabled: true',
      `  homeserver_url: ${o.matrix?.url ?? synapse.proxy.clientUrl}`,
      `  server_name: ${SERVER}`,
      `  as_token: ${o.matrix?.asToken ?? AS_TOKEN}`,
      `  hs_token: ${o.matrix?.hsToken ?? HS_TOKEN}`,
      `  listen_port: ${listenPort}`,
      '',
    ];
    // It holds secrets inline: owner-only, as doctor requires.
    return tmp.file(`case-${n}.yaml`, lines.join('\n'), 0o600);
  };

  it('passes every check and exits 0 when the gateway, the homeserver and the XMPP server accept the bridge', async () => {
    const { code, out } = await doctor(configWith());
    expect(lineOf(out, 'gateway connection')).toMatch(
      /ok .*handshake, certificate chain valid, provider token accepted/,
    );
    expect(lineOf(out, 'XMPP component')).toMatch(/ok .*wa\.localhost authenticated/);
    expect(lineOf(out, 'Matrix homeserver')).toMatch(/ok .* is a Matrix homeserver/);
    expect(lineOf(out, 'Matrix registration')).toMatch(/ok .*as_token belongs to @interop:example\.test/);
    expect(lineOf(out, 'Matrix namespaces')).toMatch(/ok .*registration is closed on the homeserver/);
    expect(lineOf(out, 'Matrix appservice ping')).toMatch(/ok .*the homeserver reached the bridge/);
    expect(synapse.proxy.violations).toEqual([]);
    expect(code).toBe(EXIT.ok);
  });

  it("tells, on a homeserver open to registration, an exclusive ghosts' namespace from one that is not", async () => {
    const open = { enable_registration: true, enable_registration_without_verification: true };
    const withNamespace = (exclusive: boolean) =>
      SynapseSuite.forBridge({ asToken: AS_TOKEN, hsToken: HS_TOKEN }, { exclusive, extra: open });
    for (const exclusive of [true, false]) {
      const hs = await withNamespace(exclusive);
      try {
        const { code, out } = await doctor(configWith({ matrix: { url: hs.proxy.clientUrl } }));
        const line = lineOf(out, 'Matrix namespaces');
        if (exclusive) {
          expect(line).toMatch(/ok .*@wa_0:example\.test is reserved for the bridge/);
        } else {
          expect(line).toMatch(/fail .*would let anyone register @wa_0:example\.test/);
          expect(line).toMatch(/-> .*generate-registration --force/);
          expect(code).toBe(EXIT.failure);
        }
      } finally {
        await hs.close();
      }
    }
  });

  it('says the homeserver cannot be reached, and which option to fix', async () => {
    const { code, out } = await doctor(
      configWith({ matrix: { url: `http://127.0.0.1:${await freePort()}` } }),
    );
    const line = lineOf(out, 'Matrix homeserver');
    expect(line).toMatch(/fail .*cannot reach the homeserver at http:\/\/127\.0\.0\.1:\d+/);
    expect(line).toMatch(/-> set matrix\.homeserver_url/);
    expect(code).toBe(EXIT.failure);
  });

  it('says the homeserver does not know the registration when the as_token is refused', async () => {
    const { code, out } = await doctor(configWith({ matrix: { asToken: 'not-the-as-token' } }));
    const line = lineOf(out, 'Matrix registration');
    expect(line).toMatch(/fail .*does not accept matrix\.as_token/);
    expect(line).toMatch(/-> install the registration on the homeserver and restart it/);
    expect(code).toBe(EXIT.failure);
  });

  it('says the ping failed when the homeserver and the bridge disagree on the hs_token', async () => {
    const { code, out } = await doctor(configWith({ matrix: { hsToken: 'not-the-hs-token' } }));
    const line = lineOf(out, 'Matrix appservice ping');
    expect(line).toMatch(/fail .*the appservice ping failed/);
    expect(line).toMatch(/hs_token/);
    expect(code).toBe(EXIT.failure);
  });

  it('says the gateway cannot be reached, and what to check', async () => {
    const { code, out } = await doctor(configWith({ gatewayPort: await freePort() }));
    const line = lineOf(out, 'gateway connection');
    expect(line).toMatch(/fail .*cannot reach the gateway at 127\.0\.0\.1:\d+/);
    expect(line).toMatch(/-> check gateway\.host and gateway\.port/);
    expect(code).toBe(EXIT.failure);
  });

  it('says the root key is wrong when the certificate chain does not lead to it', async () => {
    const { code, out } = await doctor(configWith({ rootKey: randomBytes(32) }));
    const line = lineOf(out, 'gateway connection');
    expect(line).toMatch(/fail .*certificate chain was refused/);
    expect(line).toMatch(/-> gateway\.root_key is not the root/);
    expect(code).toBe(EXIT.failure);
  });

  it('says the gateway does not know the signing key, and how to give it the JWKS', async () => {
    const { code, out } = await doctor(configWith({ signingKey: await generateProviderKey('EdDSA') }));
    const line = lineOf(out, 'gateway connection');
    expect(line).toMatch(/fail .*refused authentication: token_unknown_kid/);
    expect(line).toMatch(/interop-bridge keys jwks/);
    expect(code).toBe(EXIT.failure);
  });

  it('says the provider id is not one the gateway knows', async () => {
    const { code, out } = await doctor(configWith({ providerId: 'someone-else' }));
    const line = lineOf(out, 'gateway connection');
    expect(line).toMatch(/fail .*refused authentication: token_wrong_issuer/);
    expect(line).toMatch(/-> bridge\.provider_id is not the provider id the gatekeeper registered/);
    expect(code).toBe(EXIT.failure);
  });

  it('says the XMPP server refused the component secret, and where to set it', async () => {
    const { code, out } = await doctor(configWith({ xmpp: { secret: 'not-the-secret' } }));
    const line = lineOf(out, 'XMPP component');
    expect(line).toMatch(/fail .*refused the component secret for wa\.localhost/);
    expect(line).toMatch(/-> make xmpp\.secret the component secret/);
    expect(code).toBe(EXIT.failure);
  });

  it('says the XMPP server has no component listener there', async () => {
    const { code, out } = await doctor(configWith({ xmpp: { port: await freePort() } }));
    const line = lineOf(out, 'XMPP component');
    expect(line).toMatch(/fail /);
    expect(line).toMatch(/-> check xmpp\.server_host and xmpp\.server_port/);
    expect(code).toBe(EXIT.failure);
  });
});
