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
 *
 * The `delivered` and `read` states a recipient's receipts bring (`advance`) are written
 * `MOVE_DELAY_MS` after the first of them, together: receipts come one by one, and a busy puppet's
 * share a commit. The receipt is acknowledged to the gateway only once its state is written (the
 * promise `advance` returns), so a crash before that brings it again; nobody sees the wait (the
 * adapter is told at once).
 */
import type { Logger } from '../observability/logger.js';
import type { OutboxRepository } from '../store/repositories.js';

/** How long a `sent` mark waits for a later state that makes it unneeded. */
export const SENT_DELAY_MS = 250;
/** How long a receipt's state waits for others to share its commit. */
export const MOVE_DELAY_MS = 20;
/** Marks written at once when this many wait. */
const MAX_WAITING = 500;

type Moved = 'delivered' | 'read';

export class SentMarks {
  private readonly waiting = new Set<string>();
  /** Receipts' states not written yet (the write in progress included). */
  private readonly moves = new Map<string, Moved>();
  /** The next write of `moves`, `moveDelayMs` after the first of them. */
  private soon: Promise<void> | undefined;
  /** The last write of receipts' states: they are written in order. */
  private moving: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  /** The last write, so that `flush()` resolves once everything asked before it is written. */
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly outbox: Pick<OutboxRepository, 'advanceAllSent' | 'advanceAll'>,
    private readonly log?: Logger,
    private readonly delayMs = SENT_DELAY_MS,
    private readonly moveDelayMs = MOVE_DELAY_MS,
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

  /**
   * A receipt moved the entry to `state`: written with the others of the next moment, in one commit.
   * Resolves once written; rejects when the write failed (the receipt is then not acknowledged).
   */
  advance(id: string, state: Moved): Promise<void> {
    this.waiting.delete(id);
    if (this.moves.get(id) !== 'read') this.moves.set(id, state);
    this.soon ??= new Promise<void>((resolve) => setTimeout(resolve, this.moveDelayMs)).then(() => {
      this.soon = undefined;
      return this.writeMoves();
    });
    return this.soon;
  }

  /** Whether the entry's state is known here but not written yet. */
  has(id: string): boolean {
    return this.waiting.has(id) || this.moves.has(id);
  }

  get size(): number {
    return this.waiting.size;
  }

  private writeMoves(): Promise<void> {
    const moves = [...this.moves];
    if (moves.length === 0) return this.moving;
    const write = this.moving
      .catch(() => undefined)
      .then(() => this.outbox.advanceAll(moves))
      .finally(() => {
        for (const [id, state] of moves) if (this.moves.get(id) === state) this.moves.delete(id);
      });
    this.moving = write;
    return write;
  }

  /** Writes every waiting mark; resolves once they (and any earlier ones) are written. */
  async flush(): Promise<void> {
    await this.writeMoves().catch((err: unknown) => {
      // Not lost: the receipts were not acknowledged, and the gateway brings them again.
      this.log?.warn({ err: (err as Error).message, entries: this.moves.size }, 'receipt states not written');
    });
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
