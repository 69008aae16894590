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
 * the moment this window opened. While the window is open (from the start of the recovery until
 * `windowMs` after the backlog is through, which transactions of fresh events only tell):
 * - before a portal room's events are handled, the room's recent events from its local user are
 *   read back; one the bridge never recorded that comes before an event at hand is recorded and
 *   handled first, so the order is kept;
 * - when the window closes, every portal is read back the same way (two at a time), for a room
 *   whose only event was in the lost transaction.
 * An event found this way is recorded under its event id, so the transaction, if Synapse sends it
 * one day, changes nothing. The cost is one read per room batch while the window is open and one
 * per portal when it closes.
 */
import type { Logger } from '../../src/observability/logger.js';
import type { RetryingMatrixClient } from './client.js';
import type { InboundRow, MatrixRoom, MatrixStore } from './store.js';

/** What a local user sends that the bridge carries (the rest is not worth a read back). */
const CARRIED_TYPES = ['m.room.message', 'm.reaction', 'm.room.redaction'];
/** Clocks of the homeserver and the bridge may differ this much. */
const CLOCK_SLACK_MS = 60_000;
/** A window whose fresh transaction never comes closes after this long anyway. */
const MAX_OPEN_MS = 10 * 60_000;
/** An event this young when it arrives is live: the recovery's backlog is through. */
const FRESH_MS = 2_000;
const READ_BACK = 50;
const PAGE = 200;

export interface CatchUpContext {
  readonly store: Pick<MatrixStore, 'room' | 'portalPage' | 'inboundState' | 'recordTransaction'>;
  /** A client acting as the room's ghost (a member of every portal). */
  clientFor(room: MatrixRoom): RetryingMatrixClient | undefined;
  /** Handles pending events (after the sweep recorded some). */
  kick(): void;
  readonly log?: Logger | undefined;
  /** How long the window stays open once the backlog is through. Default 3 s. */
  readonly windowMs?: number | undefined;
}

type RawEvent = Record<string, unknown>;

export class CatchUp {
  #openedAt: number | undefined;
  #closing: NodeJS.Timeout | undefined;
  #cap: NodeJS.Timeout | undefined;
  #sweeps = 0;
  #stopped = false;

  constructor(private readonly c: CatchUpContext) {}

  /** Whether rooms are read back before their events are handled. */
  get open(): boolean {
    return this.#openedAt !== undefined;
  }

  /** Portals read back by the last sweeps (for tests and the log). */
  get sweeps(): number {
    return this.#sweeps;
  }

  /** A recovery may begin: the bridge started, or refused a transaction to make one. */
  openWindow(): void {
    if (this.#stopped) return;
    if (this.#openedAt === undefined) this.#openedAt = Date.now();
    clearTimeout(this.#closing);
    this.#closing = undefined;
    clearTimeout(this.#cap);
    this.#cap = setTimeout(() => void this.#close(), MAX_OPEN_MS);
    this.#cap.unref();
  }

  /**
   * A transaction was recorded. One that carries an old event is the recovery's backlog: the
   * window stays open. One that carries only fresh events means the backlog is through (the race
   * is at its end): the window closes `windowMs` later, unless more backlog comes.
   */
  sawTransaction(events: readonly { payload: RawEvent }[]): void {
    if (this.#openedAt === undefined) return;
    const now = Date.now();
    const stale = events.some((e) => {
      const ts = e.payload['origin_server_ts'];
      return typeof ts === 'number' && now - ts >= FRESH_MS;
    });
    if (stale) {
      clearTimeout(this.#closing);
      this.#closing = undefined;
      return;
    }
    if (this.#closing !== undefined || events.length === 0) return;
    this.#closing = setTimeout(() => void this.#close(), this.c.windowMs ?? 3_000);
    this.#closing.unref();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#closing);
    clearTimeout(this.#cap);
    this.#openedAt = undefined;
  }

  /**
   * The room's batch of events with any event the homeserver never sent put before the first
   * event that follows it in the room (recorded first, so a later transaction with it is a repeat).
   */
  async expand(rows: readonly InboundRow[]): Promise<readonly InboundRow[]> {
    const since = this.#openedAt;
    const first = rows[0];
    if (since === undefined || first === undefined) return rows;
    const room = await this.c.store.room(first.roomId);
    if (room?.kind !== 'portal' || room.remoteJid === null) return rows;
    // Only the local user's events are read back, and only their order matters here.
    if (!rows.some((r) => r.kind === 'event' && r.payload['sender'] === room.localUser)) return rows;
    const timeline = await this.#readBack(room, since);
    if (timeline.length === 0) return rows;
    const position = new Map(timeline.map((e, i) => [e['event_id'] as string, i]));
    const last = Math.max(-1, ...rows.map((r) => position.get(r.key) ?? -1));
    const inBatch = new Set(rows.map((r) => r.key));
    const missing: { at: number; event: RawEvent }[] = [];
    for (let i = 0; i < last; i++) {
      const e = timeline[i]!;
      const id = e['event_id'] as string;
      if (!inBatch.has(id) && (await this.c.store.inboundState(id)) === undefined)
        missing.push({ at: i, event: e });
    }
    if (missing.length === 0) return rows;
    const out: InboundRow[] = [];
    let m = 0;
    for (const row of rows) {
      const at = position.get(row.key);
      while (at !== undefined && m < missing.length && missing[m]!.at < at) {
        const taken = await this.#record(room, missing[m++]!.event);
        if (taken !== undefined) out.push(taken);
      }
      out.push(row);
    }
    return out;
  }

  /** Reads back every portal once, recording what the homeserver never sent. */
  async #close(): Promise<void> {
    const since = this.#openedAt;
    clearTimeout(this.#closing);
    clearTimeout(this.#cap);
    this.#closing = undefined;
    this.#openedAt = undefined;
    if (since === undefined || this.#stopped) return;
    let after = '';
    let read = 0;
    let found = 0;
    try {
      for (;;) {
        const page = await this.c.store.portalPage(after, PAGE);
        if (page.length === 0) break;
        after = page[page.length - 1]!.roomId;
        for (let i = 0; i < page.length && !this.#stopped; i += 2) {
          const counts = await Promise.all(page.slice(i, i + 2).map((room) => this.#sweepRoom(room, since)));
          read += counts.length;
          found += counts.reduce((a, b) => a + b, 0);
        }
        if (this.#stopped) return;
      }
    } catch (err) {
      this.c.log?.warn({ err: (err as Error).message }, 'portals not read back after a recovery');
    }
    this.#sweeps += read;
    if (found > 0) this.c.kick();
    this.c.log?.info({ portals: read, found }, 'portals read back after the homeserver recovered');
  }

  async #sweepRoom(room: MatrixRoom, since: number): Promise<number> {
    let found = 0;
    for (const e of await this.#readBack(room, since)) {
      if ((await this.c.store.inboundState(e['event_id'] as string)) !== undefined) continue;
      if ((await this.#record(room, e)) !== undefined) found++;
    }
    return found;
  }

  /** The local user's recent carried events in the room since `since`, oldest first. */
  async #readBack(room: MatrixRoom, since: number): Promise<RawEvent[]> {
    const client = this.c.clientFor(room);
    if (client === undefined) return [];
    try {
      const res = (await client.doRequest(
        'GET',
        `/_matrix/client/v3/rooms/${encodeURIComponent(room.roomId)}/messages`,
        {
          dir: 'b',
          limit: READ_BACK,
          filter: JSON.stringify({ senders: [room.localUser], types: CARRIED_TYPES }),
        },
      )) as { chunk?: unknown };
      const chunk = Array.isArray(res.chunk) ? (res.chunk as RawEvent[]) : [];
      return chunk
        .filter(
          (e) =>
            typeof e['event_id'] === 'string' &&
            e['room_id'] === room.roomId &&
            e['sender'] === room.localUser &&
            typeof e['origin_server_ts'] === 'number' &&
            e['origin_server_ts'] >= since - CLOCK_SLACK_MS,
        )
        .reverse();
    } catch (err) {
      this.c.log?.debug({ room: room.roomId, err: (err as Error).message }, 'room not read back');
      return [];
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
