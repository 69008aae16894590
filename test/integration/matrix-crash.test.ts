/**
 * Crashes at the Synapse boundary, end to end: the daemon (`interop-bridge start`, built, in a
 * child process) bridges a Matrix user (matrix-js-sdk on a real Synapse) and a native user (the
 * emulator). Both send steadily while the daemon is SIGKILLed and started again, and while Synapse
 * restarts; afterwards every message has arrived exactly once on each side.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { generateProviderKey } from '../../src/protocol/jwt.js';
import { writeProviderKey } from '../../src/provider-keys.js';
import { NativeUser } from '../../emulator/native-user.js';
import { startEmulator, type StartedEmulator } from '../support/emulator-process.js';
import type { SdkUser } from '../support/synapse/sdk-user.js';
import { SynapseSuite } from '../support/synapse/suite.js';
import { DaemonChild } from '../support/daemon-child.js';
import { tempDir } from '../support/tmp.js';
import { freePort, until } from '../support/wait.js';

const PROVIDER = 'crashbridge';
const SERVER = 'example.test';
const BOT = `@interop:${SERVER}`;
const BOB = '+4915112349999';
const GHOST = '@wa_4915112349999:example.test';
const AS_TOKEN = 'as-token-for-the-crash-test';
const HS_TOKEN = 'hs-token-for-the-crash-test';
/** Messages each side sends; the disturbances fall while they are under way. */
const N = 24;
const PACE_MS = 150;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const bodyOf = (e: { content: Record<string, unknown> }) => String(e.content['body'] ?? '');

describe('a bridge SIGKILL and a Synapse restart in the middle of a conversation', () => {
  const tmp = tempDir('matrix-crash-');
  let synapse: SynapseSuite;
  let emulator: StartedEmulator;
  let config: string;
  let daemon: DaemonChild | undefined;

  const startDaemon = () =>
    daemon!.start(async () => {
      try {
        const ping = await fetch(`http://127.0.0.1:${synapse.bridgePort}/_matrix/app/v1/ping`, {
          method: 'POST',
        });
        return ping.status === 401;
      } catch {
        return false;
      }
    }, 'the daemon to listen');
  const killDaemon = async () => daemon?.kill();

  beforeAll(async () => {
    const key = await generateProviderKey('EdDSA');
    emulator = await startEmulator(tmp, { provider: { id: PROVIDER, signingKey: key } });
    synapse = await SynapseSuite.forBridge({ asToken: AS_TOKEN, hsToken: HS_TOKEN });
    const dataDir = tmp.file('state');
    writeProviderKey(path.join(dataDir, 'provider-signing-key.jwk'), key);
    config = tmp.file('bridge.yaml');
    writeFileSync(
      config,
      [
        'bridge:',
        `  provider_id: ${PROVIDER}`,
        `  data_dir: ${dataDir}`,
        `  http: { port: ${await freePort()} }`,
        'gateway:',
        `  port: ${emulator.running.gateway.port}`,
        `  root_key: ${Buffer.from(emulator.root).toString('base64')}`,
        '  reconnect: { initial_delay_ms: 50, max_delay_ms: 500 }',
        'signal:',
        '  prekey_batch_size: 20',
        'matrix:',
        '  enabled: true',
        `  homeserver_url: ${synapse.proxy.clientUrl}`,
        `  server_name: ${SERVER}`,
        `  as_token: ${AS_TOKEN}`,
        `  hs_token: ${HS_TOKEN}`,
        `  listen_port: ${synapse.bridgePort}`,
        `  permissions: { "${SERVER}": user }`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    daemon = new DaemonChild(config);
    await startDaemon();
  }, 90_000);

  afterAll(async () => {
    await killDaemon();
    await synapse?.close();
    await emulator?.running.stop();
    tmp.cleanup();
  });

  it('delivers every message exactly once on each side', async () => {
    const alice: SdkUser = await synapse.user('alice', 'Alice');
    // A load test's account: exempt from Synapse's message rate limit, as an operator exempts one.
    await synapse.exemptFromRateLimits(alice.userId);
    const bob = await NativeUser.connect({
      emulator: emulator.running.gateway,
      phone: BOB,
      rootPublicKey: emulator.root,
    });
    try {
      const management = await alice.createDirectRoom(BOT);
      await alice.waitFor(management, (e) => e.sender === BOT && e.type === 'm.room.message');
      await alice.sendText(management, 'login');
      await alice.waitFor(management, (e) => e.sender === BOT && /login confirm/.test(bodyOf(e)));
      await alice.sendText(management, 'login confirm');
      await alice.waitFor(management, (e) => e.sender === BOT && /You are now connected/.test(bodyOf(e)));
      await alice.sendText(management, `start-chat ${BOB}`);
      const portal = await alice.waitForInvite((e) => e.sender === GHOST);
      await alice.join(portal);
      await alice.sendText(portal, 'hello');
      const first = await bob.waitForMessage((m) => m.content.kind === 'text');
      const aliceJid = first.from;

      const fromAlice = Array.from({ length: N }, (_, i) => `alice ${i}`);
      const fromBob = Array.from({ length: N }, (_, i) => `bob ${i}`);
      const sending = (async () => {
        for (let i = 0; i < N; i++) {
          await Promise.all([
            alice.sendText(portal, fromAlice[i]!),
            bob.sendText(aliceJid, fromBob[i]!, { devices: [0] }),
          ]);
          await sleep(PACE_MS);
        }
      })();
      await sleep(N * PACE_MS * 0.25);
      await killDaemon();
      await sleep(500);
      await startDaemon();
      await sleep(N * PACE_MS * 0.25);
      await synapse.synapse.restart();
      await sending;

      const bobTexts = () => bob.received.flatMap((m) => (m.content.kind === 'text' ? [m.content.text] : []));
      const ghostTexts = async () =>
        (await alice.readMessages(portal)).filter((e) => e.sender === GHOST).map(bodyOf);
      try {
        await until(
          async () => bobTexts().length >= N + 1 && (await ghostTexts()).length >= N,
          'every message on both sides',
          120_000,
        );
      } catch (err) {
        // What is missing where, and what the daemon said, so that a failure on CI can be read.
        const missingAtBob = ['hello', ...fromAlice].filter((t) => !bobTexts().includes(t));
        const ghost = await ghostTexts();
        const missingInMatrix = fromBob.filter((t) => !ghost.includes(t));
        throw new Error(
          `${(err as Error).message}: missing at the native user ${JSON.stringify(missingAtBob)}, ` +
            `missing in the portal ${JSON.stringify(missingInMatrix)}\n--- daemon log (tail) ---\n` +
            daemon!.log.slice(-6000),
          { cause: err },
        );
      }
      await synapse.proxy.transactionsIdle(1000);
      await sleep(1000);
      expect(bobTexts()).toEqual(['hello', ...fromAlice]);
      expect(await ghostTexts()).toEqual(fromBob);
      expect(synapse.proxy.violations).toEqual([]);
    } finally {
      alice.stop();
      await bob.close();
    }
  }, 240_000);
});
