import path from 'node:path';
import { SentMarks } from '../../src/bridge/outbox-marks.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite-store.js';
import { tempDir } from '../support/tmp.js';
import { until } from '../support/wait.js';

describe('the sent states written later, many at a time (outbox-marks)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: SqliteStore;
  let writes: string[][];
  let moved: (readonly [string, 'delivered' | 'read'])[][];

  beforeEach(async () => {
    tmp = tempDir();
    store = openSqliteStore(path.join(tmp.dir, 'bridge.db'));
    const p = await store.puppets.create({
      localId: '@a:example.org',
      network: 'matrix',
      accountId: 'acct',
      deviceId: 1,
      registrationId: 1,
      identityPublic: new Uint8Array(33).fill(1),
      identityPrivate: new Uint8Array(32).fill(1),
      noisePublic: new Uint8Array(32).fill(2),
      noisePrivate: new Uint8Array(32).fill(3),
    });
    const portal = await store.portals.ensure(p.id, 'b@wa.interop');
    for (let i = 0; i < 600; i++) {
      await store.outbox.enqueue({
        id: `m${i}`,
        puppetId: p.id,
        portalId: portal.id,
        kind: 'text',
        payload: new Uint8Array([1]),
      });
    }
    writes = [];
    moved = [];
  });
  afterEach(() => {
    store.close();
    tmp.cleanup();
  });

  /** The store, with each call of the batch write recorded. */
  const counted = () => ({
    advanceAllSent: async (ids: readonly string[]) => {
      writes.push([...ids]);
      await store.outbox.advanceAllSent(ids);
    },
    advanceAll: async (moves: readonly (readonly [string, 'delivered' | 'read'])[]) => {
      moved.push([...moves]);
      await store.outbox.advanceAll(moves);
    },
  });
  const state = async (id: string) => (await store.outbox.get(id))!.state;

  it('writes the marks of one burst in one call after the delay, and none that a later state settled', async () => {
    const marks = new SentMarks(counted(), undefined, 30);
    marks.add('m1');
    marks.add('m2');
    marks.add('m3');
    marks.settle('m2'); // its receipt came first: written as delivered by the caller
    await store.outbox.advance('m2', 'delivered');
    expect(marks.has('m1') && !marks.has('m2')).toBe(true);
    expect(marks.size).toBe(2);
    expect(await state('m1')).toBe('queued');
    await until(async () => (await state('m3')) === 'sent', 'the marks written');
    expect(writes).toEqual([['m1', 'm3']]);
    expect([await state('m1'), await state('m2')]).toEqual(['sent', 'delivered']);
    expect(marks.size).toBe(0);
  });

  it('writes at once when many wait, and flush() resolves once everything asked is written', async () => {
    const marks = new SentMarks(counted(), undefined, 60_000);
    for (let i = 0; i < 500; i++) marks.add(`m${i}`);
    await marks.flush(); // the one started by the 500th
    expect(writes.map((w) => w.length)).toEqual([500]);
    marks.add('m500');
    await marks.flush();
    expect(writes.map((w) => w.length)).toEqual([500, 1]);
    expect(await store.outbox.countQueued()).toBe(600 - 501);
    await marks.flush(); // nothing waits: no write
    expect(writes.length).toBe(2);
  });

  it('a failed write loses nothing: the entries stay queued (to be sent again under their ids)', async () => {
    const warned: unknown[] = [];
    const log = { warn: (o: unknown) => warned.push(o) } as unknown as ConstructorParameters<
      typeof SentMarks
    >[1];
    const marks = new SentMarks(
      {
        advanceAllSent: () => Promise.reject(new Error('disk full')),
        advanceAll: () => Promise.reject(new Error('disk full')),
      },
      log,
      60_000,
    );
    marks.add('m1');
    await marks.flush();
    expect(await state('m1')).toBe('queued');
    expect(warned).toEqual([{ err: 'disk full', entries: 1 }]);
    // The chain goes on after a failure.
    const ok = new SentMarks(counted(), undefined, 60_000);
    ok.add('m1');
    await ok.flush();
    expect(await state('m1')).toBe('sent');
  });

  it("writes the receipts' states of a moment in one commit, and resolves each once written", async () => {
    const marks = new SentMarks(counted(), undefined, 60_000);
    marks.add('m1'); // acknowledged: its `sent` state waits
    const written = [
      marks.advance('m1', 'delivered'), // ... and a receipt came: only `delivered` is written
      marks.advance('m2', 'read'),
      marks.advance('m3', 'delivered'),
      marks.advance('m3', 'read'),
      marks.advance('m2', 'delivered'), // behind `read`: not a step back
    ];
    expect(marks.has('m3')).toBe(true);
    expect(await state('m3')).toBe('queued'); // not at once
    await Promise.all(written);
    expect(moved).toEqual([
      [
        ['m1', 'delivered'],
        ['m2', 'read'],
        ['m3', 'read'],
      ],
    ]);
    expect([await state('m1'), await state('m2'), await state('m3')]).toEqual(['delivered', 'read', 'read']);
    expect(marks.has('m1') || marks.has('m3')).toBe(false);
    await marks.flush();
    expect(writes).toEqual([]); // m1's `sent` went with its receipt
    // Later receipts: a commit of their own.
    await marks.advance('m4', 'delivered');
    expect(moved.length).toBe(2);
  });

  it("a failed write of receipts' states rejects (the receipts are not acknowledged) and keeps nothing back", async () => {
    let fail = true;
    const marks = new SentMarks(
      {
        advanceAllSent: async () => undefined,
        advanceAll: (moves) => (fail ? Promise.reject(new Error('disk full')) : store.outbox.advanceAll(moves)),
      },
      undefined,
      60_000,
    );
    await expect(marks.advance('m1', 'delivered')).rejects.toThrow('disk full');
    expect(await state('m1')).toBe('queued');
    expect(marks.has('m1')).toBe(false); // the gateway brings the receipt again
    fail = false;
    await marks.advance('m1', 'delivered');
    expect(await state('m1')).toBe('delivered');
  });
});
