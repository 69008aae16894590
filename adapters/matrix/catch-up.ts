/**
 * Events the homeserver persisted but never sent. Synapse's appservice recovery (after the bridge
 * was down: a restart, a standby taking over, or the refusal held-back.ts makes) has a race: a
 * transaction it creates while it still has the bridge marked down, in the instant its recovery
 * loop finds nothing left and marks the bridge up, is never sent (synapse/appservice/scheduler.py:
 * `_TransactionController.send` reads the state, then writes the transaction; `_Recoverer.retry`
 * meanwhile finds none and calls `on_recovered`). It stays in Synapse's table until the bridge is
 * next marked down, which may be never: a user's message held without a word. Under steady sending
 * it happened in about one failover in three.
 *
 * Such a transaction can only be created after the recovery began, so its events are newer than
 * the moment this window opened. The window opens when the adapter starts (before it listens), when
 * it refuses a transaction (held-back.ts), and when a transaction carries events older than 2 s
 * (by Synapse's own `unsigned.age`): the backlog of a recovery, whatever caused it. It closes
 * `windowMs` after the last of these signs. While it is open:
 * - before a portal room's events are handled, the room's recent events from its local user are
 *   read back; one the bridge never recorded that comes before an event at hand is recorded and
 *   handled first, so the order is kept;
 * - when the window closes, every portal is read back the same way (two at a time), for a room
 *   whose only event was in the lost transaction.
 * An event found this way is recorded under its event id, so the transaction, if Synapse sends it
 * one day, changes nothing. Events Synapse still holds for its recovery may be found the same way:
 * they are bridged sooner, and once. The cost is one read per room batch with a local user's event
 * while the window is open, and one per portal when it closes. Reads are made once, with a short
 * timeout: a homeserver that does not answer is not waited for here (a room not read back in the
 * sweep is tried once more at its end).
 */
import type { Logger } from '../../src/observability/logger.js';
import type { RetryingMatrixClient } from './client.js';
import type { InboundRow, MatrixRoom, MatrixStore } from './store.js';

/** What a local user sends that the bridge carries (the rest is not worth a read back). */
const CARRIED_TYPES = ['m.room.message', 'm.reaction', 'm.room.redaction', 'm.room.encrypted'];
/** Clocks of the homeserver and the bridge may differ this much (used only without `unsigned.age`). */
const CLOCK_SLACK_MS = 60_000;
/** A window that backlog keeps open closes after this long anyway. */
const MAX_OPEN_MS = 10 * 60_000;
/** An event older than this when it arrives is backlog: a recovery is running. */
const FRESH_MS = 2_000;
const READ_BACK = 50;
const READ_TIMEOUT_MS = 10_000;
const PAGE = 200;

export interface CatchUpContext {
  readonly store: Pick<MatrixStore, 'room' | 'portalPage' | 'inboundState' | 'recordTransaction'>;
  /** A client that tries once (no retries: a window opens when the homeserver is unsteady). */
  readonly reader: Pick<RetryingMatrixClient, 'doRequest'>;
  /** The user the room is read as: its ghost, a member of every portal. */
  readerOf(room: MatrixRoom): string | undefined;
  /** Handles pending events (after the sweep recorded some). */
  kick(): void;
  /** Keeps the sweep in the adapter's work in flight, so a stop waits for it. */
  track<T>(work: Promise<T>): Promise<T>;
  readonly log?: Logger | undefined;
  /** How long the window stays open after the last sign of a recovery. Default 3 s. */
  readonly windowMs?: number | undefined;
}

type RawEvent = Record<string, unknown>;

/** When the event was sent, on this machine's clock: by Synapse's `unsigned.age` when it gives it. */
function sentAt(e: RawEvent, now: number): number | undefined {
  const unsigned = e['unsigned'];
  const age = typeof unsigned === 'object' && unsigned !== null ? (unsigned as RawEvent)['age'] : undefined;
  if (typeof age === 'number') return now - age;
  const ts = e['origin_server_ts'];
  return typeof ts === 'number' ? ts : undefined;
}

export class CatchUp {
  #openedAt: number | undefined;
  #closing: NodeJS.Timeout | undefined;
  #cap: NodeJS.Timeout | undefined;
  #sweeping = false;
  #swept = 0;
  #stopped = false;

  constructor(private readonly c: CatchUpContext) {}

  /** Whether rooms are read back before their events are handled. */
  get open(): boolean {
    return this.#openedAt !== undefined;
  }

  /** Portals read back by the sweeps so far. */
  get swept(): number {
    return this.#swept;
  }

  /** A recovery may be running: the window opens, or stays open `windowMs` longer. */
  openWindow(): void {
    if (this.#stopped) return;
    if (this.#openedAt === undefined) {
      this.#openedAt = Date.now();
      clearTimeout(this.#cap);
      this.#cap = setTimeout(() => this.#close(), MAX_OPEN_MS);
      this.#cap.unref();
    }
    clearTimeout(this.#closing);
    this.#closing = setTimeout(() => this.#close(), this.c.windowMs ?? 3_000);
    this.#closing.unref();
  }

  /** A transaction was recorded: one with an event older than 2 s is a recovery's backlog. */
  sawTransaction(events: readonly { kind: string; payload: RawEvent }[]): void {
    const now = Date.now();
    const backlog = events.some((e) => {
      if (e.kind !== 'event') return false;
      const at = sentAt(e.payload, now);
      return at !== undefined && now - at >= FRESH_MS;
    });
    if (backlog) this.openWindow();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#closing);
    clearTimeout(this.#cap);
    this.#openedAt = undefined;
  }

  /**
   * The room's batch with any event the homeserver never sent put before the first event that
   * follows it in the room (recorded first, so a later transaction with it is a repeat), and the
   * batch's own events of the local user in the room's order (one found earlier but handled later,
   * after a failed attempt, keeps its place). Never fails: without a read back, the batch as it is.
   */
  async expand(rows: readonly InboundRow[]): Promise<readonly InboundRow[]> {
    const since = this.#openedAt;
    if (since === undefined || rows.length === 0) return rows;
    try {
      return await this.#expand(rows, since);
    } catch (err) {
      this.c.log?.warn({ room: rows[0]!.roomId, err: (err as Error).message }, 'room not read back');
      return rows;
    }
  }

  async #expand(rows: readonly InboundRow[], since: number): Promise<readonly InboundRow[]> {
    const room = await this.c.store.room(rows[0]!.roomId);
    if (room?.kind !== 'portal' || room.remoteJid === null) return rows;
    // Only the local user's events are read back, and only their order matters here.
    if (!rows.some((r) => r.kind === 'event' && r.payload['sender'] === room.localUser)) return rows;
    const timeline = await this.#readBack(room, since);
    if (timeline === undefined || timeline.length === 0) return rows;
    const position = new Map(timeline.map((e, i) => [e['event_id'] as string, i]));
    // The batch's rows the timeline places, in its order, in the slots they hold.
    const placed = rows.map((r, i) => ({ r, i, at: position.get(r.key) })).filter((x) => x.at !== undefined);
    const ordered = [...rows];
    const byPosition = [...placed].sort((a, b) => a.at! - b.at!);
    placed.forEach((slot, k) => (ordered[slot.i] = byPosition[k]!.r));
    const last = byPosition.length === 0 ? -1 : byPosition[byPosition.length - 1]!.at!;
    const inBatch = new Set(rows.map((r) => r.key));
    const missing: { at: number; event: RawEvent }[] = [];
    for (let i = 0; i < last; i++) {
      const e = timeline[i]!;
      const id = e['event_id'] as string;
      if (!inBatch.has(id) && (await this.c.store.inboundState(id)) === undefined)
        missing.push({ at: i, event: e });
    }
    if (missing.length === 0) return ordered;
    const out: InboundRow[] = [];
    let m = 0;
    for (const row of ordered) {
      const at = position.get(row.key);
      while (at !== undefined && m < missing.length && missing[m]!.at < at) {
        const taken = await this.#record(room, missing[m++]!.event);
        if (taken !== undefined) out.push(taken);
      }
      out.push(row);
    }
    return out;
  }

  /** The window ends: every portal is read back once (rooms are still read back meanwhile). */
  #close(): void {
    clearTimeout(this.#closing);
    this.#closing = undefined;
    if (this.#sweeping || this.#openedAt === undefined || this.#stopped) return;
    clearTimeout(this.#cap);
    this.#sweeping = true;
    const since = this.#openedAt;
    void this.c
      .track(this.#sweep(since))
      .catch((err: unknown) =>
        this.c.log?.warn({ err: (err as Error).message }, 'portals not read back after a recovery'),
      )
      .finally(() => {
        this.#sweeping = false;
        // A window opened again during the sweep closes (and sweeps) on its own timer.
        if (this.#closing === undefined) this.#openedAt = undefined;
      });
  }

  async #sweep(since: number): Promise<void> {
    let after = '';
    let read = 0;
    let found = 0;
    const unread: MatrixRoom[] = [];
    const sweepRoom = async (room: MatrixRoom, retry: boolean): Promise<void> => {
      const events = await this.#readBack(room, since);
      if (events === undefined) {
        if (!retry) unread.push(room);
        return;
      }
      read++;
      let here = 0;
      for (const e of events) {
        if ((await this.c.store.inboundState(e['event_id'] as string)) !== undefined) continue;
        if ((await this.#record(room, e)) !== undefined) here++;
      }
      found += here;
      if (here > 0) this.c.kick();
    };
    for (;;) {
      const page = await this.c.store.portalPage(after, PAGE);
      if (page.length === 0 || this.#stopped) break;
      after = page[page.length - 1]!.roomId;
      for (let i = 0; i < page.length && !this.#stopped; i += 2) {
        await Promise.all(page.slice(i, i + 2).map((room) => sweepRoom(room, false)));
      }
    }
    for (const room of unread) if (!this.#stopped) await sweepRoom(room, true);
    this.#swept += read;
    this.c.log?.info(
      { portals: read, unreadable: unread.length, found },
      'portals read back after the homeserver recovered',
    );
  }

  /** The local user's recent carried events in the room since `since`, oldest first; undefined if unread. */
  async #readBack(room: MatrixRoom, since: number): Promise<RawEvent[] | undefined> {
    const as = this.c.readerOf(room);
    if (as === undefined) return [];
    try {
      const res = (await this.c.reader.doRequest(
        'GET',
        `/_matrix/client/v3/rooms/${encodeURIComponent(room.roomId)}/messages`,
        {
          user_id: as,
          dir: 'b',
          limit: READ_BACK,
          filter: JSON.stringify({ senders: [room.localUser], types: CARRIED_TYPES }),
        },
        null,
        READ_TIMEOUT_MS,
      )) as { chunk?: unknown };
      const now = Date.now();
      const chunk = Array.isArray(res.chunk) ? (res.chunk as RawEvent[]) : [];
      return chunk
        .filter((e) => {
          const at = sentAt(e, now);
          return (
            typeof e['event_id'] === 'string' &&
            e['room_id'] === room.roomId &&
            e['sender'] === room.localUser &&
            at !== undefined &&
            at >= since - CLOCK_SLACK_MS
          );
        })
        .reverse();
    } catch (err) {
      this.c.log?.warn({ room: room.roomId, err: (err as Error).message }, 'room not read back');
      return undefined;
    }
  }

  /** Records an event the homeserver never sent; the row, if it is still to be handled. */
  async #record(room: MatrixRoom, event: RawEvent): Promise<InboundRow | undefined> {
    const key = event['event_id'] as string;
    await this.c.store.recordTransaction('catch-up', [
      { key, roomId: room.roomId, kind: 'event', payload: event },
    ]);
    const state = await this.c.store.inboundState(key);
    if (state?.state !== 'pending') return undefined;
    this.c.log?.warn(
      { room: room.roomId, event: key },
      'an event the homeserver never sent (its appservice recovery race) was found in the room: handled now',
    );
    return {
      seq: state.seq,
      key,
      roomId: room.roomId,
      kind: 'event',
      payload: event,
      attempts: state.attempts,
    };
  }
}
