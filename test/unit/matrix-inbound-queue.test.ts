/**
 * The Matrix adapter's inbound queue on a real SQLite store: events handled in order per room, and
 * the done marks of events whose handling may be repeated written together, later; the rows a
 * transaction recorded handed over in memory (no read of the store), and a room read from the store
 * again once memory cannot know it holds all of it (a failed event), without handling any twice.
 */
import path from 'node:path';
import { InboundQueue } from '../../adapters/matrix/inbound-queue.js';
import { InFlight } from '../../adapters/matrix/in-flight.js';
import type { InboundRow } from '../../adapters/matrix/store.js';
import { SqliteMatrixStore } from '../../adapters/matrix/sqlite-store.js';
import { openDatabase, type Db } from '../../src/store/database.js';
import { createLogger } from '../../src/observability/logger.js';
import { bridgeMigrations } from '../../app/migrations.js';
import { tempDir } from '../support/tmp.js';
import { until } from '../support/wait.js';

const ROOM = '!portal:example.org';

describe('the inbound queue (adapters/matrix/inbound-queue.ts)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let db: Db;
  let store: SqliteMatrixStore;
  let marked: number[][];
  let handled: string[];

  beforeEach(() => {
    tmp = tempDir();
    db = openDatabase(path.join(tmp.dir, 'bridge.db'), { migrations: bridgeMigrations() });
    store = new SqliteMatrixStore(db);
    marked = [];
    handled = [];
  });
  afterEach(() => {
    db.close();
    tmp.cleanup();
  });

  let reads: number;
  const queue = (replayable: (row: InboundRow) => boolean, dead = false, failOnce?: string) => {
    reads = 0;
    const failed = new Set<string>();
    const log = createLogger({ level: 'silent' });
    const inFlight = new InFlight(log);
    const q = new InboundQueue({
      store: {
        pendingInboundRooms: () => store.pendingInboundRooms(),
        pendingInboundOf: (roomId, limit) => {
          reads++;
          return store.pendingInboundOf(roomId, limit);
        },
        markInboundAttempt: (seq, error, giveUp) => store.markInboundAttempt(seq, error, giveUp),
        markInboundDone: async (seqs) => {
          if (dead) throw new Error('the process died before this write');
          marked.push([...seqs]);
          await store.markInboundDone(seqs);
        },
      },
      handle: async (row) => {
        if (row.key === failOnce && !failed.has(row.key)) {
          failed.add(row.key);
          throw new Error('the homeserver is away');
        }
        handled.push(row.key);
        return replayable(row);
      },
      rooms: { notice: async () => '$notice' },
      inFlight,
      log,
      eventRetryMs: 50,
    });
    return { q, inFlight };
  };
  const record = (keys: string[]) =>
    store.recordTransaction(
      keys.join(','),
      keys.map((key) => ({ key, roomId: ROOM, kind: 'event' as const, payload: { key } })),
    );
  const state = async (key: string) => (await store.inboundState(key))?.state;

  it('writes the done marks of events that may be handled again in one commit, and handles each once', async () => {
    const { q, inFlight } = queue((row) => row.key !== '$command');
    await record(['$m1', '$m2', '$command', '$m3']);
    q.start();
    await until(async () => (await state('$m3')) === 'done', 'every event done');
    // The command's mark went at once (a second handling would answer it twice); the messages'
    // marks waited for the end of the room's run and went together.
    expect(handled).toEqual(['$m1', '$m2', '$command', '$m3']);
    const seq = async (key: string) => (await store.inboundState(key))!.seq;
    expect(marked).toEqual([[await seq('$command')], [await seq('$m1'), await seq('$m2'), await seq('$m3')]]);
    // Read again (a new transaction recorded without handing its rows over): nothing handled twice.
    await record(['$m4']);
    q.unheard();
    await until(async () => (await state('$m4')) === 'done', '$m4 done');
    expect(handled).toEqual(['$m1', '$m2', '$command', '$m3', '$m4']);
    q.stop();
    await inFlight.settled();
  });

  it('handles the rows handed over in memory without reading the store, in order, each once', async () => {
    const { q, inFlight } = queue(() => true, false, '$m3');
    q.start();
    await until(async () => reads === 0 && handled.length === 0, 'started');
    const recordHanded = (keys: string[]) =>
      store.recordTransaction(
        keys.join(','),
        keys.map((key) => ({ key, roomId: ROOM, kind: 'event' as const, payload: { key } })),
        (rows) => q.recorded(rows),
      );
    await recordHanded(['$m1', '$m2']);
    q.kick();
    await until(async () => (await state('$m2')) === 'done', '$m2 done');
    expect([handled, reads]).toEqual([['$m1', '$m2'], 0]);
    // $m3 fails once: the room is read from the store when it is tried again, $m4 and $m5 after it
    // (handed over meanwhile, left to that read), and nothing handled before comes again.
    await recordHanded(['$m3', '$m4']);
    q.kick();
    await recordHanded(['$m5']);
    q.kick();
    await until(async () => (await state('$m5')) === 'done', '$m5 done');
    expect(handled).toEqual(['$m1', '$m2', '$m3', '$m4', '$m5']);
    expect(reads).toBeGreaterThan(0);
    q.stop();
    await inFlight.settled();
    expect(await store.pendingInboundRooms()).toEqual([]);
  });

  it('rows a read of the store found before they were handed over are handled once', async () => {
    // PostgreSQL: the commit is visible to a read before the recorder's hand-over runs.
    const { q, inFlight } = queue(() => true);
    q.start();
    const rows: InboundRow[] = [];
    await store.recordTransaction('1', [{ key: '$m1', roomId: ROOM, kind: 'event', payload: {} }], (r) =>
      rows.push(...r),
    );
    q.unheard();
    await until(async () => handled.length === 1, '$m1 read and handled');
    q.recorded(rows);
    await store.recordTransaction('2', [{ key: '$m2', roomId: ROOM, kind: 'event', payload: {} }], (r) =>
      q.recorded(r),
    );
    q.kick();
    await until(async () => (await state('$m2')) === 'done', '$m2 done');
    expect(handled).toEqual(['$m1', '$m2']);
    q.stop();
    await inFlight.settled();
  });

  it('what a crash left unmarked is handed over again, once', async () => {
    const first = queue(() => true);
    await record(['$m1', '$m2']);
    first.q.start();
    await until(async () => handled.length === 2, 'both handled');
    first.q.stop();
    await first.inFlight.settled();
    expect([await state('$m1'), await state('$m2')]).toEqual(['done', 'done']);

    // A crash between handling and the mark (no write lands): the next run handles it again.
    await record(['$m3']);
    const crashed = queue(() => true, true);
    crashed.q.start();
    await until(async () => handled.includes('$m3'), '$m3 handled');
    crashed.q.stop();
    await crashed.inFlight.settled();
    expect(await state('$m3')).toBe('pending');
    const next = queue(() => true);
    next.q.start();
    await until(async () => (await state('$m3')) === 'done', '$m3 handled again');
    expect(handled.filter((k) => k === '$m3')).toHaveLength(2);
    next.q.stop();
    await next.inFlight.settled();
  });
});
