/**
 * How the processes of a cluster on one PostgreSQL hand each other work (docs/OPERATING.md,
 * "Several workers"): through the database, never a protocol of their own.
 *
 * - A puppet's gateway connection and Signal state live in the worker holding its lease; the local
 *   networks' endpoints (the appservice listener, the component stream) in the one process holding
 *   the `front` lease, which runs the adapters.
 * - What must survive a crash is a row: an outgoing message is an outbox row (the owner sends it),
 *   an incoming one an inbox row (the front shows it), the state of a sent message or a notice a
 *   `relay_events` row (the front shows it, then deletes it). A `NOTIFY` on one channel tells the
 *   process concerned at once; each side also looks now and then, so a lost notification delays,
 *   never loses.
 * - What is live only goes in the notification itself: a contact's typing or presence (to the
 *   front), the local user's typing or presence (to the owner), and requests that need the puppet's
 *   connection (a number lookup, the media credential, a reconnect), answered the same way.
 */
import { randomBytes } from 'node:crypto';
import { InteropError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { PgDatabase } from '../store/postgres-database.js';

/** The one channel of the cluster's notifications. */
const CHANNEL = 'interop_bridge_relay';
/** A notification carries at most 8000 bytes (PostgreSQL's limit); a request's is far below. */
const MAX_PAYLOAD = 7_900;

/** A request the owner of a puppet answers (src/bridge/core.ts runs them). */
export interface RelayRequest {
  readonly op: string;
  readonly puppetId: number;
  readonly args: readonly unknown[];
}

/** A relay event row: the state of an outgoing message, or a notice, for the front to show. */
export interface RelayEvent {
  readonly seq: number;
  readonly network: string;
  readonly localUser: string;
  readonly kind: 'delivery' | 'notice';
  readonly body: unknown;
}

type Note =
  | { k: 'outbox'; p: number[] }
  | { k: 'inbox'; p: number[] }
  | { k: 'events' }
  | { k: 'ephemeral'; n: string; e: unknown }
  | { k: 'live'; p: number; e: unknown }
  | { k: 'req'; id: string; to: string; op: string; p: number; a: readonly unknown[] }
  | { k: 'ans'; id: string; to: string; v?: unknown; err?: { code: string; message: string } };

/** What this process does with what the others tell it. */
export interface RelayHandlers {
  /** Outbox rows were written for these puppets: their owner (if this process) sends them. */
  outbox(puppetIds: readonly number[]): void;
  /** Inbox rows were recorded for these puppets: the front (if this process) shows them. */
  inbox(puppetIds: readonly number[]): void;
  /** Relay events were recorded: the front (if this process) shows them. */
  events(): void;
  /** A contact's typing or presence, for the front. */
  ephemeral(network: string, event: unknown): void;
  /** The local user's typing or presence, for the puppet's owner. */
  live(puppetId: number, event: unknown): void;
  /** A request for a puppet this process may own: answered, or `undefined` when it does not own it. */
  request(req: RelayRequest): Promise<unknown> | undefined;
}

/** The owner did not answer: it died, or gave the puppet up; the caller looks for the owner again. */
export class RelayError extends InteropError {}

export class ClusterRelay {
  private handlers: RelayHandlers | undefined;
  private readonly waiting = new Map<
    string,
    { resolve(v: unknown): void; reject(e: Error): void; timer: NodeJS.Timeout }
  >();
  /** Notifications coalesced until the end of this turn of the event loop. */
  private readonly pendingOutbox = new Set<number>();
  private readonly pendingInbox = new Set<number>();
  private eventsWritten = false;
  private flushScheduled = false;

  constructor(
    private readonly db: PgDatabase,
    /** This process's worker id: requests are addressed to one. */
    readonly selfId: string,
    private readonly log?: Logger,
  ) {}

  /** Listens on the channel and hands what arrives to `handlers`. */
  async start(handlers: RelayHandlers): Promise<void> {
    this.handlers = handlers;
    await this.db.listen(CHANNEL, (payload) => this.onNote(payload));
  }

  stop(): void {
    this.handlers = undefined;
    for (const [id, w] of this.waiting) {
      clearTimeout(w.timer);
      w.reject(new RelayError('cluster_stopping', 'this bridge process is stopping'));
      this.waiting.delete(id);
    }
  }

  /** Outbox rows of `puppetId` are committed: tell its owner (coalesced per turn). */
  outboxWritten(puppetId: number): void {
    this.pendingOutbox.add(puppetId);
    this.scheduleFlush();
  }

  /** Inbox rows of `puppetId` are committed: tell the front (coalesced per turn). */
  inboxRecorded(puppetId: number): void {
    this.pendingInbox.add(puppetId);
    this.scheduleFlush();
  }

  /** Records a relay event for the front; resolves once it is committed (and the front told). */
  async record(
    network: string,
    localUser: string,
    kind: 'delivery' | 'notice',
    body: unknown,
  ): Promise<void> {
    await this.db.exec({
      text: 'INSERT INTO relay_events (network, local_user, kind, body, created_at) VALUES ($1, $2, $3, $4, $5)',
      values: [network, localUser, kind, JSON.stringify(body), Date.now()],
    });
    this.eventsWritten = true;
    this.scheduleFlush();
  }

  /** The oldest relay events, in order. */
  async pendingEvents(limit = 200): Promise<RelayEvent[]> {
    const rows = await this.db.query(
      'SELECT seq, network, local_user, kind, body FROM relay_events ORDER BY seq LIMIT $1',
      [limit],
    );
    return rows.map((r) => ({
      seq: r.seq as number,
      network: r.network as string,
      localUser: r.local_user as string,
      kind: r.kind as 'delivery' | 'notice',
      body: JSON.parse(r.body as string) as unknown,
    }));
  }

  /** Relay events shown: gone. */
  async done(seqs: readonly number[]): Promise<void> {
    if (seqs.length === 0) return;
    await this.db.exec({
      text: 'DELETE FROM relay_events WHERE seq = ANY($1::bigint[])',
      values: [[...seqs]],
    });
  }

  /** A contact's typing or presence, for the front (live only: lost if nobody listens). */
  ephemeral(network: string, event: unknown): void {
    this.send({ k: 'ephemeral', n: network, e: event });
  }

  /** The local user's typing or presence, for the puppet's owner (live only). */
  live(puppetId: number, event: unknown): void {
    this.send({ k: 'live', p: puppetId, e: event });
  }

  /**
   * Asks the worker `owner` to run `op` for its puppet; rejects with RelayError when it does not
   * answer within `timeoutMs` or no longer owns the puppet.
   */
  request(owner: string, req: RelayRequest, timeoutMs = 15_000): Promise<unknown> {
    const id = `${this.selfId}/${randomBytes(6).toString('hex')}`;
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(
          new RelayError(
            'cluster_no_answer',
            `the worker running this account did not answer in ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
      this.send({ k: 'req', id, to: owner, op: req.op, p: req.puppetId, a: req.args });
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (this.pendingOutbox.size > 0) {
        for (const p of chunks([...this.pendingOutbox])) this.send({ k: 'outbox', p });
        this.pendingOutbox.clear();
      }
      if (this.pendingInbox.size > 0) {
        for (const p of chunks([...this.pendingInbox])) this.send({ k: 'inbox', p });
        this.pendingInbox.clear();
      }
      if (this.eventsWritten) {
        this.eventsWritten = false;
        this.send({ k: 'events' });
      }
    });
  }

  private send(note: Note): void {
    let payload = JSON.stringify(note);
    if (payload.length > MAX_PAYLOAD) {
      if (note.k !== 'ans') {
        this.log?.warn({ kind: note.k }, 'cluster notification too large: not sent');
        return;
      }
      payload = JSON.stringify({
        ...note,
        v: undefined,
        err: { code: 'cluster_answer_too_large', message: 'the answer was too large to relay' },
      });
    }
    this.db
      .query('SELECT pg_notify($1, $2)', [CHANNEL, payload])
      .catch((err: unknown) =>
        this.log?.warn({ kind: note.k, err: (err as Error).message }, 'cluster notification not sent'),
      );
  }

  private onNote(payload: string): void {
    const h = this.handlers;
    if (!h) return;
    let note: Note;
    try {
      note = JSON.parse(payload) as Note;
    } catch {
      return;
    }
    switch (note.k) {
      case 'outbox':
        h.outbox(note.p);
        return;
      case 'inbox':
        h.inbox(note.p);
        return;
      case 'events':
        h.events();
        return;
      case 'ephemeral':
        h.ephemeral(note.n, note.e);
        return;
      case 'live':
        h.live(note.p, note.e);
        return;
      case 'req':
        if (note.to === this.selfId) this.answer(note, h);
        return;
      case 'ans': {
        if (note.to !== this.selfId) return;
        const w = this.waiting.get(note.id);
        if (!w) return;
        this.waiting.delete(note.id);
        clearTimeout(w.timer);
        if (note.err) w.reject(new RelayError(note.err.code, note.err.message));
        else w.resolve(note.v);
        return;
      }
    }
  }

  private answer(note: Extract<Note, { k: 'req' }>, h: RelayHandlers): void {
    const from = note.id.slice(0, note.id.lastIndexOf('/'));
    const reply = (v: unknown, err?: { code: string; message: string }) =>
      this.send({ k: 'ans', id: note.id, to: from, ...(err ? { err } : { v }) });
    let running: Promise<unknown> | undefined;
    try {
      running = h.request({ op: note.op, puppetId: note.p, args: note.a });
    } catch (err) {
      running = Promise.reject(err as Error);
    }
    if (running === undefined) {
      reply(undefined, { code: 'cluster_not_owner', message: 'this worker does not run the account' });
      return;
    }
    running.then(
      (v) => reply(v ?? null),
      (err: unknown) =>
        reply(undefined, {
          code: (err as { code?: string }).code ?? 'cluster_request_failed',
          message: (err as Error).message,
        }),
    );
  }
}

/** Puppet ids in notifications of a bounded size. */
function chunks(ids: number[]): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < ids.length; i += 500) out.push(ids.slice(i, i + 500));
  return out;
}
