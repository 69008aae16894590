/**
 * The application service API the homeserver calls (node:http, not matrix-bot-sdk's Appservice,
 * which keeps its transaction dedupe in memory and wedges a transaction on an exception):
 *
 * - `PUT /_matrix/app/v1/transactions/{txnId}`: the events are recorded together with the txnId,
 *   atomically (MatrixStore.recordTransaction), and only then answered 200. Each event is recorded
 *   once, by its event id (receipts by room, user and event): a resent transaction records nothing
 *   again, and a transaction id the homeserver uses again after a restart still brings its events. Handling happens afterwards, per event (inbound-queue.ts), so one event
 *   that fails can never hold up the transaction. Ephemeral events are read from `ephemeral` or,
 *   from older homeservers, `de.sorunome.msc2409.ephemeral`. The first transaction after the
 *   homeserver went away may be refused once, so that it sends one it held back first (held-back.ts).
 *   With encryption on, what the transaction carries for the bridge's devices (to-device events,
 *   key counts, device lists: MSC2409, MSC3202) is handed to them, durably, before the events are
 *   recorded (`deviceChanges`).
 * - `GET /_matrix/app/v1/users/{userId}`: a ghost id is created on demand; anything else 404.
 * - `GET /_matrix/app/v1/rooms/{alias}`: the bridge has no aliases: 404.
 * - `POST /_matrix/app/v1/ping`: 200 `{}`.
 *
 * Every call needs `Authorization: Bearer <hs_token>` (or the legacy `access_token` query
 * parameter): none is 401 `M_UNAUTHORIZED`, a wrong one 403 `M_FORBIDDEN`.
 *
 * A request that is the caller's fault is refused with a 400 the homeserver need not retry, logged
 * once at warn: a path with a malformed percent escape (`M_UNRECOGNIZED`), a body that is not JSON
 * (`M_NOT_JSON`), or JSON nested deeper than any event (`M_BAD_JSON`). Only the bridge's own
 * failures are 500. A logged path never carries its query (where the token may be).
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../../src/observability/logger.js';
import { redactUrl } from '../../src/observability/redact.js';
import { parseJsonBounded } from '../../src/util/json.js';
import { MatrixAdapterError } from './errors.js';
import type { NewInbound, RecordedTransaction } from './store.js';
import { HeldBackTransactions } from './held-back.js';

export interface AppserviceHandlers {
  /**
   * Durably records a transaction's events, each once. Must reject only if nothing was written.
   * `live`: the transaction carries typing or presence, which are taken only from a new one.
   */
  recordTransaction(
    txnId: string,
    events: readonly NewInbound[],
    live: boolean,
  ): Promise<RecordedTransaction>;
  /**
   * Called after a transaction is recorded and answered: typing and presence (live only, from a
   * transaction that is new), and how many events were recorded that were not before (the worker
   * has something new to handle).
   */
  afterTransaction(
    typing: readonly Record<string, unknown>[],
    presence?: readonly Record<string, unknown>[],
    newEvents?: number,
  ): void;
  /**
   * End-to-end encryption: the transaction's to-device events, one-time key counts and device lists
   * (MSC2409, MSC3202), handed to the bridge's devices before the transaction is recorded and
   * answered; resolves once durable. A rejection answers 500 (the homeserver sends it again).
   */
  deviceChanges?(body: Record<string, unknown>): Promise<void>;
  /** Whether the user id is one of ours that can be created on demand (a ghost); creates it. */
  queryUser(userId: string): Promise<boolean>;
  /** The bridge's state and the user's connection state (mautrix's bridge-state format). */
  bridgeState?(userId: string | undefined): Promise<unknown>;
  /**
   * A transaction was refused because the homeserver may hold back an earlier one (held-back.ts):
   * have it ping the bridge, which starts its recovery at once.
   */
  nudge?(): void;
  /**
   * The provisioning API (`/_matrix/provision/...`), served here too as mautrix bridges do; it
   * authenticates its callers itself (not with the hs_token).
   */
  provisioning?(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

const MAX_BODY = 32 * 1024 * 1024;

/** A request the bridge refuses because it is malformed: answered 400 with `errcode`. */
class BadRequest extends Error {
  constructor(
    readonly errcode: 'M_UNRECOGNIZED' | 'M_NOT_JSON' | 'M_BAD_JSON',
    message: string,
  ) {
    super(message);
  }
}

export class AppserviceListener {
  #server: Server | undefined;
  /** The last pings' transaction ids: the startup check asks whether its ping arrived. */
  readonly #pings: string[] = [];
  readonly #heldBack = new HeldBackTransactions();

  constructor(
    private readonly hsToken: string,
    private readonly handlers: AppserviceHandlers,
    private readonly log?: Logger,
  ) {}

  /** The homeserver stopped answering the bridge's calls: it may have restarted mid-transaction. */
  homeserverWentAway(reason: string): void {
    if (!this.#heldBack.suspected) this.log?.info({ reason }, 'the homeserver went away');
    this.#heldBack.suspect();
  }

  /** The homeserver answered the bridge's watch (homeserver-watch.ts). */
  homeserverAnswered(): void {
    this.#heldBack.answered();
  }

  /** Whether a ping with this transaction id reached the listener. */
  heardPing(transactionId: string): boolean {
    return this.#pings.includes(transactionId);
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    const server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        const path = redactUrl(req.url);
        if (err instanceof BadRequest) {
          this.log?.warn(
            { method: req.method, path, errcode: err.errcode },
            `appservice request refused: ${err.message}`,
          );
          if (!res.headersSent) json(res, 400, { errcode: err.errcode, error: err.message }, true);
          else res.destroy();
          return;
        }
        if ((req.readableAborted || req.socket.destroyed) && !res.headersSent) {
          // The caller went away mid-request: nothing to answer. A transaction cut off like this
          // may stay unsent on the homeserver's side.
          if (req.method === 'PUT' && path.includes('/transactions/')) this.#heldBack.suspect();
          this.log?.warn({ method: req.method, path }, 'appservice request aborted by the caller');
          return;
        }
        this.log?.error(
          { err: (err as Error).message, method: req.method, path },
          'appservice request failed',
        );
        if (!res.headersSent) json(res, 500, { errcode: 'M_UNKNOWN', error: 'internal error, try again' });
        else res.destroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          new MatrixAdapterError(
            'matrix_listen_failed',
            `cannot listen for the homeserver on ${host}:${port} (${err.code ?? err.message}): change matrix.listen_host/listen_port, and the url in the registration`,
          ),
        ),
      );
      server.listen(port, host, resolve);
    });
    this.#server = server;
    return server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Split by hand: `new URL` throws on a target such as "//" and reads "//host/x" as a host.
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const url = {
      pathname: q >= 0 ? target.slice(0, q) : target,
      searchParams: new URLSearchParams(q >= 0 ? target.slice(q + 1) : ''),
    };
    if (this.handlers.provisioning && url.pathname.startsWith('/_matrix/provision/')) {
      await this.handlers.provisioning(req, res);
      return;
    }
    // Authorized from the headers and query before a byte of the body is read: an unauthenticated
    // caller must not make the bridge buffer anything. The connection is closed after the answer
    // (Node discards the unread rest of the body without keeping it).
    const auth = this.#authorize(req, url);
    if (auth !== 'ok') {
      json(
        res,
        auth === 'missing' ? 401 : 403,
        auth === 'missing'
          ? { errcode: 'M_UNAUTHORIZED', error: 'no hs_token: send Authorization: Bearer <hs_token>' }
          : { errcode: 'M_FORBIDDEN', error: 'wrong hs_token' },
        true,
      );
      return;
    }
    const body = await readBody(req);
    if (body === undefined) {
      json(res, 413, { errcode: 'M_TOO_LARGE', error: 'request body too large' }, true);
      return;
    }
    const p = url.pathname.replace(/^\/_matrix\/app\/v1/, '');
    const method = req.method ?? 'GET';
    let m: RegExpExecArray | null;
    if (method === 'PUT' && (m = /^\/transactions\/([^/]+)$/.exec(p)) !== null) {
      await this.#transaction(decodeSegment(m[1]!), body, res);
    } else if (method === 'GET' && (m = /^\/users\/([^/]+)$/.exec(p)) !== null) {
      const ours = await this.handlers.queryUser(decodeSegment(m[1]!));
      if (ours) json(res, 200, {});
      else json(res, 404, { errcode: 'M_NOT_FOUND', error: 'not a user of this bridge' });
    } else if (method === 'GET' && /^\/rooms\/[^/]+$/.test(p)) {
      json(res, 404, { errcode: 'M_NOT_FOUND', error: 'this bridge has no room aliases' });
    } else if (method === 'POST' && p === '/ping') {
      const id = pingId(body);
      if (id !== undefined) {
        this.#pings.push(id);
        if (this.#pings.length > 16) this.#pings.shift();
      }
      json(res, 200, {});
    } else if (
      method === 'POST' &&
      url.pathname === '/_matrix/app/com.beeper.bridge_state' &&
      this.handlers.bridgeState !== undefined
    ) {
      const parsed = body.length === 0 ? undefined : parseJsonBounded(body.toString('utf8'));
      const given = parsed?.ok === true && isRecord(parsed.value) ? parsed.value['user_id'] : undefined;
      const userId = typeof given === 'string' ? given : (url.searchParams.get('user_id') ?? undefined);
      json(res, 200, await this.handlers.bridgeState(userId));
    } else if (method === 'GET' && p.startsWith('/thirdparty/')) {
      json(res, 404, { errcode: 'M_NOT_FOUND', error: 'this bridge offers no third-party lookups' });
    } else {
      json(res, 404, { errcode: 'M_UNRECOGNIZED', error: `unrecognized request ${method} ${url.pathname}` });
    }
  }

  #authorize(req: IncomingMessage, url: { searchParams: URLSearchParams }): 'ok' | 'missing' | 'wrong' {
    const header = req.headers.authorization;
    const given = header?.startsWith('Bearer ')
      ? header.slice(7).trim()
      : url.searchParams.get('access_token');
    if (given === null || given === undefined || given === '') return 'missing';
    const a = Buffer.from(given);
    const b = Buffer.from(this.hsToken);
    return a.length === b.length && timingSafeEqual(a, b) ? 'ok' : 'wrong';
  }

  async #transaction(txnId: string, raw: Buffer, res: ServerResponse): Promise<void> {
    const read = parseJsonBounded(raw.toString('utf8'));
    if (!read.ok) {
      throw read.reason === 'too_deep'
        ? new BadRequest('M_BAD_JSON', 'the transaction is nested too deeply to be Matrix events')
        : new BadRequest('M_NOT_JSON', 'the transaction is not JSON');
    }
    const parsed = read.value;
    if (
      typeof parsed !== 'object' ||
      parsed === null ||
      !Array.isArray((parsed as { events?: unknown }).events)
    ) {
      json(res, 400, { errcode: 'M_BAD_JSON', error: 'the transaction has no events array' });
      return;
    }
    const body = parsed as Record<string, unknown>;
    const events = (body['events'] as unknown[]).filter(isObject);
    const ephemeral = (
      Array.isArray(body['ephemeral'])
        ? body['ephemeral']
        : Array.isArray(body['de.sorunome.msc2409.ephemeral'])
          ? body['de.sorunome.msc2409.ephemeral']
          : []
    ).filter(isObject);
    const records: NewInbound[] = [];
    for (const e of events) {
      const eventId = e['event_id'];
      const roomId = e['room_id'];
      if (typeof eventId !== 'string' || typeof roomId !== 'string') continue;
      records.push({ key: eventId, roomId, kind: 'event', payload: e });
    }
    const typing: Record<string, unknown>[] = [];
    const presence: Record<string, unknown>[] = [];
    for (const e of ephemeral) {
      // m.presence has no room: it is about its sender.
      if (e['type'] === 'm.presence') {
        presence.push(e);
        continue;
      }
      const roomId = e['room_id'];
      if (typeof roomId !== 'string') continue;
      if (e['type'] === 'm.typing') typing.push(e);
      else if (e['type'] === 'm.receipt') records.push(...receiptRecords(roomId, e));
    }
    if (this.#heldBack.shouldRefuse()) {
      this.log?.warn(
        { txnId },
        'the homeserver went away and may hold back a transaction it was sending: refusing this one, so that it sends anything unsent first',
      );
      json(res, 503, {
        errcode: 'M_UNKNOWN',
        error: 'an earlier transaction is missing: send the unsent ones first, then this one again',
      });
      this.handlers.nudge?.();
      return;
    }
    // Keys first: the events recorded below may need them, and a lost to-device event is lost for good.
    await this.handlers.deviceChanges?.(body);
    // Durable first: the answer says "recorded", never "received".
    const recorded = await this.handlers.recordTransaction(
      txnId,
      records,
      typing.length + presence.length > 0,
    );
    json(res, 200, {});
    this.log?.debug({ txnId, events: records.length, ...recorded }, 'transaction recorded');
    // Typing and presence are live only: taken from a transaction that is new, not from a resend.
    const fresh = recorded.newTransaction || recorded.newEvents > 0;
    this.handlers.afterTransaction(fresh ? typing : [], fresh ? presence : [], recorded.newEvents);
  }
}

/** A path segment, percent-decoded; a malformed escape is the caller's mistake. */
function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new BadRequest('M_UNRECOGNIZED', 'the path has a malformed percent escape');
  }
}

/** The `transaction_id` of a ping body, if it has one. */
function pingId(body: Buffer): string | undefined {
  const read = parseJsonBounded(body.toString('utf8'));
  const id = read.ok && isObject(read.value) ? read.value['transaction_id'] : undefined;
  return typeof id === 'string' ? id : undefined;
}

/** One record per (user, event) read receipt: `content[eventId]['m.read'][userId]`. */
function receiptRecords(roomId: string, e: Record<string, unknown>): NewInbound[] {
  const out: NewInbound[] = [];
  const content = e['content'];
  if (!isObject(content)) return out;
  for (const [eventId, byType] of Object.entries(content)) {
    if (!isObject(byType)) continue;
    const read = byType['m.read'];
    if (!isObject(read)) continue;
    for (const userId of Object.keys(read)) {
      out.push({
        key: `receipt\n${roomId}\n${userId}\n${eventId}`,
        roomId,
        kind: 'receipt',
        payload: { room_id: roomId, user_id: userId, event_id: eventId },
      });
    }
  }
  return out;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function json(res: ServerResponse, status: number, body: unknown, close = false): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...(close ? { connection: 'close' } : {}),
  });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
