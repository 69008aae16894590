/**
 * Crashes at the XMPP boundary, end to end, on real Prosody and ejabberd: the daemon
 * (`interop-bridge start`, built, in a child process) bridges 3 XMPP users (@xmpp/client) and 4
 * native contacts (the emulator, in this process). The users send about 1,000 messages round-robin
 * while the daemon is SIGKILLed 3 times and started again at once (as systemd does). XEP-0114 has no
 * acknowledgement, so a stanza in the socket when the bridge dies can be lost; what must hold is
 * that no message is lost without a word (docs/XMPP.md, "What a crash costs"):
 *
 * - every message arrives exactly once at its contact, or
 * - its sender got an error for it (the server bounces what it cannot hand to the component), or
 * - its sender was told after the restart, by that contact, that the bridge had taken their
 *   messages up to an earlier one (so this one, without a receipt, should be sent again);
 *
 * and every message that arrived gets its delivery receipt (the contact's receipt is acknowledged
 * to the gateway only once the XMPP server has the tick). No message text is in the daemon's log.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Element } from '@xmpp/xml';
import { generateProviderKey } from '../../src/protocol/jwt.js';
import { writeProviderKey } from '../../src/provider-keys.js';
import { NativeUser } from '../../emulator/native-user.js';
import { startEmulator, type StartedEmulator } from '../support/emulator-process.js';
import { DaemonChild } from '../support/daemon-child.js';
import { tempDir } from '../support/tmp.js';
import { freePort, until } from '../support/wait.js';
import { chat, contactJid, DOMAIN, register } from '../support/xmpp-bridge.js';
import {
  connectUser,
  startXmppServer,
  type TestUser,
  type XmppServer,
  type XmppServerKind,
} from '../support/xmpp-servers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'dist/app/cli.js');
const PROVIDER = 'xmppcrash';
const SECRET = 'component-secret-for-the-crash-test';
const USERS = 3;
const CONTACTS = 4;
/** Messages per user (about 1,000 in all), one every PACE_MS per user. */
const PER_USER = 336;
const PACE_MS = 35;
const KILLS = 3;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const KINDS: XmppServerKind[] = ['prosody', 'ejabberd'];

interface Sent {
  readonly user: number;
  readonly contact: number;
  /** Its place among what this user sent this contact. */
  readonly index: number;
  readonly id: string;
  readonly text: string;
}

describe.each(KINDS)('3 SIGKILLs of the bridge while 3 XMPP users send on %s', (kind) => {
  const tmp = tempDir(`xmpp-crash-${kind}-`);
  let server: XmppServer;
  let emulator: StartedEmulator;
  let config: string;
  let daemon: DaemonChild | undefined;
  const users: TestUser[] = [];
  const natives: NativeUser[] = [];

  const linkUps = () => (daemon?.log ?? '').split('XMPP component link up').length - 1;
  const startDaemon = async (): Promise<void> => {
    const before = linkUps();
    await daemon!.start(() => linkUps() > before, 'the daemon to connect its component');
  };
  const killDaemon = async () => daemon?.kill();

  beforeAll(async () => {
    server = await startXmppServer(kind, { componentDomain: DOMAIN, componentSecret: SECRET });
    const key = await generateProviderKey('EdDSA');
    emulator = await startEmulator(tmp, { provider: { id: PROVIDER, signingKey: key } });
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
        'xmpp:',
        '  enabled: true',
        '  server_host: 127.0.0.1',
        `  server_port: ${server.componentPort}`,
        `  component_domain: ${DOMAIN}`,
        `  secret: ${SECRET}`,
        `  allowed_domains: [${server.host}]`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    daemon = new DaemonChild(config);
    await startDaemon();
  }, 90_000);

  afterAll(async () => {
    await killDaemon();
    for (const u of users) await u.stop().catch(() => undefined);
    for (const n of natives) await n.close().catch(() => undefined);
    await emulator?.running.stop();
    await server?.stop();
    tmp.cleanup();
  });

  it('loses no message without a word, delivers each at most once, and every receipt arrives', async () => {
    const base = kind === 'prosody' ? 4915700000100 : 4915700000200;
    const phones = Array.from({ length: CONTACTS }, (_, c) => `+${base + c}`);
    for (const phone of phones) {
      natives.push(
        await NativeUser.connect({
          emulator: emulator.running.gateway,
          phone,
          rootPublicKey: emulator.root,
        }),
      );
    }
    for (let u = 0; u < USERS; u++) {
      const name = `sender${u}`;
      await server.register(name, `${name}-pw`);
      const user = await connectUser(server, name, `${name}-pw`);
      users.push(user);
      await register(user);
    }
    // Each user greets each contact: lookups done, sessions made, puppets connected.
    const textsAt = (c: number) =>
      natives[c]!.received.flatMap((m) => (m.content.kind === 'text' ? [m.content.text] : []));
    for (let u = 0; u < USERS; u++) {
      for (let c = 0; c < CONTACTS; c++) {
        await users[u]!.client.send(chat(contactJid(phones[c]!), `hello ${u}`, `hello-${u}-${c}`));
      }
    }
    await until(
      () => phones.every((_, c) => textsAt(c).filter((t) => t.startsWith('hello ')).length === USERS),
      'the greetings',
      30_000,
    );

    // The load: each user round-robin over the contacts; the kills fall while it is under way.
    const sent: Sent[] = [];
    const sending = Promise.all(
      users.map(async (user, u) => {
        for (let i = 0; i < PER_USER; i++) {
          const contact = i % CONTACTS;
          const s: Sent = {
            user: u,
            contact,
            index: Math.floor(i / CONTACTS),
            id: `m-${kind}-${u}-${i}`,
            text: `message ${u}.${i} to ${contact}`,
          };
          sent.push(s);
          await user.client.send(chat(contactJid(phones[contact]!), s.text, s.id));
          await sleep(PACE_MS);
        }
      }),
    );
    const span = PER_USER * PACE_MS;
    for (let k = 0; k < KILLS; k++) {
      await sleep(span / (KILLS + 1) - (k === 0 ? 0 : 800));
      await killDaemon();
      // As the systemd unit does before each start: the check passes on the crashed database.
      await promisify(execFile)(process.execPath, [CLI, 'doctor', '--offline', '--config', config]);
      await startDaemon(); // at once, as the unit's RestartSec=100ms does
    }
    await sending;

    // Sorted out per message: arrived, bounced with an error, or covered by a crash notice.
    const arrivals = (s: Sent) => textsAt(s.contact).filter((t) => t === s.text).length;
    const errorIds = (u: number) =>
      new Set(users[u]!.messages.filter((m) => m.attrs.type === 'error').map((m) => m.attrs.id));
    /** Per user and contact: the indexes of the last message each crash notice said was taken. */
    const noticed = (s: Sent): boolean =>
      users[s.user]!.messages.some((m) => {
        if ((m.attrs.from ?? '').split('/')[0] !== contactJid(phones[s.contact]!)) return false;
        const said = /the last one had the id ([^)\s]+)\)/.exec(m.getChild('body')?.getText() ?? '');
        if (!said) return false;
        const last = sent.find((x) => x.id === said[1]);
        // "up to <last>": this one came later (or the last taken was a greeting).
        return last === undefined ? said[1]!.startsWith('hello-') : last.index < s.index;
      });
    const unaccounted = () =>
      sent.filter((s) => arrivals(s) === 0 && !errorIds(s.user).has(s.id) && !noticed(s));
    await until(() => unaccounted().length === 0, 'every message accounted for', 60_000).catch(() => {
      const left = unaccounted();
      throw new Error(
        `${left.length} messages lost without a word, e.g. ${JSON.stringify(left.slice(0, 5))}\n` +
          `daemon log (tail):\n${daemon!.log.slice(-4000)}`,
      );
    });
    await sleep(1000);
    const arrived = sent.filter((s) => arrivals(s) > 0);
    expect(sent.filter((s) => arrivals(s) > 1)).toEqual([]);
    // The crashes cost a few messages at most; the bulk goes through.
    expect(arrived.length).toBeGreaterThan(sent.length * 0.4);

    // Every message that arrived gets its delivery receipt (XEP-0184) from the contact.
    const receipted = (s: Sent) =>
      users[s.user]!.messages.some(
        (m: Element) => m.getChild('received', 'urn:xmpp:receipts')?.attrs.id === s.id,
      );
    await until(() => arrived.every(receipted), 'every delivery receipt', 60_000).catch(() => {
      const missing = arrived.filter((s) => !receipted(s));
      throw new Error(`${missing.length} receipts missing, e.g. ${JSON.stringify(missing.slice(0, 5))}`);
    });

    // What it took: the restarts happened, and no message text went into the log.
    expect(daemon!.starts).toBe(KILLS + 1);
    expect(daemon!.log).toContain('the bridge did not stop cleanly');
    expect(sent.filter((s) => daemon!.log.includes(s.text))).toEqual([]);
    const summary = {
      sent: sent.length,
      arrived: arrived.length,
      bounced: sent.filter((s) => arrivals(s) === 0 && errorIds(s.user).has(s.id)).length,
      told: sent.filter((s) => arrivals(s) === 0 && !errorIds(s.user).has(s.id)).length,
    };
    process.stdout.write(`xmpp-crash ${kind}: ${JSON.stringify(summary)}\n`);
  }, 180_000);
});
