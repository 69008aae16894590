/**
 * The read-back of portals after a homeserver recovery (adapters/matrix/catch-up.ts): its window
 * and its ordering rules, with the room's timeline and the inbound table held in memory. The real
 * homeserver case is in test/integration/matrix-faults.test.ts.
 */
import { CatchUp, type CatchUpContext } from '../../adapters/matrix/catch-up.js';
import type { InboundRow, MatrixRoom, NewInbound } from '../../adapters/matrix/store.js';
import { until } from '../support/wait.js';

const ROOM = '!portal:example.org';
const ALICE = '@alice:example.org';
const portal: MatrixRoom = {
  roomId: ROOM,
  kind: 'portal',
  localUser: ALICE,
  remoteJid: '4915112345678@wa.interop',
  encryptionTold: false,
};

/** Alice's events in the room, oldest first, as the homeserver holds them. */
const event = (id: string, ageMs = 100) => ({
  event_id: id,
  room_id: ROOM,
  sender: ALICE,
  type: 'm.room.message',
  content: { msgtype: 'm.text', body: id },
  origin_server_ts: Date.now() - ageMs,
  unsigned: { age: ageMs },
});

function setUp(timeline: Record<string, unknown>[], failReads = false) {
  const inbound = new Map<string, { seq: number; state: string; attempts: number; error: null }>();
  let seq = 0;
  let kicks = 0;
  const record = async (_txn: string, events: readonly NewInbound[]) => {
    let fresh = 0;
    for (const e of events)
      if (!inbound.has(e.key)) {
        inbound.set(e.key, { seq: ++seq, state: 'pending', attempts: 0, error: null });
        fresh++;
      }
    return { newTransaction: true, newEvents: fresh };
  };
  const context: CatchUpContext = {
    store: {
      room: async (id) => (id === ROOM ? portal : undefined),
      portalPage: async (after) => (after < ROOM ? [portal] : []),
      inboundState: async (key) => inbound.get(key),
      recordTransaction: record,
    },
    reader: {
      doRequest: async () => {
        if (failReads) throw new Error('connect ECONNREFUSED');
        return { chunk: [...timeline].reverse() };
      },
    },
    readerOf: () => '@wa_4915112345678:example.org',
    kick: () => void kicks++,
    track: (work) => work,
    windowMs: 50,
  };
  const rowOf = (e: Record<string, unknown>): InboundRow => {
    const id = e['event_id'] as string;
    return { seq: inbound.get(id)!.seq, key: id, roomId: ROOM, kind: 'event', payload: e, attempts: 0 };
  };
  return { catchUp: new CatchUp(context), inbound, record, rowOf, kicks: () => kicks };
}

test('an event the homeserver never sent is handled before the next one, and a batch keeps the room’s order', async () => {
  const [a, lost, b, c] = ['$a', '$lost', '$b', '$c'].map((id) => event(id));
  const { catchUp, record, rowOf, inbound } = setUp([a!, lost!, b!, c!]);
  catchUp.openWindow();
  await record(
    '1',
    [a!].map((e) => ({ key: e.event_id, roomId: ROOM, kind: 'event' as const, payload: e })),
  );
  // $c was recorded before $b (a retry put $b later): the batch comes back in seq order.
  await record(
    '3',
    [c!].map((e) => ({ key: e.event_id, roomId: ROOM, kind: 'event' as const, payload: e })),
  );
  await record(
    '2',
    [b!].map((e) => ({ key: e.event_id, roomId: ROOM, kind: 'event' as const, payload: e })),
  );
  const rows = await catchUp.expand([rowOf(a!), rowOf(c!), rowOf(b!)]);
  expect(rows.map((r) => r.key)).toEqual(['$a', '$lost', '$b', '$c']);
  expect(inbound.get('$lost')?.state).toBe('pending');
  catchUp.stop();
});

test('fresh transactions open no window; a backlog opens one, which ends with a sweep of every portal', async () => {
  const lost = event('$quiet', 100);
  const { catchUp, inbound, kicks } = setUp([lost]);
  catchUp.sawTransaction([{ kind: 'event', payload: event('$x', 100) }]);
  expect(catchUp.open).toBe(false);
  expect(await catchUp.expand([])).toEqual([]);
  catchUp.sawTransaction([{ kind: 'event', payload: event('$old', 5_000) }]);
  expect(catchUp.open).toBe(true);
  await until(() => !catchUp.open, 'the window closed');
  expect(catchUp.swept).toBe(1);
  expect(inbound.get('$quiet')?.state).toBe('pending');
  expect(kicks()).toBe(1);
  catchUp.stop();
});

test('a room that cannot be read back leaves its batch as it is', async () => {
  const a = event('$a');
  const { catchUp, record, rowOf } = setUp([a], true);
  catchUp.openWindow();
  await record('1', [{ key: '$a', roomId: ROOM, kind: 'event', payload: a }]);
  const batch = [rowOf(a)];
  expect(await catchUp.expand(batch)).toEqual(batch);
  catchUp.stop();
});
