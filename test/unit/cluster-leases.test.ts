/**
 * Leases with fencing tokens (src/cluster/leases.ts) on a real PostgreSQL: who may take a lease and
 * when (by the database's clock), how the fence moves, renewal only by the current holder at the
 * current fence, release, and a fenced write (a puppet's Signal/inbox commit through the session
 * gate) refused once the lease has moved on, with nothing of it landing.
 */
import { bridgeMigrations } from '../../app/migrations.js';
import { SessionWriteGate } from '../../src/bridge/session-gate.js';
import { Leases } from '../../src/cluster/leases.js';
import { PostgresSignalBackend } from '../../src/signal/index.js';
import { openPostgresStore, type PostgresStore } from '../../src/store/postgres-store.js';
import { PgSignalTables } from '../../src/store/signal-store-postgres.js';
import { usePostgres } from '../support/postgres.js';

const pg = usePostgres();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const requireLease = (name: string, fence: number) => ({
  text: 'SELECT interop_require_lease($1, $2)',
  values: [name, fence],
});

describe('leases on PostgreSQL', () => {
  let store: PostgresStore;
  let leases: Leases;

  beforeEach(async () => {
    store = await openPostgresStore({
      url: await pg().createDatabase(),
      migrations: bridgeMigrations('postgres'),
    });
    leases = new Leases(store.pg);
  });
  afterEach(() => store.close());

  /** A puppet with throwaway keys: the leases and fences are what these tests look at. */
  const newPuppet = (localId: string, n: number) =>
    store.puppets.create({
      localId,
      network: 'matrix',
      accountId: `49151000000${String(n).padStart(2, '0')}`,
      deviceId: 1,
      registrationId: n,
      identityPublic: new Uint8Array(33),
      identityPrivate: new Uint8Array(32),
      noisePublic: new Uint8Array(32),
      noisePrivate: new Uint8Array(32),
    });

  it('gives a free lease to one holder at fence 1, and not to another while it is live', async () => {
    expect(await leases.acquire('w1', ['puppet:1'], 10_000)).toEqual([{ name: 'puppet:1', fence: 1 }]);
    expect(await leases.acquire('w2', ['puppet:1'], 10_000)).toEqual([]);
    // Not even the same holder takes it again while it holds it: renewal is how it keeps it.
    expect(await leases.acquire('w1', ['puppet:1'], 10_000)).toEqual([]);
    const [row] = await leases.list('puppet:');
    expect(row).toMatchObject({ name: 'puppet:1', holder: 'w1', fence: 1, live: true });
  });

  it('takes only free or expired leases, at most `limit`, and several holders racing get each lease once', async () => {
    const names = Array.from({ length: 40 }, (_, i) => `puppet:${i + 1}`);
    expect(await leases.acquire('w0', names.slice(0, 10), 10_000)).toHaveLength(10);
    const got = await Promise.all(['w1', 'w2', 'w3'].map((w) => leases.acquire(w, names, 10_000, 15)));
    const taken = got.flat().map((l) => l.name);
    expect(new Set(taken).size).toBe(taken.length); // nobody got one twice
    expect(taken.filter((n) => names.slice(0, 10).includes(n))).toEqual([]); // nor a live one
    expect(taken).toHaveLength(30); // every free one went
    for (const g of got) expect(g.length).toBeLessThanOrEqual(15);
  });

  it('expires by the database clock: once past, another holder takes it with the fence one higher', async () => {
    await leases.acquire('w1', ['puppet:7'], 300);
    expect(await leases.acquire('w2', ['puppet:7'], 10_000)).toEqual([]);
    await sleep(400);
    expect((await leases.list('puppet:7'))[0]).toMatchObject({ holder: 'w1', live: false });
    expect(await leases.acquire('w2', ['puppet:7'], 10_000)).toEqual([{ name: 'puppet:7', fence: 2 }]);
    // The old holder's renewal at its old fence is refused: it lost the lease.
    expect(await leases.renew('w1', [{ name: 'puppet:7', fence: 1 }], 10_000)).toEqual(new Set());
    expect((await leases.list('puppet:7'))[0]).toMatchObject({ holder: 'w2', fence: 2, live: true });
  });

  it('renews only for the holder at its fence and before expiry, several leases in one statement', async () => {
    const held = await leases.acquire('w1', ['puppet:1', 'puppet:2', 'worker:w1'], 400);
    await sleep(250);
    const renewed = await leases.renew('w1', held, 400);
    expect([...renewed].sort()).toEqual(['puppet:1', 'puppet:2', 'worker:w1']);
    await sleep(250); // past the first expiry, within the renewed one
    expect(await leases.acquire('w2', ['puppet:1'], 10_000)).toEqual([]);
    expect(await leases.renew('w2', held, 400)).toEqual(new Set()); // not the holder
    expect(await leases.renew('w1', [{ name: 'puppet:1', fence: 5 }], 400)).toEqual(new Set()); // not its fence
    await sleep(300);
    // Expired, though nobody took it: no renewal (the holder has dropped it locally by now).
    expect(await leases.renew('w1', held, 400)).toEqual(new Set());
    expect(await leases.countLive('worker:')).toBe(0);
  });

  it('release hands a lease over at once: the next holder gets it with the next fence', async () => {
    const held = await leases.acquire('w1', ['puppet:3', 'worker:w1'], 60_000);
    expect(await leases.countLive('worker:')).toBe(1);
    await leases.release('w2', ['puppet:3']); // not w2's to release
    expect(await leases.acquire('w2', ['puppet:3'], 60_000)).toEqual([]);
    await leases.release(
      'w1',
      held.map((l) => l.name),
    );
    expect(await leases.countLive('worker:')).toBe(0);
    expect(await leases.acquire('w2', ['puppet:3'], 60_000)).toEqual([{ name: 'puppet:3', fence: 2 }]);
    expect(await leases.renew('w1', held, 60_000)).toEqual(new Set());
  });

  it("a fenced transaction in flight holds up neither its holder's renewal (no wait, no deadlock) nor is held up by it", async () => {
    const names = Array.from({ length: 8 }, (_, i) => `puppet:${i + 1}`);
    const held = await leases.acquire('w1', names, 60_000);
    const started = Date.now();
    // Checks on several leases in one transaction (as a group commit holds them), a pause between
    // them, in another order than the renewal locks the rows in.
    const tx = store.pg.transact(async (query) => {
      for (const l of held.slice(4).reverse()) await query(requireLease(l.name, l.fence));
      await query({ text: 'SELECT pg_sleep(0.4)', values: [] });
      for (const l of held.slice(0, 4)) await query(requireLease(l.name, l.fence));
    });
    await sleep(150);
    expect((await leases.renew('w1', held, 60_000)).size).toBe(8);
    const renewedAfter = Date.now() - started;
    await tx;
    expect(renewedAfter).toBeLessThan(350); // it did not wait for the transaction's commit
    expect(Date.now() - started).toBeLessThan(900); // nor deadlock (detected after 1 s)
  });

  it('a takeover (the fence moving on) waits for a fenced transaction in flight under the old fence', async () => {
    const [mine] = await leases.acquire('w1', ['puppet:1'], 200);
    const order: string[] = [];
    const tx = store.pg
      .transact(async (query) => {
        await query(requireLease(mine!.name, mine!.fence));
        await query({ text: 'SELECT pg_sleep(0.5)', values: [] });
      })
      .then(() => order.push('fenced write committed'));
    await sleep(300); // expired at the database, the transaction still open
    expect(await leases.acquire('w2', ['puppet:1'], 60_000)).toEqual([{ name: 'puppet:1', fence: 2 }]);
    order.push('taken over');
    await tx;
    expect(order).toEqual(['fenced write committed', 'taken over']);
  });

  it("refuses a stale holder's fenced write (Signal session and inbox row), landing nothing of it", async () => {
    const puppet = await newPuppet('@alice:hs', 1);
    const name = `puppet:${puppet.id}`;
    const [mine] = await leases.acquire('w1', [name], 200);
    let held = mine!;
    const gate = new SessionWriteGate(new PostgresSignalBackend(store.pg, puppet.id), store, () => held);
    const inboxRow = (id: string) => (w: Parameters<NonNullable<Parameters<typeof gate.commit>[0]>>[0]) =>
      w.recordInbox({
        puppetId: puppet.id,
        sender: 'bob@wa',
        messageId: id,
        portalId: null,
        payload: new Uint8Array([1]),
      });
    const sessions = async () =>
      (await store.pg.query('SELECT address FROM signal_sessions WHERE puppet_id = $1', [puppet.id])).map(
        (r) => r.address as string,
      );
    const inbox = async () =>
      (
        await store.pg.query('SELECT message_id FROM inbox WHERE puppet_id = $1 ORDER BY message_id', [
          puppet.id,
        ])
      ).map((r) => r.message_id as string);

    // While it holds the lease, the commit lands.
    gate.hold();
    gate.deleteSession('bob@wa.1');
    await gate.commit(inboxRow('m1'));
    expect(await inbox()).toEqual(['m1']);

    // The lease expires and another worker takes it: the old holder's commit is refused.
    await sleep(300);
    const [theirs] = await leases.acquire('w2', [name], 60_000);
    expect(theirs!.fence).toBe(held.fence + 1);
    await store.pg.exec({
      text: `INSERT INTO signal_sessions (puppet_id, address, record, updated_at) VALUES ($1, 'carol@wa.1', $2, 0)`,
      values: [puppet.id, Buffer.from([9])],
    });
    gate.hold();
    gate.deleteSession('carol@wa.1');
    await expect(gate.commit(inboxRow('m2'))).rejects.toMatchObject({ code: 'store_fenced' });
    expect(await inbox()).toEqual(['m1']); // no inbox row
    expect(await sessions()).toEqual(['carol@wa.1']); // the session was not deleted

    // The new holder's fence works.
    held = theirs!;
    gate.hold();
    gate.deleteSession('carol@wa.1');
    await gate.commit(inboxRow('m3'));
    expect(await inbox()).toEqual(['m1', 'm3']);
    expect(await sessions()).toEqual([]);
  });

  it("drops a stale holder's loose session writes (an outgoing encryption's), keeping the new holder's", async () => {
    const puppet = await newPuppet('@bob:hs', 2);
    const name = `puppet:${puppet.id}`;
    const [old] = await leases.acquire('w1', [name], 200);
    const stale = new PgSignalTables(store.pg, puppet.id, Date.now, () => old);
    const records = async () =>
      (
        await store.pg.query(
          'SELECT address, record FROM signal_sessions WHERE puppet_id = $1 ORDER BY address',
          [puppet.id],
        )
      ).map((r) => `${r.address as string}=${(r.record as Buffer)[0]}`);
    stale.putSession('dave@wa.1', new Uint8Array([1]));
    stale.putSession('erin@wa.1', new Uint8Array([1]));
    await store.pg.settled();
    expect(await records()).toEqual(['dave@wa.1=1', 'erin@wa.1=1']); // held: written

    await sleep(300);
    const [current] = await leases.acquire('w2', [name], 60_000);
    const owner = new PgSignalTables(store.pg, puppet.id, Date.now, () => current);
    owner.putSession('dave@wa.1', new Uint8Array([2]));
    stale.putSession('dave@wa.1', new Uint8Array([3])); // the old holder, after the new one
    stale.deleteSession('erin@wa.1');
    await store.pg.settled();
    expect(await records()).toEqual(['dave@wa.1=2', 'erin@wa.1=1']);
    owner.deleteSession('erin@wa.1');
    await store.pg.settled();
    expect(await records()).toEqual(['dave@wa.1=2']);
  });

  it("drops a stale holder's prekey, key counter and identity writes, keeping the new holder's", async () => {
    const puppet = await newPuppet('@carol:hs', 3);
    const name = `puppet:${puppet.id}`;
    const [old] = await leases.acquire('w1', [name], 200);
    const stale = new PgSignalTables(store.pg, puppet.id, Date.now, () => old);
    const key = (keyId: number, b: number) => ({
      keyId,
      publicKey: new Uint8Array([b]),
      privateKey: new Uint8Array([b]),
      uploaded: false,
    });
    const state = async () => {
      const own = await stale.loadOwn();
      const ids = await store.pg.query(
        'SELECT remote_user, trust FROM signal_identities WHERE puppet_id = $1',
        [puppet.id],
      );
      return {
        preKeys: own.preKeys.map((k) => `${k.keyId}=${k.publicKey[0]}${k.uploaded ? ' up' : ''}`).sort(),
        signed: own.signedPreKeys.map((k) => k.keyId),
        counter: own.lastPreKeyId,
        identities: ids.map((r) => `${r.remote_user as string}=${r.trust as string}`),
      };
    };
    stale.putPreKey(key(1, 1));
    stale.setCounters(1, 0);
    await store.pg.settled();
    expect(await state()).toEqual({ preKeys: ['1=1'], signed: [], counter: 1, identities: [] });

    await sleep(300);
    const [current] = await leases.acquire('w2', [name], 60_000);
    const owner = new PgSignalTables(store.pg, puppet.id, Date.now, () => current);
    owner.putPreKey(key(2, 2));
    owner.setCounters(2, 0);
    // The old holder, after the new one took over: none of it lands.
    stale.putPreKey(key(2, 9));
    stale.putPreKey(key(3, 9));
    stale.removePreKey(1);
    stale.markPreKeysUploaded([1, 2]);
    stale.setCounters(3, 1);
    stale.putSignedPreKey({ ...key(1, 9), signature: new Uint8Array(64), createdAt: 1 });
    stale.putRemoteIdentity({
      address: 'dave@wa',
      identityKey: new Uint8Array(33),
      trust: 'trusted',
      firstSeen: 1,
      changedAt: 1,
    });
    await store.pg.settled();
    expect(await state()).toEqual({ preKeys: ['1=1', '2=2'], signed: [], counter: 2, identities: [] });
    owner.markPreKeysUploaded([2]);
    await store.pg.settled();
    expect((await state()).preKeys).toEqual(['1=1', '2=2 up']);
  });
});
