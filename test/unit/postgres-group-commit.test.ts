/**
 * The PostgreSQL writer's group commit (src/store/postgres-database.ts) on a real server: writes
 * waiting together share one commit, each still lands in order and resolves with its own result,
 * and a failing write fails alone (its neighbours in the group land).
 */
import { Leases } from '../../src/cluster/leases.js';
import { FENCED_SQLSTATE } from '../../src/store/fencing.js';
import { PgDatabase, readPgMigrations, sql } from '../../src/store/postgres-database.js';
import { fenced } from '../../src/store/signal-store-postgres.js';
import { usePostgres } from '../support/postgres.js';

const postgres = usePostgres();

describe('group commit on PostgreSQL', () => {
  let db: PgDatabase;
  /** Write transactions so far: each takes a transaction id (this read takes one too). */
  const xids = async () => Number((await db.queryOne('SELECT txid_current() AS x'))!.x);

  beforeEach(async () => {
    db = await PgDatabase.open({ url: await postgres().createDatabase(), migrations: false });
    await db.exec(sql('CREATE TABLE t (n integer PRIMARY KEY, v text NOT NULL)'));
  });
  afterEach(() => db.close());

  it('writes asked together land in order, in far fewer commits, each resolving with its result', async () => {
    await db.settled();
    const before = await xids();
    const writes: Promise<unknown>[] = [];
    for (let n = 1; n <= 40; n++) {
      writes.push(
        n % 2 === 0
          ? db.commit([
              sql('INSERT INTO t VALUES ($1, $2)', n, 'a'),
              sql('UPDATE t SET v = $2 WHERE n = $1', n, 'b'),
            ])
          : db.exec(sql('INSERT INTO t VALUES ($1, $2)', n, 'x')),
      );
    }
    db.write(sql('UPDATE t SET v = $1 WHERE n = 1', 'loose'));
    const results = await Promise.all(writes);
    await db.settled();
    expect((results[0] as { rowCount: number }).rowCount).toBe(1);
    const rows = await db.query('SELECT n, v FROM t ORDER BY n');
    expect(rows).toHaveLength(40);
    expect(rows[0]).toEqual({ n: 1, v: 'loose' }); // the loose write came after the insert
    expect(rows[1]).toEqual({ n: 2, v: 'b' });
    const used = (await xids()) - before - 1;
    expect(used).toBeLessThan(20); // one each would be 41
  });

  it('a failing write in a group fails alone: the others land', async () => {
    await db.exec(sql('INSERT INTO t VALUES (5, $1)', 'taken'));
    const outcomes = await Promise.allSettled([
      db.exec(sql('INSERT INTO t VALUES (1, $1)', 'one')),
      db.commit([sql('INSERT INTO t VALUES (2, $1)', 'two'), sql('INSERT INTO t VALUES (5, $1)', 'dup')]),
      db.exec(sql('INSERT INTO t VALUES (3, $1)', 'three')),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    // The failed unit is all or nothing: its first insert is not there either.
    expect((await db.query('SELECT n, v FROM t ORDER BY n')).map((r) => r.n)).toEqual([1, 3, 5]);
  });
});

/**
 * Group commit and fencing (src/cluster/leases.ts): a group holds the lease locks of its units'
 * fencing checks until its one commit. The holder's own renewal must not wait for that (nor
 * deadlock with it); a takeover (the fence moving on) must.
 */
describe('group commit on PostgreSQL, fenced units and the leases', () => {
  let db: PgDatabase;
  let leases: Leases;
  const check = (name: string, fence: number) => sql('SELECT interop_require_lease($1, $2)', name, fence);
  const sleepSql = (s: number) => sql('SELECT pg_sleep($1)', s);
  const ms = () => Number(process.hrtime.bigint() / 1_000_000n);

  beforeEach(async () => {
    db = await PgDatabase.open({ url: await postgres().createDatabase(), migrations: readPgMigrations() });
    await db.exec(sql('CREATE TABLE t (n integer PRIMARY KEY)'));
    leases = new Leases(db);
  });
  afterEach(() => db.close());

  it("a group in flight holds up neither its holder's renewal nor itself: no wait, no deadlock", async () => {
    const names = Array.from({ length: 8 }, (_, i) => `puppet:${i + 1}`);
    const held = await leases.acquire('w1', names, 60_000);
    expect(held).toHaveLength(8);
    await db.settled();
    const started = ms();
    // One group: checks on half the leases, a pause, then checks on the other half (in another
    // order than the renewal's), each unit with a write of its own; a Signal write's condition too.
    const units = [
      ...held
        .slice(4)
        .reverse()
        .map((l, i) => db.commit([check(l.name, l.fence), sql('INSERT INTO t VALUES ($1)', i)])),
      db.commit([sleepSql(0.4)]),
      ...held
        .slice(0, 4)
        .map((l, i) => db.commit([check(l.name, l.fence), sql('INSERT INTO t VALUES ($1)', 10 + i)])),
      db.commit([sql(`INSERT INTO t SELECT 99 WHERE ${fenced(1)}`, held[0]!.name, held[0]!.fence)]),
    ];
    await new Promise((r) => setTimeout(r, 150)); // the group is in its pause
    const renewed = await leases.renew('w1', held, 60_000);
    const renewedAt = ms() - started;
    expect(renewed.size).toBe(8);
    await Promise.all(units);
    const doneAt = ms() - started;
    expect(renewedAt).toBeLessThan(350); // before the group's commit: it did not wait for it
    expect(doneAt).toBeLessThan(900); // no deadlock (detected after deadlock_timeout, 1 s)
    expect((await db.query('SELECT n FROM t ORDER BY n')).map((r) => r.n)).toEqual([
      0, 1, 2, 3, 10, 11, 12, 13, 99,
    ]);
  });

  it('a takeover waits for a group in flight under the old fence, whose units then land; later ones are refused', async () => {
    const [mine] = await leases.acquire('w1', ['puppet:1'], 200);
    await db.settled();
    const order: string[] = [];
    const group = Promise.all([
      db.commit([check(mine!.name, mine!.fence), sql('INSERT INTO t VALUES (1)')]),
      db.commit([sleepSql(0.5)]),
      db.commit([check(mine!.name, mine!.fence), sql('INSERT INTO t VALUES (2)')]),
    ]).then(() => order.push('group committed'));
    await new Promise((r) => setTimeout(r, 300)); // expired, the group in its pause
    const taken = await leases.acquire('w2', ['puppet:1'], 60_000);
    order.push('taken over');
    await group;
    expect(taken).toEqual([{ name: 'puppet:1', fence: 2 }]);
    expect(order).toEqual(['group committed', 'taken over']);
    await expect(
      db.commit([check(mine!.name, mine!.fence), sql('INSERT INTO t VALUES (3)')]),
    ).rejects.toMatchObject({
      code: FENCED_SQLSTATE,
    });
    expect((await db.query('SELECT n FROM t ORDER BY n')).map((r) => r.n)).toEqual([1, 2]);
  });
});
