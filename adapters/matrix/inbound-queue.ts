/**
 * The durable queue of appservice events: recorded before their transaction is answered, handled
 * here in order per room and rooms in parallel, each event on its own. One that fails holds up only
 * its room: it is tried again after a backoff (the room's own timer wakes the pump), and after a
 * few attempts, or at once when no attempt can mend it, set aside with a notice.
 *
 * Where the events come from: the rows a transaction recorded are handed over in memory, in the
 * same synchronous step as their commit (`recorded`), and a room whose every pending event this
 * queue holds is run from memory without reading the database. A room is read from the database
 * ("from the store") instead when this process cannot know it has all of it: at the start, after a
 * failed or held event, after a batch that hit the read limit, and when events were recorded without
 * being handed over (the catch-up: `unheard`). Entering that state drops
 * what memory held of the room (every handed row is committed, so the read finds it).
 *
 * An event is marked done once handled. When handling it again would change nothing (`handle`
 * says so: what it did went to the core under the event's id), its mark is written later, many in
 * one commit (within MARK_DELAY_MS), and until then a read of its room leaves it out. A crash in
 * between hands those events over again at the next start, which the core keeps once.
 */
import { InteropError } from '../../src/errors.js';
import type { Logger } from '../../src/observability/logger.js';
import { describeFailure } from './client.js';
import type { InFlight } from './in-flight.js';
import type { ManagementRooms } from './management-room.js';
import type { InboundRow, MatrixStore } from './store.js';

/** Failures that no later attempt can mend: the event is set aside with a notice at once. */
const FINAL_CODES = new Set([
  'matrix_bad_mxc',
  'matrix_contact_unsupported',
  'bridge_bad_remote',
  'bridge_bad_local_user',
  'bridge_not_a_message',
  'bridge_text_too_long',
  'matrix_attachment_altered',
  'matrix_attachment_bad_key',
]);

export interface InboundQueueContext {
  readonly store: Pick<
    MatrixStore,
    'pendingInboundRooms' | 'pendingInboundOf' | 'markInboundDone' | 'markInboundAttempt'
  >;
  /**
   * Handles one event; a rejection counts as a failed attempt. Resolves true when handling it
   * again would change nothing (its done mark may wait for others).
   */
  handle(row: InboundRow): Promise<boolean | void>;
  /** A room's batch with any event the homeserver never sent put in its place (catch-up.ts). */
  expand?(rows: readonly InboundRow[]): Promise<readonly InboundRow[]>;
  readonly rooms: Pick<ManagementRooms, 'notice'>;
  readonly inFlight: Pick<InFlight, 'track'>;
  readonly log: Logger;
  /** Failed attempts at one event before it is set aside. Default 5. */
  readonly maxEventAttempts?: number | undefined;
  /** First wait before an event is tried again; doubles up to 60 s. Default 1000 ms. */
  readonly eventRetryMs?: number | undefined;
  /**
   * How long an encrypted event whose key has not arrived (`matrix_room_key_missing`) is held,
   * from its `origin_server_ts`, before it is set aside with a notice. Default 300 s.
   */
  readonly keyWaitMs?: number | undefined;
}

/** An encrypted event the bridge has no key for yet (encrypted-rooms.ts): held, not counted. */
const KEY_MISSING = 'matrix_room_key_missing';
/** Done marks wait at most this long to share a commit (or until MARKS_AT_ONCE are waiting). */
const MARK_DELAY_MS = 20;
const MARKS_AT_ONCE = 256;
/** A room's events read from the store at once. */
const READ_LIMIT = 500;

export class InboundQueue {
  /** Rooms whose events are being handled now. */
  readonly #rooms = new Set<string>();
  /** Rooms whose next event failed: not tried again before this time. */
  readonly #roomRetryAt = new Map<string, number>();
  readonly #retryTimers = new Set<NodeJS.Timeout>();
  /** Rooms waiting for a room key: tried again at once when keys arrive (`keysArrived`). */
  readonly #waitingForKeys = new Set<string>();
  #pumping = false;
  #pumpAgain = false;
  /** Until `start()`: events are recorded but not handled yet. */
  #stopped = true;
  /** Rooms whose pending events only the store has in full: read from it when they run next. */
  readonly #fromStore = new Set<string>();
  /** Rooms with pending events may be in the store that no room above names: list them first. */
  #discover = true;
  /** Rows handed over in memory, by room (rooms not read from the store), in the order recorded. */
  readonly #handed = new Map<string, InboundRow[]>();
  /**
   * The rows the last read of each room returned: on PostgreSQL a read can find rows committed and
   * not yet handed over, which are then not taken a second time when they are.
   */
  readonly #lastRead = new Map<string, Set<number>>();
  /** Handled events whose done mark is not written yet (a read of the store leaves them out). */
  readonly #unmarked = new Set<number>();
  /** The marks waiting for their commit, and its timer. */
  #marks: number[] = [];
  #markTimer: NodeJS.Timeout | undefined;

  constructor(private readonly c: InboundQueueContext) {}

  /** Whether events are being handled (between `start()` and `stop()`). */
  get running(): boolean {
    return !this.#stopped;
  }

  /** Handles whatever was recorded but not handled before (a restart), then follows new events. */
  start(): void {
    this.#stopped = false;
    this.#handed.clear();
    this.#discover = true;
    this.kick();
  }

  /** Takes no new event; the caller waits for the work in flight (`InFlight.settled`). */
  stop(): void {
    this.#stopped = true;
    for (const t of this.#retryTimers) clearTimeout(t);
    this.#flushMarks();
  }

  /**
   * Rows just committed (called in the same synchronous step as the commit, before anything can
   * read them back): kept for their rooms, unless the room is to be read from the store anyway, or
   * the store is to be asked which rooms have events (it will name theirs, in order with the rest).
   */
  recorded(rows: readonly InboundRow[]): void {
    if (this.#discover) return;
    for (const row of rows) {
      if (this.#fromStore.has(row.roomId) || this.#lastRead.get(row.roomId)?.has(row.seq)) continue;
      const list = this.#handed.get(row.roomId);
      if (list) list.push(row);
      else this.#handed.set(row.roomId, [row]);
    }
  }

  /** Events were recorded without being handed over: the store is asked which rooms have any. */
  unheard(): void {
    this.#discover = true;
    this.kick();
  }

  /** Room keys arrived: rooms holding an encrypted event they could not read try it again now. */
  keysArrived(): void {
    if (this.#waitingForKeys.size === 0) return;
    for (const roomId of this.#waitingForKeys) this.#roomRetryAt.delete(roomId);
    this.#waitingForKeys.clear();
    this.kick();
  }

  /** Handles pending events: rooms in parallel, each room's events strictly in order. */
  kick(): void {
    if (this.#stopped) return;
    if (this.#pumping) {
      this.#pumpAgain = true;
      return;
    }
    this.#pumping = true;
    void this.c.inFlight
      .track(this.#pump())
      .catch((err: unknown) => this.c.log.warn({ err: (err as Error).message }, 'inbound events not read'))
      .finally(() => {
        this.#pumping = false;
        if (this.#pumpAgain) {
          this.#pumpAgain = false;
          this.kick();
        }
      });
  }

  async #pump(): Promise<void> {
    if (this.#discover) {
      // Cleared in the step that asks: what is recorded after the answer is handed over.
      this.#discover = false;
      const rooms = await this.c.store.pendingInboundRooms().catch((err: unknown) => {
        this.#discover = true;
        throw err;
      });
      for (const roomId of rooms) this.#readFromStore(roomId);
    }
    const now = Date.now();
    for (const roomId of [...this.#fromStore, ...this.#handed.keys()]) {
      if (this.#stopped) return;
      if (this.#rooms.has(roomId) || (this.#roomRetryAt.get(roomId) ?? 0) > now) continue;
      let batch: readonly InboundRow[];
      // Marked as running and out of `#fromStore` in the same synchronous step as the read: a row
      // committed after it is handed over (and kept for the next run), never read twice.
      this.#rooms.add(roomId);
      if (this.#fromStore.delete(roomId)) {
        const read = await this.c.store.pendingInboundOf(roomId, READ_LIMIT).catch((err: unknown) => {
          this.#rooms.delete(roomId);
          this.#readFromStore(roomId);
          throw err;
        });
        if (read.length === READ_LIMIT) this.#readFromStore(roomId);
        const seen = new Set(read.map((r) => r.seq));
        this.#lastRead.set(roomId, seen);
        const handed = this.#handed.get(roomId)?.filter((r) => !seen.has(r.seq));
        if (handed?.length) this.#handed.set(roomId, handed);
        else this.#handed.delete(roomId);
        batch = read.filter((r) => !this.#unmarked.has(r.seq));
      } else {
        // In the order recorded (two transactions committing at once may hand theirs over crosswise).
        batch = (this.#handed.get(roomId) ?? []).sort((a, b) => a.seq - b.seq);
        this.#handed.delete(roomId);
        this.#lastRead.delete(roomId);
      }
      if (batch.length === 0) {
        this.#rooms.delete(roomId);
        continue;
      }
      const run = this.#runRows(batch).finally(() => {
        this.#rooms.delete(roomId);
        // What came for the room while it ran (handed over, or left in the store) runs next.
        if (this.#handed.has(roomId) || this.#fromStore.has(roomId)) this.kick();
      });
      void this.c.inFlight
        .track(run)
        .catch((err: unknown) => this.c.log.warn({ err: (err as Error).message }, 'inbound room stopped'));
    }
  }

  /** The room's pending events are to be read from the store: what memory held of them goes. */
  #readFromStore(roomId: string): void {
    this.#fromStore.add(roomId);
    this.#handed.delete(roomId);
  }

  /** A handled event's done mark, written with others within MARK_DELAY_MS. */
  #markLater(seq: number): void {
    this.#unmarked.add(seq);
    this.#marks.push(seq);
    if (this.#marks.length >= MARKS_AT_ONCE) this.#flushMarks();
    else this.#markTimer ??= setTimeout(() => this.#flushMarks(), MARK_DELAY_MS);
  }

  #flushMarks(): void {
    clearTimeout(this.#markTimer);
    this.#markTimer = undefined;
    const seqs = this.#marks;
    if (seqs.length === 0) return;
    this.#marks = [];
    const written = this.c.store.markInboundDone(seqs).then(
      () => {
        for (const seq of seqs) this.#unmarked.delete(seq);
      },
      (err: unknown) => {
        // Not lost: still left out of reads here, written with the next marks (or, after a crash,
        // handled again at the next start, which the core keeps once).
        this.c.log.warn({ err: (err as Error).message, events: seqs.length }, 'done marks not written');
        this.#marks.push(...seqs);
        if (!this.#stopped) this.#markTimer ??= setTimeout(() => this.#flushMarks(), 1000);
      },
    );
    void this.c.inFlight.track(written);
  }

  async #runRows(batch: readonly InboundRow[]): Promise<void> {
    const rows = this.c.expand === undefined ? batch : await this.c.expand(batch);
    for (const row of rows) {
      if (this.#stopped) {
        // The rest stays pending: read from the store at the next start.
        this.#readFromStore(row.roomId);
        return;
      }
      try {
        if ((await this.c.handle(row)) === true) this.#markLater(row.seq);
        else await this.c.store.markInboundDone([row.seq]);
        this.#roomRetryAt.delete(row.roomId);
      } catch (err) {
        const keyMissing = err instanceof InteropError && err.code === KEY_MISSING;
        if (keyMissing && (await this.#holdForKey(row, err))) return;
        const max = this.c.maxEventAttempts ?? 5;
        // The homeserver refused for good (4xx other than a rate limit): trying again cannot help.
        const status = describeFailure(err).status;
        const final =
          keyMissing ||
          (status !== undefined && status >= 400 && status < 500 && status !== 429) ||
          (err instanceof InteropError && FINAL_CODES.has(err.code));
        const giveUp = final || row.attempts + 1 >= max;
        const message = (err as Error).message;
        await this.c.store.markInboundAttempt(row.seq, message, giveUp);
        this.c.log.warn(
          { room: row.roomId, key: row.key, attempt: row.attempts + 1, err: message },
          'inbound event failed',
        );
        if (!giveUp) {
          this.#retryLater(row);
          return;
        }
        this.#roomRetryAt.delete(row.roomId);
        await this.#gaveUp(row, message);
      }
    }
  }

  /**
   * An encrypted event without its key, younger than `keyWaitMs`: the room waits (in order) for the
   * key, tried again when keys arrive or after a backoff. False once the wait is over (set aside).
   */
  async #holdForKey(row: InboundRow, err: InteropError): Promise<boolean> {
    const sentAt = row.payload['origin_server_ts'];
    const left =
      (typeof sentAt === 'number' ? sentAt : Date.now()) + (this.c.keyWaitMs ?? 300_000) - Date.now();
    if (left <= 0) return false;
    await this.c.store.markInboundAttempt(row.seq, err.message, false);
    this.c.log.info(
      { room: row.roomId, key: row.key, attempt: row.attempts + 1 },
      'encrypted event held for its key',
    );
    this.#waitingForKeys.add(row.roomId);
    this.#retryLater(row, left);
    return true;
  }

  /** The room waits; the others go on. Its event is tried again after a backoff. */
  #retryLater(row: InboundRow, atMostMs = 60_000): void {
    this.#readFromStore(row.roomId);
    const wait = Math.min((this.c.eventRetryMs ?? 1000) * 2 ** row.attempts, 60_000, atMostMs);
    const at = Date.now() + wait;
    this.#roomRetryAt.set(row.roomId, at);
    const timer = setTimeout(() => {
      this.#retryTimers.delete(timer);
      // The wait is over when this fires: a timer can fire a millisecond before Date.now()
      // reaches `at`, and the pump would then skip the room with nothing left to wake it.
      if (this.#roomRetryAt.get(row.roomId) === at) this.#roomRetryAt.delete(row.roomId);
      this.kick();
    }, wait);
    this.#retryTimers.add(timer);
  }

  async #gaveUp(row: InboundRow, message: string): Promise<void> {
    const e = row.payload;
    const shown = e['type'] === 'm.room.message' || e['type'] === 'm.room.encrypted';
    if (row.kind !== 'event' || !shown || typeof e['event_id'] !== 'string') return;
    try {
      await this.c.rooms.notice(row.roomId, `This message could not be bridged: ${message}`, e['event_id']);
    } catch {
      // the homeserver is down too; the log has it
    }
  }
}
