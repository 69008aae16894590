/**
 * A SIGKILL of the daemon in the middle of an encrypted conversation costs no session and no
 * message: the daemon (`interop-bridge start`, from the TypeScript sources, in a child process)
 * bridges a Matrix user whose client encrypts (matrix-js-sdk, Rust crypto) and a native user; both
 * send steadily while the daemon is killed and started again on the same database. Afterwards every
 * message has arrived exactly once on each side, and the user's client read every one of them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateProviderKey } from '../../src/protocol/jwt.js';
import { writeProviderKey } from '../../src/provider-keys.js';
import { NativeUser } from '../../emulator/native-user.js';
import { startEmulator, type StartedEmulator } from '../support/emulator-process.js';
import type { SdkUser } from '../support/synapse/sdk-user.js';
import { SynapseSuite } from '../support/synapse/suite.js';
import { tempDir } from '../support/tmp.js';
import { freePort, until } from '../support/wait.js';

const PROVIDER = 'e2eecrash';
const SERVER = 'example.test';
const BOT = `@interop:${SERVER}`;
const BOB = '+4915112348888';
const GHOST = '@wa_4915112348888:example.test';
const AS_TOKEN = 'as-token-for-the-e2ee-crash-test';
const HS_TOKEN = 'hs-token-for-the-e2ee-crash-test';
const N = 16;
const PACE_MS = 200;

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const bodyOf = (e: { content: Record<string, unknown> }) => String(e.content['body'] ?? '');

/** `interop-bridge start` from the sources (the built CLI may be older than them). */
class SourceDaemon {
  log = '';
  #child: ChildProcess | undefined;

  constructor(private readonly config: string) {}

  async start(ready: () => Promise<boolean>): Promise<void> {
    const child = spawn(
      process.execPath,
      ['--import', './test/support/ts-hooks.mjs', 'app/cli.ts', 'start', '--config', this.config],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'info' } },
    );
    child.stdout!.on('data', (d: Buffer) => (this.log += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.log += d.toString()));
    this.#child = child;
    await until(
      async () => {
        if (child.exitCode !== null)
          throw new Error(`the daemon exited ${child.exitCode}:\n${this.log.slice(-3000)}`);
        return ready();
      },
      'the daemon to listen',
      60_000,
    );
  }

  async kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
}

describe('a SIGKILL of the bridge in the middle of an encrypted conversation', () => {
  const tmp = tempDir('matrix-e2ee-crash-');
  let synapse: SynapseSuite;
  let emulator: StartedEmulator;
  let daemon: SourceDaemon;

  const startDaemon = () =>
    daemon.start(async () => {
      try {
        const ping = await fetch(`http://127.0.0.1:${synapse.bridgePort}/_matrix/app/v1/ping`, {
          method: 'POST',
        });
        return ping.status === 401;
      } catch {
        return false;
      }
    });

  beforeAll(async () => {
    const key = await generateProviderKey('EdDSA');
    emulator = await startEmulator(tmp, { provider: { id: PROVIDER, signingKey: key } });
    synapse = await SynapseSuite.forBridge({ asToken: AS_TOKEN, hsToken: HS_TOKEN });
    const dataDir = tmp.file('state');
    writeProviderKey(path.join(dataDir, 'provider-signing-key.jwk'), key);
    const config = tmp.file('bridge.yaml');
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
        '  encryption: { allow: true, default: true }',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    daemon = new SourceDaemon(config);
    await startDaemon();
  }, 120_000);

  afterAll(async () => {
    await daemon?.kill();
    await synapse?.close();
    await emulator?.running.stop();
    tmp.cleanup();
  });

  it('delivers every message exactly once on each side, and the user reads every one', async () => {
    const alice: SdkUser = await synapse.user('alice', 'Alice', { crypto: true });
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
      await alice.waitUntil(() => alice.client.isRoomEncrypted(portal), 'the portal to be encrypted');
      await alice.sendText(portal, 'hello');
      const first = await bob.waitForMessage((m) => m.content.kind === 'text', 20_000);
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
      await sleep(N * PACE_MS * 0.3);
      await daemon.kill();
      await sleep(500);
      await startDaemon();
      await sending;

      const bobTexts = () => bob.received.flatMap((m) => (m.content.kind === 'text' ? [m.content.text] : []));
      const ghostTexts = async () =>
        (await alice.decryptedMessages(portal))
          .filter((e) => e.sender === GHOST && e.type === 'm.room.message')
          .map(bodyOf);
      try {
        await until(
          async () => bobTexts().length >= N + 1 && (await ghostTexts()).length >= N,
          'every message on both sides',
          120_000,
        );
      } catch (err) {
        const missingAtBob = ['hello', ...fromAlice].filter((t) => !bobTexts().includes(t));
        const ghost = await ghostTexts();
        throw new Error(
          `${(err as Error).message}: missing at the native user ${JSON.stringify(missingAtBob)}, ` +
            `missing in the portal ${JSON.stringify(fromBob.filter((t) => !ghost.includes(t)))}, ` +
            `undecryptable ${alice.undecryptable(portal).length}\n--- daemon log (tail) ---\n` +
            daemon.log.slice(-6000),
          { cause: err },
        );
      }
      await synapse.proxy.transactionsIdle(1000);
      await sleep(1000);
      expect(bobTexts()).toEqual(['hello', ...fromAlice]);
      expect(await ghostTexts()).toEqual(fromBob);
      // 0 undecryptable, in the portal and the management room.
      expect(await alice.undecryptableAnywhere()).toEqual([]);
      expect(synapse.proxy.violations).toEqual([]);
    } finally {
      alice.stop();
      await bob.close();
    }
  }, 300_000);
});
