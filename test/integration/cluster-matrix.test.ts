/**
 * The front's failover on Matrix: three workers on one PostgreSQL (`interop-bridge start --worker`,
 * built, child processes) with the Matrix adapter on a real Synapse, every worker configured alike
 * with the same appservice listener address (only the front binds it). Three Matrix users
 * (matrix-js-sdk) log in through the bridge bot, which enlists them in whichever worker runs the
 * adapters, and each chats with a native contact (the emulator). While both sides send, a worker
 * that does not run the adapters is SIGKILLed, then the front: Synapse keeps what it could not
 * hand over and sends it again to the worker that took the front. Every message the bridge was
 * given arrives exactly once on each side, in order, with no user action. Synapse can strand one of
 * its own transactions in the failover (never sent at all): the bridge finds its events by reading
 * the rooms back (adapters/matrix/catch-up.ts), so every message the users sent arrives; the test
 * counts those Synapse never offered.
 */
import { NativeUser } from '../../emulator/native-user.js';
import { Leases } from '../../src/cluster/leases.js';
import { generateProviderKey } from '../../src/protocol/jwt.js';
import { PgDatabase } from '../../src/store/postgres-database.js';
import { warningsOf, workerIdOf, writeSharedState, writeWorkerConfig } from '../support/cluster.js';
import { DaemonChild } from '../support/daemon-child.js';
import { startEmulator, type StartedEmulator } from '../support/emulator-process.js';
import { startPostgres, type PostgresServer } from '../support/postgres.js';
import type { SdkUser } from '../support/synapse/sdk-user.js';
import { SynapseSuite } from '../support/synapse/suite.js';
import { tempDir } from '../support/tmp.js';
import { freePort, until } from '../support/wait.js';

const PROVIDER = 'clustermatrix';
const SERVER = 'example.test';
const BOT = `@interop:${SERVER}`;
const AS_TOKEN = 'as-token-for-the-cluster-test';
const HS_TOKEN = 'hs-token-for-the-cluster-test';
const LEASE_SECONDS = 3;
const USERS = 3;
/** Messages each way per conversation; the kills fall while they are under way. */
const N = 50;
const PACE_MS = 200;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const bodyOf = (e: { content: Record<string, unknown> }) => String(e.content['body'] ?? '');

describe('three workers on Matrix: a worker and then the front SIGKILLed in the middle of conversations', () => {
  const tmp = tempDir('cluster-matrix-');
  let pgServer: PostgresServer;
  let synapse: SynapseSuite;
  let emulator: StartedEmulator;
  let db: PgDatabase;
  let leases: Leases;
  let dbUrl = '';
  const workers: DaemonChild[] = [];
  const natives: NativeUser[] = [];
  const users: SdkUser[] = [];

  const frontHolder = async (): Promise<string | undefined> =>
    (await leases.list('front')).find((l) => l.live)?.holder;
  const listening = async (): Promise<boolean> => {
    try {
      const ping = await fetch(`http://127.0.0.1:${synapse.bridgePort}/_matrix/app/v1/ping`, {
        method: 'POST',
      });
      return ping.status === 401;
    } catch {
      return false;
    }
  };
  const logTails = () => warningsOf(workers);

  beforeAll(async () => {
    pgServer = await startPostgres();
    const url = await pgServer.createDatabase();
    const key = await generateProviderKey('EdDSA');
    emulator = await startEmulator(tmp, { provider: { id: PROVIDER, signingKey: key } });
    synapse = await SynapseSuite.forBridge({ asToken: AS_TOKEN, hsToken: HS_TOKEN });
    const dataDir = tmp.file('state');
    writeSharedState(dataDir, key);
    dbUrl = url;
    for (let i = 0; i < 3; i++) {
      const config = tmp.file(`worker-${i + 1}.yaml`);
      writeWorkerConfig(config, {
        provider: PROVIDER,
        dataDir,
        database: url,
        leaseSeconds: LEASE_SECONDS,
        httpPort: await freePort(),
        gateway: {
          port: emulator.running.gateway.port,
          rootKey: emulator.root,
          extra: ['reconnect: { initial_delay_ms: 50, max_delay_ms: 500 }'],
        },
        more: [
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
        ],
      });
      workers.push(new DaemonChild(config, ['--worker']));
    }
  }, 120_000);

  afterAll(async () => {
    for (const w of workers) await w.kill();
    for (const u of users) u.stop();
    for (const n of natives) await n.close().catch(() => undefined);
    await db?.close();
    await synapse?.close();
    await emulator?.running.stop();
    await pgServer?.stop();
    tmp.cleanup();
  });

  it('delivers every message exactly once and in order on each side, with no user action', async () => {
    for (const w of workers) await w.start(() => w.log.includes('worker started'), 'a worker to start');
    // The workers migrated the database; the test reads their leases.
    db = await PgDatabase.open({ url: dbUrl, migrations: false });
    leases = new Leases(db);
    await until(listening, 'the front to listen for Synapse', 30_000);

    // Each user logs in through the bot (enlisted by the front's worker) and opens a portal.
    const portals: string[] = [];
    const jids: string[] = [];
    for (let u = 0; u < USERS; u++) {
      const phone = `+49151123500${u}`;
      const native = await NativeUser.connect({
        emulator: emulator.running.gateway,
        phone,
        rootPublicKey: emulator.root,
      });
      natives.push(native);
      const user = await synapse.user(`talker${u}`, `Talker ${u}`);
      await synapse.exemptFromRateLimits(user.userId);
      users.push(user);
      const management = await user.createDirectRoom(BOT);
      await user.waitFor(management, (e) => e.sender === BOT && e.type === 'm.room.message');
      await user.sendText(management, 'login');
      await user.waitFor(management, (e) => e.sender === BOT && /login confirm/.test(bodyOf(e)));
      await user.sendText(management, 'login confirm');
      await user.waitFor(management, (e) => e.sender === BOT && /You are now connected/.test(bodyOf(e)));
      await user.sendText(management, `start-chat ${phone}`);
      const ghost = `@wa_${phone.slice(1)}:${SERVER}`;
      const portal = await user.waitForInvite((e) => e.sender === ghost);
      await user.join(portal);
      await user.sendText(portal, 'hello');
      const first = await native.waitForMessage((m) => m.content.kind === 'text');
      portals.push(portal);
      jids.push(first.from);
    }

    const fromUser = (u: number) => Array.from({ length: N }, (_, i) => `user ${u}: ${i}`);
    const fromNative = (u: number) => Array.from({ length: N }, (_, i) => `native ${u}: ${i}`);
    const sending = Promise.all(
      users.map(async (user, u) => {
        for (let i = 0; i < N; i++) {
          await Promise.all([
            user.sendText(portals[u]!, fromUser(u)[i]!),
            natives[u]!.sendText(jids[u]!, fromNative(u)[i]!, { devices: [0] }),
          ]);
          await sleep(PACE_MS);
        }
      }),
    );
    const span = N * PACE_MS;
    await sleep(span / 4);
    const frontId = await frontHolder();
    const plain = workers.find((w) => workerIdOf(w) !== frontId)!;
    await plain.kill();
    await sleep(span / 4);
    const front = workers.find((w) => workerIdOf(w) === frontId)!;
    const killedAt = Date.now();
    await front.kill();
    await until(
      async () =>
        (await frontHolder()) !== undefined && (await frontHolder()) !== frontId && (await listening()),
      'a standby to take the front and listen',
      30_000,
    );
    const takeoverMs = Date.now() - killedAt;
    await sending;

    const nativeTexts = (u: number) =>
      natives[u]!.received.flatMap((m) => (m.content.kind === 'text' ? [m.content.text] : []));
    /**
     * What Synapse handed the bridge from user u and the bridge accepted (200), in the order it first
     * did. Synapse itself can strand a transaction: one it made while it had the bridge down, in the
     * instant its recoverer finished and marked the bridge up, is never sent (catch-up.ts).
     */
    const accepted = (u: number): string[] => {
      const texts: string[] = [];
      for (const t of synapse.proxy.transactions) {
        if (t.bridgeStatus !== 200) continue;
        for (const e of t.events) {
          const body = (e['content'] as { body?: unknown } | undefined)?.body;
          if (
            e['sender'] === users[u]!.userId &&
            e['room_id'] === portals[u] &&
            typeof body === 'string' &&
            !texts.includes(body)
          )
            texts.push(body);
        }
      }
      return texts;
    };
    const ghostTexts = async (u: number) => {
      const ghost = `@wa_${natives[u]!.jid.split('@')[0]}:${SERVER}`;
      return (await users[u]!.readMessages(portals[u]!)).filter((e) => e.sender === ghost).map(bodyOf);
    };
    await until(
      async () => {
        for (let u = 0; u < USERS; u++) {
          if (nativeTexts(u).length < N + 1 || (await ghostTexts(u)).length < N) return false;
        }
        return true;
      },
      'every message on both sides',
      120_000,
    ).catch(async (err: Error) => {
      const missing: { atNative: string[]; inMatrix: string[] }[] = [];
      for (let u = 0; u < USERS; u++) {
        const ghost = await ghostTexts(u);
        missing.push({
          atNative: fromUser(u).filter((t) => !nativeTexts(u).includes(t)),
          inMatrix: fromNative(u).filter((t) => !ghost.includes(t)),
        });
      }
      // Where a missing message stopped: the outbox rows not yet delivered, the appservice events
      // not handled, what waits for the front, and the bridge's own log lines about them.
      const rows = async (q: string) => JSON.stringify(await db.query(q));
      const missingIds = () =>
        synapse.proxy.transactions.flatMap((t) =>
          t.events
            .filter((e) =>
              missing.some((m) =>
                m.atNative.includes((e['content'] as { body?: string } | undefined)?.body ?? ''),
              ),
            )
            .map((e) => String(e['event_id'])),
        );
      const state = [
        `outbox: ${await rows("SELECT o.seq, o.state, o.attempts, o.error, o.local_id, p.local_id AS user FROM outbox o JOIN puppets p ON p.id = o.puppet_id WHERE o.kind <> 'receipt' AND o.state IN ('queued', 'failed') ORDER BY o.id")}`,
        `matrix_inbound not done: ${await rows("SELECT seq, room_id, state, attempts, error FROM matrix_inbound WHERE state <> 'done'")}`,
        `outbox by user and state: ${await rows("SELECT p.local_id AS user, o.state, count(*) AS n, max(o.attempts) AS attempts FROM outbox o JOIN puppets p ON p.id = o.puppet_id WHERE o.kind <> 'receipt' GROUP BY 1, 2 ORDER BY 1, 2")}`,
        `not delivered: ${await rows("SELECT p.local_id AS user, o.seq, o.state, o.attempts FROM outbox o JOIN puppets p ON p.id = o.puppet_id WHERE o.kind <> 'receipt' AND o.state NOT IN ('delivered', 'read') ORDER BY 1, 2")}`,
        `emulator queue: ${JSON.stringify(emulator.running.gateway.queued().map((q) => [q.kind, q.stanza_id]))}`,
        `transactions carrying a missing message: ${JSON.stringify(
          missing
            .flatMap((m) => m.atNative)
            .map((text) => ({
              text,
              txns: synapse.proxy.transactions
                .filter((t) =>
                  t.events.some((e) => (e['content'] as { body?: string } | undefined)?.body === text),
                )
                .map((t) => [t.txnId, t.bridgeStatus, t.toldSynapse, t.eventIds.length]),
            })),
        )}`,
        `inbound rows of a missing message: ${await rows(
          `SELECT seq, key, state, attempts, error FROM matrix_inbound WHERE key LIKE ANY (ARRAY[${
            missingIds()
              .map((id) => `'%${id}%'`)
              .join(',') || "''"
          }])`,
        )}`,
        `relay_events: ${await rows('SELECT count(*) AS n FROM relay_events')}`,
        `leases: ${await rows("SELECT name, holder, fence, expires_at > now() AS live FROM leases WHERE name NOT LIKE 'worker:%'")}`,
      ].join('\n');
      throw new Error(`${err.message}: ${JSON.stringify(missing)}\n${state}\n${logTails()}`);
    });
    await synapse.proxy.transactionsIdle(1000);
    await sleep(1000);
    for (let u = 0; u < USERS; u++) {
      expect(nativeTexts(u)).toEqual(['hello', ...fromUser(u)]);
      expect(await ghostTexts(u)).toEqual(fromNative(u));
    }
    expect(synapse.proxy.violations).toEqual([]);
    expect(emulator.running.gateway.stats().connectedTwice).toEqual([]);
    // Once delivered, no text of the conversations is left in the shared database, in any table
    // (text columns as they are, binary ones searched for the text's bytes).
    const markers = users.flatMap((_, u) => [
      fromUser(u)[N - 1]!,
      fromNative(u)[N - 1]!,
      fromUser(u)[N >> 1]!,
    ]);
    const columns = (await db.query(
      `SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
       JOIN pg_tables t ON t.tablename = c.table_name AND t.schemaname = c.table_schema
       WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema')
         AND c.data_type IN ('text', 'character varying', 'bytea', 'json', 'jsonb')`,
    )) as { table_name: string; column_name: string; data_type: string }[];
    const left: string[] = [];
    for (const c of columns) {
      const col = `"${c.column_name}"`;
      const where =
        c.data_type === 'bytea'
          ? markers.map((_, i) => `position(convert_to($${i + 1}, 'UTF8') in ${col}) > 0`)
          : markers.map((_, i) => `${col}::text LIKE '%' || $${i + 1} || '%'`);
      const row = await db.queryOne(
        `SELECT count(*)::int AS n FROM "${c.table_name}" WHERE ${where.join(' OR ')}`,
        markers,
      );
      const n = Number(row?.['n'] ?? 0);
      if (n > 0) left.push(`${c.table_name}.${c.column_name}: ${n}`);
    }
    expect(columns.length).toBeGreaterThan(20);
    expect(left).toEqual([]);
    const stranded = users.flatMap((_, u) => fromUser(u).filter((t) => !accepted(u).includes(t)));
    process.stdout.write(
      `cluster-matrix: the front SIGKILLed, a standby listening after ${takeoverMs} ms; ${stranded.length} messages Synapse never sent, found by reading the rooms back (${JSON.stringify(stranded)})\n`,
    );
  }, 300_000);
});
