/**
 * Several workers on one PostgreSQL (`interop-bridge start --worker`, built, child processes) and
 * 60 enlisted puppets against the emulator (in this process, which counts every account's live
 * connections at once): the puppets are split evenly; a SIGKILLed worker's puppets are connected
 * again from the others within the lease time plus the reconnect gate; a fourth worker takes a
 * share; a graceful stop hands its puppets over at once (well within the lease time); and the emulator
 * never sees a puppet connected twice at once.
 */
import { Leases, type LeaseRow } from '../../src/cluster/leases.js';
import { generateProviderKey } from '../../src/protocol/jwt.js';
import { PgDatabase } from '../../src/store/postgres-database.js';
import { enlistPuppets, workerIdOf, writeSharedState, writeWorkerConfig } from '../support/cluster.js';
import { DaemonChild } from '../support/daemon-child.js';
import { emulatorGateway, startEmulator, type StartedEmulator } from '../support/emulator-process.js';
import { startPostgres, type PostgresServer } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';
import { freePort, until } from '../support/wait.js';

const PROVIDER = 'cluster';
const PUPPETS = 60;
const LEASE_SECONDS = 4;
/** The reconnect gate and a handshake, on top of the lease time, for a SIGKILLed worker's puppets. */
const RECONNECT_ALLOWANCE_MS = 6_000;

describe('several workers on one PostgreSQL (puppet leases with fencing)', () => {
  const tmp = tempDir('cluster-workers-');
  let pgServer: PostgresServer;
  let emulator: StartedEmulator;
  let db: PgDatabase;
  let leases: Leases;
  const workers: DaemonChild[] = [];
  const dataDir = tmp.file('state');
  let url = '';

  /** A worker's config (its own HTTP port; everything else shared) and the child running it. */
  const newWorker = async (): Promise<DaemonChild> => {
    const config = tmp.file(`worker-${workers.length + 1}.yaml`);
    writeWorkerConfig(config, {
      provider: PROVIDER,
      dataDir,
      database: url,
      leaseSeconds: LEASE_SECONDS,
      httpPort: await freePort(),
      gateway: {
        port: emulator.running.gateway.port,
        rootKey: emulator.root,
        extra: ['reconnect: { initial_delay_ms: 100, max_delay_ms: 1000 }'],
      },
      more: ['signal:', '  prekey_batch_size: 10'],
    });
    const w = new DaemonChild(config, ['--worker']);
    workers.push(w);
    return w;
  };
  const started = (w: DaemonChild) => () => w.log.includes('worker started');
  /** Puppet leases that are live, by holder. */
  const owners = async (): Promise<Map<string, string[]>> => {
    const by = new Map<string, string[]>();
    for (const l of await leases.list('puppet:')) {
      if (!l.live || l.holder === undefined) continue;
      by.set(l.holder, [...(by.get(l.holder) ?? []), l.name]);
    }
    return by;
  };
  const connected = () => new Set(emulator.running.gateway.connectedDevices()).size;
  const stats = () => emulator.running.gateway.stats();
  /** Every puppet held by one of `holders`, `each` apiece (±1), and connected at the emulator. */
  const balanced = async (holders: DaemonChild[]): Promise<boolean> => {
    const by = await owners();
    const ids = holders.map(workerIdOf);
    const counts = ids.map((id) => by.get(id)?.length ?? 0);
    const total = counts.reduce((a, b) => a + b, 0);
    const share = Math.ceil(PUPPETS / holders.length);
    return (
      total === PUPPETS &&
      [...by.keys()].every((h) => ids.includes(h)) &&
      counts.every((c) => c >= PUPPETS - share * (holders.length - 1) && c <= share) &&
      connected() === PUPPETS
    );
  };

  beforeAll(async () => {
    pgServer = await startPostgres();
    const key = await generateProviderKey('EdDSA');
    emulator = await startEmulator(tmp, { provider: { id: PROVIDER, signingKey: key } });
    writeSharedState(dataDir, key);
    url = await pgServer.createDatabase();
    // 60 puppets enlisted through the real path by a bridge in this process, then closed.
    await enlistPuppets(
      url,
      emulatorGateway(emulator.running.gateway, emulator.root, { id: PROVIDER, signingKey: key }),
      PUPPETS,
    );
    await until(() => connected() === 0, 'the set-up connections closed');

    db = await PgDatabase.open({ url, migrations: false });
    leases = new Leases(db);
    for (let i = 0; i < 3; i++) await newWorker();
  }, 120_000);

  afterAll(async () => {
    for (const w of workers) await w.kill();
    await db?.close();
    await emulator?.running.stop();
    await pgServer?.stop();
    tmp.cleanup();
  });

  it('splits the puppets, fails over a SIGKILLed worker, takes in a new one, hands over on a graceful stop, never connecting a puppet twice', async () => {
    const [w1, w2, w3] = workers as [DaemonChild, DaemonChild, DaemonChild];
    for (const w of [w1, w2, w3]) await w.start(started(w), 'a worker to start');
    await until(() => balanced([w1, w2, w3]), '60 puppets split 20/20/20 and connected', 30_000);

    // SIGKILL: its puppets come back from the two others once their leases expire.
    const lost = (await owners()).get(workerIdOf(w2))!;
    expect(lost).toHaveLength(20);
    const fencesBefore = new Map((await leases.list('puppet:')).map((l: LeaseRow) => [l.name, l.fence]));
    const killedAt = Date.now();
    await w2.kill();
    await until(() => balanced([w1, w3]), "the killed worker's puppets connected from the others", 30_000);
    const failoverMs = Date.now() - killedAt;
    expect(failoverMs).toBeLessThan(LEASE_SECONDS * 1000 + RECONNECT_ALLOWANCE_MS);
    // Taken over: a new tenure, one fence higher.
    const after = new Map((await leases.list('puppet:')).map((l) => [l.name, l.fence]));
    for (const name of lost) expect(after.get(name)).toBe(fencesBefore.get(name)! + 1);

    // A fourth worker joins: the others shed their excess, it takes a share.
    const w4 = await newWorker();
    await w4.start(started(w4), 'the fourth worker to start');
    await until(() => balanced([w1, w3, w4]), 'a share for the fourth worker (20/20/20)', 30_000);

    // A graceful stop: its puppets are handed over before their leases could have expired.
    const stoppedAt = Date.now();
    expect(await w3.stop()).toBe(0);
    await until(() => balanced([w1, w4]), "the stopped worker's puppets connected from the others", 30_000);
    const handoverMs = Date.now() - stoppedAt;
    // Told at once (NOTIFY), the others take them well before a lease could expire.
    expect(handoverMs).toBeLessThan((LEASE_SECONDS * 1000) / 2);

    // Through all of it, no account had two connections at once.
    expect(stats().connectedTwice).toEqual([]);
    expect(stats().maxSimultaneousPerAccount).toBe(1);
    process.stdout.write(
      `cluster-workers: failover after SIGKILL ${failoverMs} ms (lease ${LEASE_SECONDS} s); graceful handover ${handoverMs} ms\n`,
    );
  }, 180_000);
});
