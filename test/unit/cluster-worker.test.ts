/**
 * The worker's lease discipline (src/cluster/worker.ts) on a real PostgreSQL, with a host that
 * records which puppets it was told to run: two workers split the puppets; a worker whose renewals
 * cannot get through (the leases table locked by another session) drops its puppets before their
 * leases expire at the database, and only then may the other worker take them.
 */
import { bridgeMigrations } from '../../app/migrations.js';
import { Leases } from '../../src/cluster/leases.js';
import { ClusterWorker, type PuppetHost } from '../../src/cluster/worker.js';
import { PgDatabase } from '../../src/store/postgres-database.js';
import { usePostgres } from '../support/postgres.js';
import { until } from '../support/wait.js';

const pg = usePostgres();
const PUPPETS = Array.from({ length: 10 }, (_, i) => i + 1);
const LEASE_MS = 1_200;

/** Runs puppets in memory, recording when each was dropped and what the database said then. */
class RecordingHost implements PuppetHost {
  readonly running = new Set<number>();
  readonly drops: { puppet: number; at: number }[] = [];
  candidates = () => Promise.resolve(PUPPETS);
  adopt(puppetId: number): Promise<void> {
    this.running.add(puppetId);
    return Promise.resolve();
  }
  drop(puppetId: number): Promise<void> {
    this.running.delete(puppetId);
    this.drops.push({ puppet: puppetId, at: Date.now() });
    return Promise.resolve();
  }
}

describe('a cluster worker', () => {
  let db: PgDatabase;
  let blocker: PgDatabase;
  const workers: ClusterWorker[] = [];
  beforeEach(async () => {
    const url = await pg().createDatabase();
    db = await PgDatabase.open({ url, migrations: bridgeMigrations('postgres') });
    blocker = await PgDatabase.open({ url, migrations: false });
  });
  afterEach(async () => {
    for (const w of workers.splice(0)) await w.stop().catch(() => undefined);
    await blocker.close();
    await db.close();
  });

  const worker = (id: string, host: PuppetHost, leases = new Leases(db)): ClusterWorker => {
    const w = new ClusterWorker({ id, leases, host, leaseMs: LEASE_MS, batch: 4 });
    workers.push(w);
    return w;
  };

  it('shares the puppets with another worker, and drops them when it cannot renew, before they expire', async () => {
    const a = new RecordingHost();
    const b = new RecordingHost();
    const wa = worker('a', a);
    await wa.start();
    await until(() => a.running.size === 10, 'worker a running all 10 (batches of 4)', 10_000);
    const wb = worker('b', b);
    await wb.start();
    await until(() => a.running.size === 5 && b.running.size === 5, 'a 5/5 split', 10_000);
    expect([...a.running].filter((p) => b.running.has(p))).toEqual([]);

    // b stops gracefully: it hands its 5 back, and a takes them.
    await wb.stop();
    await until(() => a.running.size === 10, 'worker a running all 10 again', 10_000);
    // Renewals blocked: the leases table locked by another session.
    const release = await lockLeases(blocker, 'a');
    const blockedAt = Date.now();
    await until(() => a.running.size === 0, 'worker a dropping its puppets', 10_000);
    // Dropped before the leases could expire: the latest drop came before 3/4 of the lease time
    // had passed since the last renewal that got through, itself before the block.
    const lastDrop = Math.max(...a.drops.slice(-10).map((d) => d.at));
    expect(lastDrop - blockedAt).toBeLessThan(LEASE_MS);
    const expiries = await release(); // unblocked: what the database still says of them
    expect(expiries.map((e) => e.name)).toHaveLength(11); // its 10 puppets and worker:a
    for (const e of expiries) expect(e.expiresAt.getTime()).toBeGreaterThan(lastDrop);
  });

  it('keeps a puppet it claimed while a round was reading the candidates (an enlistment here)', async () => {
    const a = new RecordingHost();
    const wa = worker('a', a);
    await wa.start();
    await until(() => a.running.size === 10, 'worker a running all 10', 10_000);
    // The next round's candidates are read before puppet 11 exists, and come back after its claim.
    let reads = 0;
    let answer!: (ids: number[]) => void;
    a.candidates = () => {
      reads++;
      if (reads > 1) return Promise.resolve([...PUPPETS, 11]);
      return new Promise<number[]>((r) => (answer = r));
    };
    wa.kick();
    await until(() => reads === 1, 'a round reading the candidates', 5_000);
    expect(await wa.claim(11)).toEqual({ name: 'puppet:11', fence: 1 });
    answer([...PUPPETS]);
    await until(() => reads >= 2, 'the round done, and the next one begun', 5_000);
    expect(a.drops.map((d) => d.puppet)).not.toContain(11);
    expect(wa.owned()).toContain(11);
    expect(await new Leases(db).holderOf('puppet:11')).toBe('a');
  });
});

/**
 * Locks the leases table (ACCESS EXCLUSIVE, in an open transaction on `db`'s writer) until the
 * returned function is called, which first reads the expiries of `holder`'s leases inside the lock.
 */
async function lockLeases(
  db: PgDatabase,
  holder: string,
): Promise<() => Promise<{ name: string; expiresAt: Date }[]>> {
  let unlock!: () => void;
  const unlocked = new Promise<void>((r) => (unlock = r));
  let rows: { name: string; expiresAt: Date }[] = [];
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => (locked = r));
  const done = db.transact(async (query) => {
    await query({ text: 'LOCK TABLE leases IN ACCESS EXCLUSIVE MODE', values: [] });
    locked();
    await unlocked;
    rows = (
      await query({ text: 'SELECT name, expires_at FROM leases WHERE holder = $1', values: [holder] })
    ).rows.map((r) => ({
      name: r.name as string,
      expiresAt: r.expires_at as Date,
    }));
  });
  await isLocked;
  return async () => {
    unlock();
    await done;
    return rows;
  };
}
