/**
 * What the next outbox pass (outbox.ts) has to send. After a (re)connect, a retry or a kick that
 * names no portal: every portal, read from the store. Else only the portals kicked since the last
 * pass (`kick(portal)`: the submit or the inbox delivery that wrote an entry knows its portal), each
 * read as a range of the queued index after what the connection wrote, or not read at all when
 * every writer since the last pass handed over the entries it committed (SQLite gives the row back
 * in the unit) and they follow on from what the connection wrote.
 */
import type { OutboxEntry } from '../store/repositories.js';
import { LazyMap } from '../util/lazy-map.js';

/** A kicked portal and the entries handed over for it; null: a kick came without them, read it. */
export type KickedPortal = readonly [portalId: number, handed: OutboxEntry[] | null];

export class OutboxKicks {
  #everything = true;
  /** Kicked portals in the order of their first kick; a puppet's table is made at its first kick. */
  readonly #portals = new LazyMap<number, OutboxEntry[] | null>();

  kick(portalId?: number, written?: readonly OutboxEntry[]): void {
    if (portalId === undefined) {
      this.#everything = true;
      return;
    }
    const before = this.#portals.get(portalId);
    if (written === undefined || written.length === 0 || before === null) this.#portals.set(portalId, null);
    else if (before === undefined) this.#portals.set(portalId, [...written]);
    else before.push(...written);
  }

  /** Takes what the pass starting now sends: `everything`, or the kicked portals. */
  take(): 'everything' | KickedPortal[] {
    const portals = [...this.#portals];
    this.#portals.clear();
    if (this.#everything) {
      this.#everything = false;
      return 'everything';
    }
    return portals;
  }
}

/**
 * The handed entries to send as they are: the ones after `after` (what the connection wrote in
 * the portal; a pass that read the portal meanwhile may have written some), if they follow on from
 * it without a gap. Undefined: some writer did not hand its entry over, so the portal is read.
 */
export function followingOn(handed: readonly OutboxEntry[], after: number): OutboxEntry[] | undefined {
  const pending = handed.filter((e) => e.seq > after).sort((a, b) => a.seq - b.seq);
  return pending.every((e, i) => e.seq === after + 1 + i) ? pending : undefined;
}
