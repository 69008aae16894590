/**
 * The application service API the homeserver calls (node:http, not matrix-bot-sdk's Appservice,
 * which keeps its transaction dedupe in memory and wedges a transaction on an exception):
 *
 * - `PUT /_matrix/app/v1/transactions/{txnId}`: the events are recorded together with the txnId,
 *   atomically (MatrixStore.recordTransaction), and only then answered 200. Each event is recorded
 *   once, by its event id (receipts by room, user and event): a resent transaction records nothing
 *   again, and a transaction id the homeserver uses again after a restart still brings its events. Handling happens afterwards, per event (inbound-queue.ts), so one event
 *   that fails can never hold up the transaction. Ephemeral events are read from `ephemeral` or,
 *   from older homeservers, `de.sorunome.msc2409.ephemeral`.
 * - `GET /_matrix/app/v1/users/{userId}`: a ghost id is created on demand; anything else 404.
 * - `GET /_matrix/app/v1/rooms/{alias}`: the bridge has no aliases: 404.
 * - `POST /_matrix/app/v1/ping`: 200 `{}`.
 *
 * Every call needs `Authorization: Bearer <hs_token>` (or the legacy `access_token` query
 * parameter): none is 401 `M_UNAUTHORIZED`, a wrong one 403 `M_FORBIDDEN`.
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../../src/observability/logger.js';
import { MatrixAdapterError } from './errors.js';
import type { NewInbound, RecordedTransaction } from './store.js';

export interface AppserviceHandlers {
  /** Durably records a transaction's events, each once. Must reject only if nothing was written. */
  recordTransaction(txnId: string, events: readonly NewInbound[]): Promise<RecordedTransaction>;
  /** Called after a transaction is recorded and answered: typing (live only) and a kick of the worker. */
  afterTransaction(typing: readonly Record<string, unknown>[]): void;
  /** Whether the user id is one of ours that can be created on demand (a ghost); creates it. */
  queryUser(userId: string): Promise<boolean>;
}

const MAX_BODY = 32 * 1024 * 1024;

export class AppserviceListener {
  #server: Server | undefined;
  /** The last pings' transaction ids: the startup check asks whether its ping arrived. */
  readonly #pings: string[] = [];

  constructor(
    private readonly hsToken: string,
    private readonly handlers: AppserviceHandlers,
    private readonly log?: Logger,
  ) {}

  /** Whether a ping with this transaction id reached the listener. */
  heardPing(transactionId: string): boolean {
    return this.#pings.includes(transactionId);
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    const server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        this.log?.error({ err: (err as Error).message, path: req.url }, 'appservice request failed');
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
    const url = new URL(req.url ?? '/', 'http://appservice');
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
      await this.#transaction(decodeURIComponent(m[1]!), body, res);
    } else if (method === 'GET' && (m = /^\/users\/([^/]+)$/.exec(p)) !== null) {
      const ours = await this.handlers.queryUser(decodeURIComponent(m[1]!));
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
    } else if (method === 'GET' && p.startsWith('/thirdparty/')) {
      json(res, 404, { errcode: 'M_NOT_FOUND', error: 'this bridge offers no third-party lookups' });
    } else {
      json(res, 404, { errcode: 'M_UNRECOGNIZED', error: `unrecognized request ${method} ${url.pathname}` });
    }
  }

  #authorize(req: IncomingMessage, url: URL): 'ok' | 'missing' | 'wrong' {
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
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString('utf8'));
    } catch {
      json(res, 400, { errcode: 'M_NOT_JSON', error: 'the transaction is not JSON' });
      return;
    }
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
    for (const e of ephemeral) {
      const roomId = e['room_id'];
      if (typeof roomId !== 'string') continue;
      if (e['type'] === 'm.typing') typing.push(e);
      else if (e['type'] === 'm.receipt') records.push(...receiptRecords(roomId, e));
    }
    // Durable first: the answer says "recorded", never "received".
    const recorded = await this.handlers.recordTransaction(txnId, records);
    json(res, 200, {});
    this.log?.debug({ txnId, events: records.length, ...recorded }, 'transaction recorded');
    // Typing is live only: shown from a transaction that is new, not from a resend.
    const fresh = recorded.newTransaction || recorded.newEvents > 0;
    this.handlers.afterTransaction(fresh ? typing : []);
  }
}

/** The `transaction_id` of a ping body, if it has one. */
function pingId(body: Buffer): string | undefined {
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    const id = isObject(parsed) ? parsed['transaction_id'] : undefined;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
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
