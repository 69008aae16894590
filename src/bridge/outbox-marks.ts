/**
 * The `sent` state of outbox entries, written a moment later and many at a time.
 *
 * An entry the gateway acknowledged is sent, and this process knows it at once (it reports it to
 * the adapter then). Writing it down is not what makes anything durable: the message is stored by
 * the gateway, and an entry a crash leaves `queued` is sent again under the same id, which the
 * gateway deduplicates (docs/PROTOCOL.md, 5.3). So the write waits `SENT_DELAY_MS`: the recipient's
 * delivery receipt usually comes first, and its one write (`delivered`, the payload cleared) makes
 * this one unneeded; what is left is written in one transaction. A receipt entry (ours, for a
 * message we received) has nothing after its ack: its marks are only batched.
 *
 * Until written, an entry still reads `queued` in the store; the sender skips it in its passes
 * (it is not re-read: `writtenUpTo`), writes the marks before it reads the queue after a reconnect,
 * and `expire()` leaves it alone.
 */
import type { Logger } from '../observability/logger.js';
import type { OutboxRepository } from '../store/repositories.js';

/** How long a `sent` mark waits for a later state that makes it unneeded. */
export const SENT_DELAY_MS = 250;
/** Marks written at once when this many wait. */
const MAX_WAITING = 500;

export class SentMarks {
  private readonly waiting = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  /** The last write, so that `flush()` resolves once everything asked before it is written. */
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly outbox: Pick<OutboxRepository, 'advanceAllSent'>,
    private readonly log?: Logger,
    private readonly delayMs = SENT_DELAY_MS,
  ) {}

  /** The entry was acknowledged: its `sent` state is written soon, unless a later one comes first. */
  add(id: string): void {
    this.waiting.add(id);
    if (this.waiting.size >= MAX_WAITING) {
      void this.flush();
      return;
    }
    if (this.timer === undefined) {
      this.timer = setTimeout(() => void this.flush(), this.delayMs);
      this.timer.unref();
    }
  }

  /** A later state is being written for the entry (which moves it past `sent` by itself). */
  settle(id: string): void {
    this.waiting.delete(id);
  }

  /** Whether the entry's `sent` state is known here but not written yet. */
  has(id: string): boolean {
    return this.waiting.has(id);
  }

  get size(): number {
    return this.waiting.size;
  }

  /** Writes every waiting mark; resolves once they (and any earlier ones) are written. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.waiting.size === 0) return this.writing;
    const ids = [...this.waiting];
    this.waiting.clear();
    this.writing = this.writing.then(() =>
      this.outbox.advanceAllSent(ids).catch((err: unknown) => {
        // Not lost: the entries read `queued` and go out again under their ids (deduplicated).
        this.log?.warn({ err: (err as Error).message, entries: ids.length }, 'sent states not written');
      }),
    );
    return this.writing;
  }
}
