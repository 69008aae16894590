/**
 * What the next outbox pass sends (src/bridge/outbox-kicks.ts): everything after a (re)connect or
 * a kick without a portal; else the kicked portals, in order, with the entries their writers
 * handed over, sent as they are only when they follow on from what the connection wrote.
 */
import { followingOn, OutboxKicks } from '../../src/bridge/outbox-kicks.js';
import type { OutboxEntry } from '../../src/store/repositories.js';

const entry = (portalId: number, seq: number): OutboxEntry => ({
  id: `m-${portalId}-${seq}`,
  puppetId: 1,
  portalId,
  seq,
  kind: 'message',
  payload: new Uint8Array([1]),
  localId: null,
  state: 'queued',
  attempts: 0,
  error: null,
  createdAt: 0,
  updatedAt: 0,
});

describe('OutboxKicks', () => {
  it('starts with everything, then takes the kicked portals in order with what was handed over', () => {
    const kicks = new OutboxKicks();
    kicks.kick(7, [entry(7, 1)]);
    expect(kicks.take()).toBe('everything');
    expect(kicks.take()).toEqual([]);
    kicks.kick(7, [entry(7, 2)]);
    kicks.kick(3, [entry(3, 9)]);
    kicks.kick(7, [entry(7, 3)]);
    expect(kicks.take()).toEqual([
      [7, [entry(7, 2), entry(7, 3)]],
      [3, [entry(3, 9)]],
    ]);
    expect(kicks.take()).toEqual([]);
  });

  it('reads a portal once any of its kicks came without its entries, and everything after a kick without a portal', () => {
    const kicks = new OutboxKicks();
    kicks.take();
    kicks.kick(7, [entry(7, 2)]);
    kicks.kick(7);
    kicks.kick(7, [entry(7, 4)]);
    kicks.kick(5, []);
    expect(kicks.take()).toEqual([
      [7, null],
      [5, null],
    ]);
    kicks.kick(7, [entry(7, 5)]);
    kicks.kick();
    expect(kicks.take()).toBe('everything');
    expect(kicks.take()).toEqual([]);
  });
});

describe('followingOn', () => {
  it('gives the entries after what was written, in order, when there is no gap', () => {
    expect(followingOn([entry(1, 6), entry(1, 5)], 4)).toEqual([entry(1, 5), entry(1, 6)]);
    // A pass that read the portal meanwhile wrote 5 already.
    expect(followingOn([entry(1, 5), entry(1, 6)], 5)).toEqual([entry(1, 6)]);
    expect(followingOn([entry(1, 5)], 5)).toEqual([]);
  });

  it('gives nothing (read the portal) when an entry is missing before or between them', () => {
    expect(followingOn([entry(1, 6)], 4)).toBeUndefined();
    expect(followingOn([entry(1, 5), entry(1, 7)], 4)).toBeUndefined();
  });
});
