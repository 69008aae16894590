/**
 * The daemon as an operator runs it: one YAML config with the gateway, Matrix and XMPP enabled;
 * `startDaemon` starts the core and both adapters. A Matrix user (matrix-js-sdk on Synapse)
 * and an XMPP user (through a real Prosody) each log in and exchange a message with a native user;
 * the metrics count what crossed.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { ProvisioningClient } from '../support/provisioning-client.js';
import { buildRegistration } from '../../adapters/matrix/registration.js';
import { loadConfig } from '../../src/config/loader.js';
import { startDaemon, type Daemon } from '../../app/daemon.js';
import { createLogger } from '../../src/observability/logger.js';
import { generateProviderKey } from '../../src/protocol/jwt.js';
import { writeProviderKey } from '../../src/provider-keys.js';
import { NativeUser } from '../../emulator/native-user.js';
import { SynapseSuite } from '../support/synapse/suite.js';
import { startEmulator, type StartedEmulator } from '../support/emulator-process.js';
import { tempDir } from '../support/tmp.js';
import { connectUser, startProsody, type TestUser, type XmppServer } from '../support/xmpp-servers.js';
import { bodiesFrom, chat, contactJid, register, until } from '../support/xmpp-bridge.js';
import { freePort, metricSample } from '../support/wait.js';

const PROVIDER = 'daemonbridge';
const SERVER = 'example.test';
const BOT = `@interop:${SERVER}`;
const DOMAIN = 'wa.localhost';
const SECRET = 'daemon-test-component-secret';
const BOB = '+4915112340001';

describe('the daemon with both adapters', () => {
  const tmp = tempDir('daemon-');
  let emulator: StartedEmulator;
  let prosody: XmppServer;
  let synapse: SynapseSuite;
  let daemon: Daemon | undefined;
  let bob: NativeUser;
  let xmppUser: TestUser | undefined;
  let httpPort: number;

  beforeAll(async () => {
    const key = await generateProviderKey('EdDSA');
    httpPort = await freePort();
    const asToken = 'as-token-for-the-daemon-test';
    const hsToken = 'hs-token-for-the-daemon-test';
    [emulator, prosody] = await Promise.all([
      startEmulator(tmp, {
        provider: { id: PROVIDER, signingKey: key, allowedMediaHosts: [`127.0.0.1:${httpPort}`] },
      }),
      startProsody({ componentDomain: DOMAIN, componentSecret: SECRET }),
    ]);
    writeProviderKey(tmp.file('state/provider-signing-key.jwk'), key);
    const lines = (matrixPort: number, homeserver: string): string[] => [
      'bridge:',
      `  provider_id: ${PROVIDER}`,
      `  data_dir: ${tmp.file('state')}`,
      '  http:',
      `    port: ${httpPort}`,
      'gateway:',
      `  port: ${emulator.running.gateway.port}`,
      `  root_key: ${Buffer.from(emulator.root).toString('base64')}`,
      '  reconnect: { initial_delay_ms: 50, max_delay_ms: 500 }',
      'signal:',
      '  prekey_batch_size: 20',
      'matrix:',
      '  enabled: true',
      `  homeserver_url: ${homeserver}`,
      `  server_name: ${SERVER}`,
      `  as_token: ${asToken}`,
      `  hs_token: ${hsToken}`,
      `  listen_port: ${matrixPort}`,
      `  permissions: { "${SERVER}": user }`,
      'xmpp:',
      '  enabled: true',
      `  server_port: ${prosody.componentPort}`,
      `  component_domain: ${DOMAIN}`,
      `  secret: ${SECRET}`,
      '',
    ];
    const file = tmp.file('bridge.yaml');
    synapse = await SynapseSuite.start({ asToken, hsToken }, (port) => {
      writeFileSync(file, lines(port, 'http://127.0.0.1:1').join('\n'), { mode: 0o600 });
      return buildRegistration(loadConfig({ path: file, env: {} }).config, { asToken, hsToken });
    });
    writeFileSync(file, lines(synapse.bridgePort, synapse.proxy.clientUrl).join('\n'), { mode: 0o600 });
    daemon = await startDaemon(
      loadConfig({ path: file, env: {} }),
      createLogger({ level: process.env['DAEMON_TEST_LOG'] === '1' ? 'debug' : 'silent' }),
    );
    bob = await NativeUser.connect({
      emulator: emulator.running.gateway,
      phone: BOB,
      rootPublicKey: emulator.root,
    });
  }, 90_000);

  afterAll(async () => {
    await xmppUser?.stop();
    await bob?.close();
    await daemon?.stop();
    await synapse?.close();
    await emulator?.running.stop();
    await prosody?.stop();
    tmp.cleanup();
  });

  it('bridges a Matrix user who logs in through the bot to a native user, both ways', async () => {
    const alice = await synapse.user('alice', 'Alice');
    const management = await alice.createDirectRoom(BOT);
    await alice.waitFor(management, (e) => e.sender === BOT && e.type === 'm.room.message');
    await alice.sendText(management, 'login');
    await alice.waitFor(
      management,
      (e) => e.sender === BOT && /login confirm/.test(String(e.content['body'])),
    );
    await alice.sendText(management, 'login confirm');
    await alice.waitFor(
      management,
      (e) => e.sender === BOT && /You are now connected/.test(String(e.content['body'])),
    );
    await alice.sendText(management, `start-chat ${BOB}`);
    const invite = await alice.waitForInvite((e) => e.room_id !== management);
    await alice.join(invite);
    await alice.sendText(invite, 'hello from Matrix');
    const got = await bob.waitForMessage((m) => m.content.kind === 'text');
    expect(got.content.kind === 'text' && got.content.text).toBe('hello from Matrix');
    await bob.sendText(got.from, 'hello back, Matrix');
    const back = await alice.waitFor(invite, (e) => e.type === 'm.room.message' && e.sender !== alice.userId);
    expect(back.content['body']).toBe('hello back, Matrix');
    expect(synapse.proxy.violations).toEqual([]);
    alice.stop();
  });

  it('bridges an XMPP user who registers with the component to a native user, both ways', async () => {
    await prosody.register('carol', 'carol-password');
    xmppUser = await connectUser(prosody, 'carol', 'carol-password');
    await register(xmppUser);
    await until(
      () => daemon!.bridge!.puppet(xmppUser!.jid.split('/')[0]!)?.connection.isConnected === true,
      'the puppet',
    );
    await xmppUser.client.send(chat(contactJid(BOB), 'hello from XMPP', 'daemon-xmpp-1'));
    const got = await bob.waitForMessage(
      (m) => m.content.kind === 'text' && m.content.text === 'hello from XMPP',
    );
    await bob.sendText(got.from, 'hello back, XMPP');
    await until(() => bodiesFrom(xmppUser!, contactJid(BOB)).includes('hello back, XMPP'), 'the answer');
  });

  it('serves the provisioning API with the secret it created (mode 0600) on its listener and the appservice listener', async () => {
    const file = tmp.file('state/provisioning-secret');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const secret = readFileSync(file, 'utf8').trim();
    expect(secret.length).toBeGreaterThanOrEqual(32);
    const bridgeApi = new ProvisioningClient(`http://127.0.0.1:${httpPort}`);
    const appserviceApi = new ProvisioningClient(`http://127.0.0.1:${synapse.bridgePort}`);
    expect(await bridgeApi.call('GET', '/v3/whoami', { token: 'wrong' })).toMatchObject({ status: 401 });
    const carol = await bridgeApi.call('GET', '/v3/whoami', {
      token: secret,
      userId: `carol@${prosody.host}`,
    });
    expect(carol.body).toMatchObject({
      network: 'xmpp',
      puppet: { state: 'enlisted', connection: 'connected' },
    });
    const list = await appserviceApi.call('GET', '/v3/admin/puppets', { token: secret });
    expect(list.body.puppets.map((p: { network: string }) => p.network).sort()).toEqual(['matrix', 'xmpp']);
  });

  it('counts what crossed in its metrics', async () => {
    const scrape = async () => (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    // Nothing waits: the receipts' `sent` states are written a moment after their acks (outbox-marks.ts).
    await until(
      async () => metricSample(await scrape(), 'interop_bridge_outbox_oldest_age_seconds') === 0,
      'no outbox entry left queued',
    );
    const metrics = await scrape();
    const sample = (name: string) => metricSample(metrics, name);
    expect(sample('interop_bridge_puppets')).toBe(2);
    expect(sample('interop_bridge_messages_total{direction="outgoing",outcome="queued"}')).toBe(2);
    expect(sample('interop_bridge_messages_total{direction="incoming",outcome="delivered"}')).toBe(2);
    expect(sample('interop_bridge_gateway_connections{state="connected"}')).toBe(2);
    expect(sample('interop_bridge_local_server_up{network="matrix"}')).toBe(1);
    expect(sample('interop_bridge_local_server_up{network="xmpp"}')).toBe(1);
    expect(sample('interop_bridge_outbox_oldest_age_seconds')).toBe(0);
    expect(sample('interop_bridge_queue_max_age_seconds')).toBe(168 * 3600);
  });

  it('says in its metrics when the XMPP server stops answering', async () => {
    await prosody.shutdown();
    const xmppUp = async () =>
      metricSample(
        await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text(),
        'interop_bridge_local_server_up{network="xmpp"}',
      );
    let up = await xmppUp();
    for (let i = 0; up !== 0 && i < 100; i++) {
      await new Promise((r) => setTimeout(r, 100));
      up = await xmppUp();
    }
    expect(up).toBe(0);
  });

  it("logs an XMPP user out through the admin API (served by the Matrix side's core as well)", async () => {
    const secret = readFileSync(tmp.file('state/provisioning-secret'), 'utf8').trim();
    const api = new ProvisioningClient(`http://127.0.0.1:${httpPort}`);
    const carol = `carol@${prosody.host}`;
    expect(
      (await api.call('POST', `/v3/admin/logout/${encodeURIComponent(carol)}`, { token: secret })).body,
    ).toEqual({});
    expect(await daemon!.store.puppets.byLocalId(carol)).toBeUndefined();
    expect(
      await api.call('GET', `/v3/admin/puppets/${encodeURIComponent(carol)}`, { token: secret }),
    ).toMatchObject({ status: 404 });
  });
});
