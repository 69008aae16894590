/**
 * Three workers on one PostgreSQL (`interop-bridge start --worker`, built, child processes) with the
 * XMPP adapter on a real Prosody and 300 puppets against the emulator (in this process, which counts
 * every account's live connections): 280 enlisted beforehand and idle, 20 enlisted by XMPP users
 * through the bridge (in-band registration, handled by whichever worker runs the adapters), each of
 * whom chats with a native contact. While 2,000 messages go each way, a worker that does not run
 * the adapters is SIGKILLed, then the one that does (the front):
 *
 * - the killed workers' puppets connect again from the others within the lease time plus the
 *   reconnect gate, and no account is ever connected twice at once;
 * - a standby takes the front lease and the component stream over;
 * - native -> XMPP: every message arrives once, in order (the one a dying front was writing may be
 *   written again by the next under the same id and origin-id, which a client shows once);
 * - XMPP -> native: every message arrives exactly once; what the server bounced while no component
 *   was connected (the sender got an error, as XEP-0114 allows nothing better) is sent again by the
 *   test under the same id, as a user would, and arrives once; the others arrive in order.
 */
import { NativeUser } from '../../emulator/native-user.js';
import { Leases } from '../../src/cluster/leases.js';
import { generateProviderKey } from '../../src/protocol/jwt.js';
import { providerServer } from '../../src/protocol/stanza/index.js';
import { PgDatabase } from '../../src/store/postgres-database.js';
import {
  enlistPuppets,
  warningsOf,
  workerIdOf,
  writeSharedState,
  writeWorkerConfig,
} from '../support/cluster.js';
import { DaemonChild } from '../support/daemon-child.js';
import { emulatorGateway, startEmulator, type StartedEmulator } from '../support/emulator-process.js';
import { startPostgres, type PostgresServer } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';
import { freePort, until } from '../support/wait.js';
import { chat, contactJid, DOMAIN, register } from '../support/xmpp-bridge.js';
import { connectUser, startXmppServer, type TestUser, type XmppServer } from '../support/xmpp-servers.js';

const PROVIDER = 'failover';
const SECRET = 'component-secret-for-the-failover-test';
const LEASE_SECONDS = 3;
const IDLE_PUPPETS = 280;
const CONVERSATIONS = 20;
const PUPPETS = IDLE_PUPPETS + CONVERSATIONS;
/** Messages each way per conversation: 2,000 each way in all. */
const PER_CONVERSATION = 100;
/** One message each way per conversation every PACE_MS: about 100 messages/s each way. */
const PACE_MS = 200;
/** The reconnect gate and a handshake, on top of the lease time, for a killed worker's puppets. */
const RECONNECT_ALLOWANCE_MS = 8_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('3 workers, 300 puppets: a worker and then the front SIGKILLed while 2,000 messages go each way', () => {
  const tmp = tempDir('cluster-failover-');
  let pgServer: PostgresServer;
  let server: XmppServer;
  let emulator: StartedEmulator;
  let db: PgDatabase;
  let leases: Leases;
  const workers: DaemonChild[] = [];
  const users: TestUser[] = [];
  const natives: NativeUser[] = [];
  const dataDir = tmp.file('state');
  let url = '';

  /** Each worker's HTTP port (health, metrics). */
  const ports: number[] = [];
  const newWorker = async (): Promise<DaemonChild> => {
    const config = tmp.file(`worker-${workers.length + 1}.yaml`);
    const port = await freePort();
    ports.push(port);
    writeWorkerConfig(config, {
      provider: PROVIDER,
      dataDir,
      database: url,
      leaseSeconds: LEASE_SECONDS,
      httpPort: port,
      gateway: {
        port: emulator.running.gateway.port,
        rootKey: emulator.root,
        extra: ['reconnect: { initial_delay_ms: 100, max_delay_ms: 1000 }'],
      },
      more: [
        'signal:',
        '  prekey_batch_size: 10',
        'xmpp:',
        '  enabled: true',
        '  server_host: 127.0.0.1',
        `  server_port: ${server.componentPort}`,
        `  component_domain: ${DOMAIN}`,
        `  secret: ${SECRET}`,
        `  allowed_domains: [${server.host}]`,
      ],
    });
    const w = new DaemonChild(config, ['--worker']);
    workers.push(w);
    return w;
  };
  /** Puppets connected at the emulator (the native contacts' devices are not counted). */
  const connected = () =>
    new Set(
      emulator.running.gateway.connectedDevices().filter((d) => d.includes(`@${providerServer(PROVIDER)}`)),
    ).size;
  const stats = () => emulator.running.gateway.stats();
  const frontHolder = async (): Promise<string | undefined> =>
    (await leases.list('front')).find((l) => l.live)?.holder;
  const logTails = () => warningsOf(workers, 15);
  const linkUps = (w: DaemonChild) => w.log.split('XMPP component link up').length - 1;

  beforeAll(async () => {
    pgServer = await startPostgres();
    server = await startXmppServer('prosody', { componentDomain: DOMAIN, componentSecret: SECRET });
    const key = await generateProviderKey('EdDSA');
    emulator = await startEmulator(tmp, { provider: { id: PROVIDER, signingKey: key } });
    writeSharedState(dataDir, key);
    url = await pgServer.createDatabase();
    // The idle puppets, enlisted through the real path by a bridge in this process, then closed.
    await enlistPuppets(
      url,
      emulatorGateway(emulator.running.gateway, emulator.root, { id: PROVIDER, signingKey: key }),
      IDLE_PUPPETS,
      { prefix: 'idle' },
    );
    await until(() => connected() === 0, 'the set-up connections closed', 30_000);

    db = await PgDatabase.open({ url, migrations: false });
    leases = new Leases(db);
    for (let i = 0; i < 3; i++) await newWorker();
  }, 180_000);

  afterAll(async () => {
    for (const w of workers) await w.kill();
    for (const u of users) await u.stop().catch(() => undefined);
    for (const n of natives) await n.close().catch(() => undefined);
    await db?.close();
    await emulator?.running.stop();
    await server?.stop();
    await pgServer?.stop();
    tmp.cleanup();
  });

  it('loses and duplicates nothing, keeps the order, and never connects a puppet twice', async () => {
    const [w1, w2, w3] = workers as [DaemonChild, DaemonChild, DaemonChild];
    for (const w of workers) await w.start(() => w.log.includes('worker started'), 'a worker to start');
    await until(() => connected() === IDLE_PUPPETS, 'the idle puppets connected', 30_000);
    // One of them runs the adapters; its component stream is up.
    await until(async () => (await frontHolder()) !== undefined, 'a front', 15_000);
    await until(() => workers.some((w) => linkUps(w) > 0), 'the component stream up', 15_000);

    // The conversations: each user registers through the bridge and greets its contact.
    const phones = Array.from({ length: CONVERSATIONS }, (_, c) => `+${4915800000100 + c}`);
    for (const phone of phones) {
      natives.push(
        await NativeUser.connect({ emulator: emulator.running.gateway, phone, rootPublicKey: emulator.root }),
      );
    }
    for (let c = 0; c < CONVERSATIONS; c++) {
      const name = `talker${c}`;
      await server.register(name, `${name}-pw`);
      const user = await connectUser(server, name, `${name}-pw`);
      users.push(user);
      await register(user);
      await user.client.send(chat(contactJid(phones[c]!), `hello ${c}`, `hello-${c}`));
    }
    await until(() => natives.every((n) => n.received.length >= 1), 'the greetings', 60_000);
    await until(() => connected() === PUPPETS, 'all 300 puppets connected', 30_000).catch((err: Error) => {
      throw new Error(`${err.message} (${connected()} are)\n${logTails()}`);
    });
    // Each worker's /metrics says what it holds and whether it runs the adapters.
    const gauge = (text: string, name: string) =>
      Number(new RegExp(`^${name}\\{worker="[^"]+"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
    const metrics = await Promise.all(
      ports.map(async (p) => (await fetch(`http://127.0.0.1:${p}/metrics`)).text()),
    );
    expect(metrics.map((m) => gauge(m, 'interop_bridge_worker_front')).sort()).toEqual([0, 0, 1]);
    expect(metrics.reduce((n, m) => n + gauge(m, 'interop_bridge_worker_puppets'), 0)).toBe(PUPPETS);
    const puppetJid = natives.map((n) => n.received[0]!.from.split(':')[0]!.split('/')[0]!);

    const idOf = (c: number, i: number) => `x${c}-${i}`;
    const textOf = (c: number, i: number) => `to native ${c}: ${i}`;
    const nativeText = (c: number, i: number) => `from native ${c}: ${i}`;
    const bounced = (c: number) =>
      new Set(users[c]!.messages.filter((m) => m.attrs.type === 'error').map((m) => m.attrs.id));

    // The load, both ways, paced; the kills fall in the middle of it.
    /** The ids of the natives' messages, per conversation (their delivery receipts are counted). */
    const nativeIds: string[][] = Array.from({ length: CONVERSATIONS }, () => []);
    const sending = Promise.all(
      Array.from({ length: CONVERSATIONS }, async (_, c) => {
        for (let i = 0; i < PER_CONVERSATION; i++) {
          await users[c]!.client.send(chat(contactJid(phones[c]!), textOf(c, i), idOf(c, i)));
          nativeIds[c]!.push(await natives[c]!.sendText(puppetJid[c]!, nativeText(c, i)));
          await sleep(PACE_MS);
        }
      }),
    );
    const span = PER_CONVERSATION * PACE_MS;

    // First a worker that does not run the adapters.
    await sleep(span / 4);
    const frontId = await frontHolder();
    const plain = workers.find((w) => workerIdOf(w) !== frontId)!;
    const killedAt = Date.now();
    await plain.kill();
    await until(() => connected() === PUPPETS, "the killed worker's puppets back", 30_000);
    const workerFailoverMs = Date.now() - killedAt;

    // Then the front: a standby takes the lease and the component stream.
    await sleep(span / 4);
    const frontWorker = workers.find((w) => workerIdOf(w) === frontId)!;
    const ups = new Map(workers.map((w) => [w, linkUps(w)]));
    const frontKilledAt = Date.now();
    await frontWorker.kill();
    await until(
      () => workers.some((w) => w !== frontWorker && w !== plain && linkUps(w) > ups.get(w)!),
      'a standby to take the front and connect the component',
      30_000,
    );
    const frontFailoverMs = Date.now() - frontKilledAt;
    await until(() => connected() === PUPPETS, "the front's puppets back", 30_000);
    const puppetFailoverMs = Date.now() - frontKilledAt;
    await sending;

    // What the server bounced while no component was connected, and what the new front said may
    // not have gone (XEP-0114 cannot say what was in the dead front's socket): each sender is told
    // by the contact up to which of their messages the bridge took. Sent again, as a user would.
    const arrivedAt = (c: number) =>
      natives[c]!.received.flatMap((m) => (m.content.kind === 'text' ? [m.content.text] : []));
    const indexOf = (id: string | undefined) => Number(id?.split('-')[1]);
    /** The index after which the crash notice says this conversation's messages may be lost, if one came. */
    const noticedAfter = (c: number): number | undefined => {
      for (const m of users[c]!.messages) {
        if ((m.attrs.from ?? '').split('/')[0] !== contactJid(phones[c]!)) continue;
        const said = /the last one had the id ([^)\s]+)\)/.exec(m.getChild('body')?.getText() ?? '');
        if (said) return said[1]!.startsWith('hello-') ? -1 : indexOf(said[1]);
      }
      return undefined;
    };
    const accounted = (c: number, i: number) =>
      arrivedAt(c).includes(textOf(c, i)) ||
      [...bounced(c)].some((id) => indexOf(id) === i) ||
      (noticedAfter(c) !== undefined && i > noticedAfter(c)!);
    await until(
      () =>
        users.every((_, c) =>
          Array.from({ length: PER_CONVERSATION }, (_, i) => i).every((i) => accounted(c, i)),
        ),
      'every XMPP message arrived, bounced, or covered by a crash notice',
      60_000,
    ).catch(() => {
      const lost = users.flatMap((_, c) =>
        Array.from({ length: PER_CONVERSATION }, (_, i) => i)
          .filter((i) => !accounted(c, i))
          .map((i) => idOf(c, i)),
      );
      throw new Error(`lost without a word: ${JSON.stringify(lost.slice(0, 10))}\n${logTails()}`);
    });
    let resent = 0;
    let told = 0;
    for (let c = 0; c < CONVERSATIONS; c++) {
      const got = new Set(arrivedAt(c));
      if (noticedAfter(c) !== undefined) told++;
      for (let i = 0; i < PER_CONVERSATION; i++) {
        if (got.has(textOf(c, i))) continue;
        await users[c]!.client.send(chat(contactJid(phones[c]!), textOf(c, i), idOf(c, i)));
        resent++;
      }
    }

    // XMPP -> native: each exactly once; those not bounced in order.
    await until(
      () =>
        Array.from({ length: CONVERSATIONS }, (_, c) => c).every((c) => {
          const texts = new Set(arrivedAt(c));
          return Array.from({ length: PER_CONVERSATION }, (_, i) => i).every((i) => texts.has(textOf(c, i)));
        }),
      'every XMPP message at its contact',
      60_000,
    ).catch(() => {
      const missing = Array.from({ length: CONVERSATIONS }, (_, c) =>
        Array.from({ length: PER_CONVERSATION }, (_, i) => i).filter(
          (i) => !arrivedAt(c).includes(textOf(c, i)),
        ),
      );
      throw new Error(
        `missing at the contacts: ${JSON.stringify(missing.map((m, c) => [c, m.slice(0, 8)]).filter(([, m]) => (m as number[]).length > 0))}`,
      );
    });
    for (let c = 0; c < CONVERSATIONS; c++) {
      const texts = arrivedAt(c).filter((t) => t.startsWith(`to native ${c}:`));
      expect(texts).toHaveLength(PER_CONVERSATION); // none twice
      const resentIdx = new Set(
        Array.from({ length: PER_CONVERSATION }, (_, i) => i).filter(
          (i) => [...bounced(c)].some((id) => indexOf(id) === i) || i > (noticedAfter(c) ?? PER_CONVERSATION),
        ),
      );
      const inOrder = texts.map((t) => Number(t.split(': ')[1])).filter((i) => !resentIdx.has(i));
      expect(inOrder).toEqual([...inOrder].sort((a, b) => a - b));
    }

    // native -> XMPP: each exactly once, in order.
    const fromNative = (c: number) =>
      users[c]!.messages.filter(
        (m) =>
          (m.attrs.from ?? '').split('/')[0] === contactJid(phones[c]!) &&
          m.attrs.type !== 'error' &&
          (m.getChild('body')?.getText() ?? '').startsWith(`from native ${c}:`),
      );
    await until(
      () => users.every((_, c) => fromNative(c).length >= PER_CONVERSATION),
      'every native message at its XMPP user',
      60_000,
    );
    await sleep(1_000); // a duplicate would come now
    // The message a dying front was writing may come again from the next one, under the same id
    // (and origin-id): a client shows it once. Never a second id for one message.
    let repeats = 0;
    for (let c = 0; c < CONVERSATIONS; c++) {
      const byId = new Map<string, string>();
      for (const m of fromNative(c)) {
        const id = m.attrs.id as string;
        if (byId.has(id)) repeats++;
        else byId.set(id, m.getChild('body')!.getText());
      }
      expect([...byId.values()]).toEqual(
        Array.from({ length: PER_CONVERSATION }, (_, i) => nativeText(c, i)),
      );
    }
    expect(repeats).toBeLessThanOrEqual(CONVERSATIONS); // at most the one in flight per conversation
    // Each got its delivery receipt (owed by the inbox row the front delivered, sent by the worker
    // running the puppet), through both kills.
    const unreceipted = (c: number) => {
      const got = new Set(natives[c]!.receipts.filter((r) => r.type === 'delivery').map((r) => r.id));
      return nativeIds[c]!.filter((id) => !got.has(id));
    };
    await until(
      () => natives.every((_, c) => unreceipted(c).length === 0),
      'a delivery receipt for every native message',
      30_000,
    ).catch(() => {
      throw new Error(`no delivery receipt for: ${JSON.stringify(natives.map((_, c) => unreceipted(c)))}`);
    });

    // Within the lease time plus the reconnect gate, and never two connections for one account.
    expect(workerFailoverMs).toBeLessThan(LEASE_SECONDS * 1000 + RECONNECT_ALLOWANCE_MS);
    expect(puppetFailoverMs).toBeLessThan(LEASE_SECONDS * 1000 + RECONNECT_ALLOWANCE_MS);
    expect(stats().connectedTwice).toEqual([]);
    expect(stats().maxSimultaneousPerAccount).toBe(1);
    expect(w1.starts + w2.starts + w3.starts).toBe(3);
    process.stdout.write(
      `cluster-failover: worker SIGKILL -> puppets back in ${workerFailoverMs} ms; front SIGKILL -> component up in ${frontFailoverMs} ms, puppets back in ${puppetFailoverMs} ms (lease ${LEASE_SECONDS} s); ${resent} messages bounced or covered by a crash notice (${told} conversations told) sent again; ${repeats} native messages written again under their id by the new front\n`,
    );
  }, 300_000);
});
