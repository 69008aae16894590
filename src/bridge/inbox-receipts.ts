/**
 * The delivery receipts a puppet owes for incoming messages the local network took. Each is kept on
 * its inbox row (`receipt`, written in the delivery's own commit: no row of its own), sent whenever
 * the puppet is connected, and cleared once the gateway acknowledges it: a moment later, many in
 * one write. A crash before that write sends it again, which is harmless (the gateway stores a
 * receipt per message, and the sender's state only moves forward).
 *
 * What the delivery hands over (`kick(owed)`) is sent without reading the store; on a new
 * connection, and when another process announces new ones (several workers), everything owed is
 * read, less what is in flight or acknowledged and not yet written.
 */
import type { ReceiptStanza } from '../protocol/stanza/index.js';
import type { OwedReceipt } from '../store/repositories.js';
import type { PuppetContext } from './context.js';
import { MOVE_DELAY_MS } from './outbox-marks.js';
import { LazyMap, LazySet } from '../util/lazy-map.js';

/** Owed receipts read per query. */
const READ_BATCH = 500;
/** Acknowledged receipts written at once when this many wait. */
const MAX_WAITING = 500;

/** Where a delivery receipt goes: the sender's device, or a group naming the sender's device. */
export interface ReceiptTarget {
  readonly to: string;
  readonly participant?: string | undefined;
}

export const encodeTarget = (t: ReceiptTarget): string =>
  JSON.stringify(t.participant === undefined ? { to: t.to } : { to: t.to, participant: t.participant });

export class InboxReceipts {
  private running = false;
  private again = false;
  private stopped = false;
  /** Read everything owed in the next pass (a new connection, or another process's notice). */
  private readAll = false;
  /** Bumped by each new connection: a pass of an older one stops. */
  private epoch = 0;
  /** Handed over by the delivery, not sent yet. */
  private handed: OwedReceipt[] = [];
  /** Written on this connection and not acknowledged: inbox rows by receipted message id. */
  private readonly inFlight = new LazyMap<string, number[]>();
  /** Acknowledged, the clearing not written yet (the write in progress included). */
  private readonly acked = new LazySet<number>();
  /** Of those, the ones being written now. */
  private readonly clearing = new LazySet<number>();
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly ctx: Pick<PuppetContext, 'store' | 'puppet' | 'connection' | 'log' | 'nowSeconds'>,
  ) {}

  /** A new connection: nothing written on the old one counts; everything owed goes out again. */
  onConnected(): void {
    this.epoch++;
    this.inFlight.clear();
    this.handed = [];
    this.kick();
  }

  stop(): void {
    this.stopped = true;
  }

  /** Sends `owed` (handed over by the delivery), or with none, everything owed. */
  kick(owed?: OwedReceipt): void {
    if (this.stopped) return;
    if (owed) this.handed.push(owed);
    else this.readAll = true;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.passes();
  }

  private async passes(): Promise<void> {
    try {
      do {
        this.again = false;
        try {
          await this.pass();
        } catch (err) {
          this.ctx.log?.warn({ err: (err as Error).message }, 'delivery receipts not sent');
        }
      } while (this.again && !this.stopped);
    } finally {
      this.running = false;
    }
  }

  private async pass(): Promise<void> {
    const epoch = this.epoch;
    const going = () => this.ctx.connection.isConnected && !this.stopped && epoch === this.epoch;
    if (!going()) return;
    if (this.readAll) {
      this.readAll = false;
      this.handed = []; // read again below
      for (let after = 0; ;) {
        const owed = await this.ctx.store.inbox.receiptsOwed(this.ctx.puppet.id, after, READ_BATCH);
        for (const r of owed) {
          if (!going()) return;
          this.send(r);
        }
        if (owed.length < READ_BATCH) break;
        after = owed[owed.length - 1]!.seq;
      }
    }
    const handed = this.handed;
    this.handed = [];
    for (const r of handed) {
      if (!going()) return;
      this.send(r);
    }
  }

  private send(r: OwedReceipt): void {
    const rows = this.inFlight.get(r.messageId);
    if (rows?.includes(r.seq) === true || this.acked.has(r.seq)) return;
    let target: ReceiptTarget;
    try {
      target = JSON.parse(r.receipt) as ReceiptTarget;
    } catch {
      this.ctx.log?.warn({ id: r.messageId }, 'a delivery receipt owed names no target: dropped');
      this.mark(r.seq);
      return;
    }
    const stanza: ReceiptStanza = {
      kind: 'receipt',
      id: r.messageId,
      to: target.to,
      t: this.ctx.nowSeconds(),
      ...(target.participant ? { participant: target.participant } : {}),
    };
    if (rows) rows.push(r.seq);
    else this.inFlight.set(r.messageId, [r.seq]);
    this.ctx.connection.send(stanza);
  }

  /** `<ack class="receipt">` for `messageId`: its receipts are stored by the gateway. */
  onAck(messageId: string): void {
    const rows = this.inFlight.get(messageId);
    if (!rows) return;
    this.inFlight.delete(messageId);
    for (const seq of rows) this.mark(seq);
  }

  private mark(seq: number): void {
    this.acked.add(seq);
    if (this.acked.size >= MAX_WAITING) void this.flush();
    else if (this.timer === undefined) {
      this.timer = setTimeout(() => void this.flush(), MOVE_DELAY_MS);
      this.timer.unref();
    }
  }

  /** Writes every acknowledged receipt's clearing; resolves once it (and any before it) is written. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const seqs = [...this.acked].filter((s) => !this.clearing.has(s));
    if (seqs.length === 0) return this.writing;
    for (const s of seqs) this.clearing.add(s);
    this.writing = this.writing
      .then(() => this.ctx.store.inbox.receiptsSent(seqs))
      .catch((err: unknown) => {
        // Not lost: the rows still owe them, and the next connection sends them again.
        this.ctx.log?.warn(
          { err: (err as Error).message, receipts: seqs.length },
          'sent receipts not written',
        );
      })
      .finally(() => {
        for (const s of seqs) {
          this.clearing.delete(s);
          this.acked.delete(s);
        }
      });
    return this.writing;
  }
}
