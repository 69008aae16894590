/**
 * The validating, fault-injecting proxy the Matrix tests put between the bridge and Synapse, on
 * both of its sides:
 * - client side: the bridge (and the test's matrix-js-sdk users) call Synapse through it. Every
 *   request the bridge makes is matched to its operation in the specification's client-server
 *   OpenAPI definitions and checked, with every event it sends against the event schemas; a test
 *   may plan faults a real server cannot be made to show on demand (429, 5xx, a dropped
 *   connection, a lost answer followed by a Synapse restart).
 * - appservice side: Synapse pushes transactions, user and alias queries and pings through it to
 *   the bridge; the bridge's answers are checked against the application service API, and a test
 *   may lose an answer (Synapse resends) or refuse a connection.
 * Departures from the spec by the bridge are violations (`assertNoViolations`); departures by
 * Synapse or by the SDK are kept apart in `departures`, for information.
 */
import {
  createServer,
  request,
  type ClientRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventSchemas } from '../homeserver/event-schemas.js';
import { FaultPlan, type FaultKind, type FaultMatch } from '../homeserver/faults.js';
import type { SchemaProblem } from '../homeserver/json-schema.js';
import { OpenApi } from '../homeserver/openapi.js';
import { isObject, sharedSpecFiles } from '../homeserver/spec-files.js';
import type { Violation } from '../homeserver/server.js';

export interface SpecProxyOptions {
  /** Synapse's client listener. */
  readonly upstream: string;
  readonly asToken: string;
  readonly hsToken: string;
}

/** A request the proxy passed on (or faulted), in arrival order. */
export interface ProxiedRequest {
  readonly method: string;
  readonly path: string;
  readonly operationId: string | undefined;
  /** Made with the appservice's token (the bridge, as its bot or a ghost). */
  readonly viaAppservice: boolean;
  readonly userId: string | undefined;
  readonly status: number;
  readonly fault?: FaultKind['kind'];
}

/** A transaction Synapse pushed towards the bridge, one entry per attempt. */
export interface ProxiedTransaction {
  readonly txnId: string;
  readonly eventIds: readonly string[];
  readonly events: readonly Record<string, unknown>[];
  /** The users whose device lists changed, as the transaction said (MSC3202). */
  readonly deviceListsChanged: readonly string[];
  /** The bridge's status (0: not passed on or no answer), and what Synapse was told. */
  readonly bridgeStatus: number;
  readonly toldSynapse: number;
}

interface Exchange {
  readonly method: string;
  readonly url: URL;
  readonly headers: IncomingMessage['headers'];
  readonly raw: Buffer;
  readonly json: unknown;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[]>;
  body: Buffer;
}

const HOP_HEADERS = new Set([
  'host',
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'upgrade',
]);

export class SpecProxy {
  readonly faults = new FaultPlan();
  readonly requests: ProxiedRequest[] = [];
  readonly transactions: ProxiedTransaction[] = [];
  /** Departures from the spec by Synapse or the SDK: not the bridge's, kept for information. */
  readonly departures: Violation[] = [];
  private readonly violationList: Violation[] = [];
  private readonly clientApi: OpenApi;
  private readonly appserviceApi: OpenApi;
  private readonly events: EventSchemas;
  private clientServer: Server | undefined;
  private asServer: Server | undefined;
  private bridgeUrl: string | undefined;
  private inFlight = 0;
  private lastTransactionAt = 0;
  private losingAnswers = 0;
  private refusingConnections = 0;
  private failingPings = 0;
  private restartsAfterSend = 0;
  private holding: ((held: { txnId: string; eventIds: string[] }) => void) | undefined;
  private swallowing: ((events: readonly Record<string, unknown>[]) => boolean)[] = [];
  private restartHook: (() => Promise<void>) | undefined;
  /** A restart for `restartAfterNextSends` that failed (reported by `assertNoViolations`). */
  restartFailure: Error | undefined;

  private upstream: string;

  private constructor(private readonly options: SpecProxyOptions) {
    this.upstream = options.upstream;
    const files = sharedSpecFiles();
    this.clientApi = new OpenApi(files, 'api/client-server');
    this.appserviceApi = new OpenApi(files, 'api/application-service');
    this.events = new EventSchemas(files);
  }

  static async start(options: SpecProxyOptions): Promise<SpecProxy> {
    const proxy = new SpecProxy(options);
    proxy.clientServer = await listen((req, res) => void proxy.serveClient(req, res));
    proxy.asServer = await listen((req, res) => void proxy.serveAppservice(req, res));
    return proxy;
  }

  /** Where the bridge and the users reach the homeserver. */
  get clientUrl(): string {
    return `http://127.0.0.1:${(this.clientServer!.address() as AddressInfo).port}`;
  }

  /** The `url` of the registration Synapse loads: Synapse reaches the bridge here. */
  get appserviceUrl(): string {
    return `http://127.0.0.1:${(this.asServer!.address() as AddressInfo).port}`;
  }

  /** Where the bridge listens now (undefined: Synapse's pushes fail as if the bridge were down). */
  setBridge(url: string | undefined): void {
    this.bridgeUrl = url;
  }

  /** Where Synapse listens. */
  setUpstream(url: string): void {
    this.upstream = url;
  }

  /** What restarts the homeserver, for `restartAfterNextSends`. */
  onRestart(hook: () => Promise<void>): void {
    this.restartHook = hook;
  }

  get violations(): readonly Violation[] {
    return this.violationList;
  }

  /** To-device events held back by `holdToDevice`, while it holds. */
  private heldToDevice: Record<string, unknown>[] | undefined;
  private lateTransactions = 0;

  /**
   * From now on, the to-device events (MSC2409) of the transactions Synapse pushes are held back
   * (the rest goes on), until `release` hands them to the bridge in a transaction of their own:
   * room keys that arrive after the messages they open, as when a sender's client shares them late.
   */
  holdToDevice(): { release(): Promise<void> } {
    this.heldToDevice = [];
    return {
      release: async () => {
        const held = this.heldToDevice ?? [];
        this.heldToDevice = undefined;
        if (this.bridgeUrl === undefined) throw new Error('the bridge is not running');
        const txnId = `proxy-late-to-device-${++this.lateTransactions}`;
        const res = await fetch(`${this.bridgeUrl}/_matrix/app/v1/transactions/${txnId}`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${this.options.hsToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ events: [], 'de.sorunome.msc2409.to_device': held }),
        });
        if (res.status !== 200)
          throw new Error(`the bridge answered the late to-device events ${res.status}`);
      },
    };
  }

  /** The transaction as the bridge gets it: without its to-device events while they are held. */
  private holdingToDevice(ex: Exchange): Exchange {
    const held = this.heldToDevice;
    if (held === undefined || !isObject(ex.json)) return ex;
    const body = { ...ex.json };
    for (const field of ['de.sorunome.msc2409.to_device', 'to_device']) {
      const list = body[field];
      if (Array.isArray(list)) held.push(...(list as Record<string, unknown>[]));
      delete body[field];
    }
    const raw = Buffer.from(JSON.stringify(body));
    return { ...ex, json: body, raw };
  }

  /** Forgets the previous test: requests, transactions, violations and planned faults. */
  reset(): void {
    this.heldToDevice = undefined;
    this.requests.length = 0;
    this.transactions.length = 0;
    this.departures.length = 0;
    this.violationList.length = 0;
    this.faults.clear();
    this.losingAnswers = 0;
    this.refusingConnections = 0;
    this.failingPings = 0;
    this.restartsAfterSend = 0;
    this.holding = undefined;
    this.swallowing = [];
  }

  takeViolations(): Violation[] {
    return this.violationList.splice(0);
  }

  assertNoViolations(): void {
    if (this.restartFailure !== undefined) throw this.restartFailure;
    if (this.violationList.length === 0) return;
    const lines = this.violationList.map((v) => `- [${v.where}] ${v.context}: ${v.path} ${v.message}`);
    throw new Error(`the bridge departed from the Matrix specification:\n${lines.join('\n')}`);
  }

  // ---- faults -------------------------------------------------------------------------------------

  rateLimitNext(count: number, retryAfterMs: number, match?: FaultMatch): void {
    this.faults.add(count, { kind: 'rate_limit', retryAfterMs }, match);
  }

  failNext(count: number, status: 500 | 502 | 503 | 504, match?: FaultMatch): void {
    this.faults.add(count, { kind: 'status', status }, match);
  }

  dropNext(count: number, match?: FaultMatch): void {
    this.faults.add(count, { kind: 'drop' }, match);
  }

  /** The next `n` transactions reach the bridge, but Synapse hears 502: it sends them again. */
  loseTransactionResponses(n: number): void {
    this.losingAnswers += n;
  }

  /** The next `n` transactions do not reach the bridge (502 to Synapse), as if it were unreachable. */
  failTransactionConnections(n: number): void {
    this.refusingConnections += n;
  }

  /**
   * The bridge's next `n` pings reach it through Synapse, but Synapse's answer becomes 502, as
   * Synapse answers when its retry timer fires at the same moment (`AlreadyCalled`).
   */
  failNextPingsAfterDelivery(n: number): void {
    this.failingPings += n;
  }

  /**
   * The bridge's next `n` sends are stored by Synapse, then the connection to the bridge drops and
   * Synapse restarts (forgetting the transaction ids it keeps in memory) before the bridge hears.
   */
  restartAfterNextSends(n: number): void {
    this.restartsAfterSend += n;
  }

  /**
   * The next transaction is held: the bridge gets only the first half of it, Synapse no answer,
   * until Synapse goes away (a test kills it then, leaving the transaction unsent in Synapse's
   * database); then the request to the bridge is cut off. Resolves with it when it arrives.
   */
  holdNextTransaction(): Promise<{ txnId: string; eventIds: string[] }> {
    return new Promise((resolve) => (this.holding = resolve));
  }

  /**
   * The next transaction whose events `match` never reaches the bridge, and Synapse hears 200: what
   * Synapse's appservice recovery race leaves behind (a transaction written while it has the bridge
   * marked down, in the instant its recovery ends, and never sent), which a real Synapse shows only
   * by chance.
   */
  swallowTransaction(match: (events: readonly Record<string, unknown>[]) => boolean): void {
    this.swallowing.push(match);
  }

  /** Resolves when no transaction is in flight and none came for `quietMs`. */
  async transactionsIdle(quietMs = 500): Promise<void> {
    for (;;) {
      const quiet = Date.now() - this.lastTransactionAt;
      if (this.inFlight === 0 && quiet >= quietMs) return;
      await new Promise((r) => setTimeout(r, Math.max(50, quietMs - quiet)));
    }
  }

  async close(): Promise<void> {
    for (const server of [this.clientServer, this.asServer]) {
      if (server === undefined) continue;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  // ---- client side --------------------------------------------------------------------------------

  private async serveClient(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const ex = await readExchange(req);
    const { method, url } = ex;
    const header = ex.headers.authorization;
    const token =
      header?.startsWith('Bearer ') === true ? header.slice(7) : url.searchParams.get('access_token');
    const fromBridge = token === this.options.asToken;
    const userId = fromBridge ? (url.searchParams.get('user_id') ?? 'the bot') : undefined;
    const context = `${method} ${url.pathname}`;
    let operationId: string | undefined;

    const found = this.clientApi.match(method, url.pathname);
    if (typeof found === 'string') {
      this.report(fromBridge, 'request', context, [
        { path: 'path', message: 'is not an endpoint of the client-server API' },
      ]);
    } else {
      const parts = {
        query: url.searchParams,
        contentType: ex.headers['content-type'],
        body: ex.json,
        rawBody: ex.raw,
        extraQuery: fromBridge ? ['user_id', 'device_id', 'ts', 'org.matrix.msc3202.device_id'] : [],
      };
      const candidates = found.map((m) => ({
        ...m,
        problems: this.clientApi.validateRequest(m.operation, { ...parts, pathParams: m.pathParams }),
      }));
      const chosen = candidates.find((c) => c.problems.length === 0) ?? candidates[0]!;
      operationId = chosen.operation.operationId;
      if (url.searchParams.has('ts') && !['sendMessage', 'setRoomStateWithKey'].includes(operationId)) {
        chosen.problems.push({ path: 'query parameter ts', message: 'is only defined for sending events' });
      }
      this.report(fromBridge, 'request', `${context} (${operationId})`, chosen.problems);
      if (fromBridge && chosen.problems.length === 0) this.checkSentEvent(operationId, chosen.pathParams, ex);
    }

    const record = (status: number, fault?: FaultKind['kind']): void => {
      this.requests.push({
        method,
        path: url.pathname,
        operationId,
        viaAppservice: fromBridge,
        userId,
        status,
        ...(fault === undefined ? {} : { fault }),
      });
    };

    const fault = this.faults.take({ operationId, method, path: url.pathname, fromAppservice: fromBridge });
    if (fault !== undefined) {
      if (fault.kind === 'drop') {
        record(0, 'drop');
        res.socket?.destroy();
        return;
      }
      const status = fault.kind === 'rate_limit' ? 429 : fault.status;
      const body =
        fault.kind === 'rate_limit'
          ? {
              errcode: 'M_LIMIT_EXCEEDED',
              error: 'Too many requests (injected by the test)',
              retry_after_ms: fault.retryAfterMs,
            }
          : { errcode: 'M_UNKNOWN', error: `injected ${status} from the test` };
      record(status, fault.kind);
      sendJson(
        res,
        status,
        body,
        fault.kind === 'rate_limit' ? { 'retry-after': String(Math.ceil(fault.retryAfterMs / 1000)) } : {},
      );
      return;
    }

    let answer: Answer;
    try {
      answer = await forward(this.upstream, ex);
    } catch (err) {
      record(502);
      sendJson(res, 502, {
        errcode: 'M_UNKNOWN',
        error: `the homeserver is unreachable: ${(err as Error).message}`,
      });
      return;
    }

    if (fromBridge && operationId === 'sendMessage' && answer.status === 200 && this.restartsAfterSend > 0) {
      this.restartsAfterSend--;
      record(0, 'drop');
      res.socket?.destroy();
      try {
        await this.restartHook?.();
      } catch (err) {
        this.restartFailure = err as Error;
      }
      return;
    }
    if (fromBridge && operationId === 'pingAppservice' && answer.status === 200 && this.failingPings > 0) {
      this.failingPings--;
      record(502, 'status');
      sendJson(res, 502, { errcode: 'M_BAD_STATUS', error: 'AlreadyCalled (injected by the test)' });
      return;
    }
    record(answer.status);
    res.writeHead(answer.status, answer.headers);
    res.end(answer.body);
  }

  /** An event the bridge sends, as the room will hold it, against its schema. */
  private checkSentEvent(operationId: string, params: Record<string, string>, ex: Exchange): void {
    if (operationId !== 'sendMessage' && operationId !== 'setRoomStateWithKey') return;
    if (!isObject(ex.json)) return;
    const type = params['eventType'] ?? '';
    const event: Record<string, unknown> = {
      event_id: '$checked-by-the-proxy',
      type,
      sender: ex.url.searchParams.get('user_id') ?? '@bot:example.test',
      room_id: params['roomId'],
      origin_server_ts: Date.now(),
      content: ex.json,
      unsigned: {},
      ...(operationId === 'setRoomStateWithKey' ? { state_key: params['stateKey'] ?? '' } : {}),
    };
    this.report(true, 'event', `${type} sent to ${params['roomId']}`, this.events.validateRoomEvent(event));
  }

  // ---- appservice side ----------------------------------------------------------------------------

  private async serveAppservice(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const ex = await readExchange(req);
    const { method, url } = ex;
    const context = `${method} ${url.pathname}`;
    const found = this.appserviceApi.match(method, url.pathname);
    const operation = typeof found === 'string' ? undefined : found[0]!.operation;
    if (operation === undefined) {
      this.report(false, 'transaction', context, [
        { path: 'path', message: 'is not an endpoint of the application service API' },
      ]);
    } else {
      this.report(
        false,
        'transaction',
        `${context} (${operation.operationId})`,
        this.appserviceApi.validateRequest(operation, {
          pathParams: typeof found === 'string' ? {} : found[0]!.pathParams,
          query: url.searchParams,
          contentType: ex.headers['content-type'],
          body: ex.json,
          rawBody: ex.raw,
        }),
      );
    }
    const isTransaction = operation?.operationId === 'sendTransaction';
    const txnId = isTransaction ? decodeURIComponent(url.pathname.split('/').pop() ?? '') : '';
    const events =
      isTransaction && isObject(ex.json) && Array.isArray(ex.json['events'])
        ? (ex.json['events'] as Record<string, unknown>[])
        : [];
    const lists = isTransaction && isObject(ex.json) ? ex.json['org.matrix.msc3202.device_lists'] : undefined;
    const changed = isObject(lists) && Array.isArray(lists['changed']) ? lists['changed'].map(String) : [];
    const note = (bridgeStatus: number, toldSynapse: number): void => {
      if (!isTransaction) return;
      this.transactions.push({
        txnId,
        events,
        eventIds: events.map((e) => String(e['event_id'])),
        deviceListsChanged: changed,
        bridgeStatus,
        toldSynapse,
      });
    };

    if (isTransaction) {
      this.inFlight++;
      this.lastTransactionAt = Date.now();
    }
    try {
      const swallow = isTransaction ? this.swallowing.findIndex((match) => match(events)) : -1;
      if (swallow >= 0) {
        this.swallowing.splice(swallow, 1);
        note(0, 200);
        sendJson(res, 200, {});
        return;
      }
      if (isTransaction && this.holding !== undefined && this.bridgeUrl !== undefined) {
        // Half the body goes on to the bridge; the rest never does, and the request to the bridge
        // is cut off when Synapse goes away, as when Synapse dies in the middle of sending.
        const held = this.holding;
        this.holding = undefined;
        const closed = new Promise((r) => res.once('close', r));
        const partial = forwardPartially(this.bridgeUrl, ex);
        held({ txnId, eventIds: events.map((e) => String(e['event_id'])) });
        await closed;
        partial.destroy();
        note(0, 0);
        return;
      }
      if (isTransaction && this.refusingConnections > 0) {
        this.refusingConnections--;
        note(0, 502);
        sendJson(res, 502, {
          errcode: 'M_UNKNOWN',
          error: 'the bridge is unreachable (injected by the test)',
        });
        return;
      }
      if (this.bridgeUrl === undefined) {
        note(0, 502);
        sendJson(res, 502, { errcode: 'M_UNKNOWN', error: 'the bridge is not running' });
        return;
      }
      let answer: Answer;
      try {
        answer = await forward(this.bridgeUrl, isTransaction ? this.holdingToDevice(ex) : ex);
      } catch (err) {
        note(0, 502);
        sendJson(res, 502, {
          errcode: 'M_UNKNOWN',
          error: `the bridge is unreachable: ${(err as Error).message}`,
        });
        return;
      }
      if (operation !== undefined) {
        let parsed: unknown = answer.body.toString('utf8');
        try {
          parsed = JSON.parse(parsed as string) as unknown;
        } catch {
          // reported by the response check
        }
        this.report(
          true,
          'appservice',
          `the bridge's answer to ${context} (${operation.operationId})`,
          this.appserviceApi.validateResponse(operation, answer.status, 'application/json', parsed),
        );
      }
      if (isTransaction && answer.status === 200 && this.losingAnswers > 0) {
        this.losingAnswers--;
        note(200, 502);
        sendJson(res, 502, { errcode: 'M_UNKNOWN', error: 'the answer was lost (injected by the test)' });
        return;
      }
      note(answer.status, answer.status);
      res.writeHead(answer.status, answer.headers);
      res.end(answer.body);
    } finally {
      if (isTransaction) {
        this.inFlight--;
        this.lastTransactionAt = Date.now();
      }
    }
  }

  private report(byBridge: boolean, where: string, context: string, problems: SchemaProblem[]): void {
    const list = byBridge ? this.violationList : this.departures;
    for (const p of problems) list.push({ where, context, path: p.path, message: p.message });
  }
}

function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Server> {
  const server = createServer(handler);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function readExchange(req: IncomingMessage): Promise<Exchange> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const raw = Buffer.concat(chunks);
  const contentType = req.headers['content-type'];
  let json: unknown;
  if (raw.length > 0 && (contentType === undefined || contentType.startsWith('application/json'))) {
    try {
      json = JSON.parse(raw.toString('utf8')) as unknown;
    } catch {
      json = undefined;
    }
  }
  return {
    method: req.method ?? 'GET',
    url: new URL(req.url ?? '/', 'http://proxy'),
    headers: req.headers,
    raw,
    json,
  };
}

/** Passes the request on unchanged and reads the whole answer. */
function forward(base: string, ex: Exchange): Promise<Answer> {
  const target = new URL(`${ex.url.pathname}${ex.url.search}`, base);
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(ex.headers)) if (v !== undefined && !HOP_HEADERS.has(k)) headers[k] = v;
  headers['content-length'] = String(ex.raw.length);
  return new Promise((resolve, reject) => {
    const out = request(target, { method: ex.method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const h: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(res.headers))
          if (v !== undefined && !HOP_HEADERS.has(k)) h[k] = v;
        resolve({ status: res.statusCode ?? 502, headers: h, body: Buffer.concat(chunks) });
      });
    });
    out.on('error', reject);
    out.end(ex.raw);
  });
}

/** The request's headers and the first half of its body, and no more until destroyed. */
function forwardPartially(base: string, ex: Exchange): ClientRequest {
  const target = new URL(`${ex.url.pathname}${ex.url.search}`, base);
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(ex.headers)) if (v !== undefined && !HOP_HEADERS.has(k)) headers[k] = v;
  headers['content-length'] = String(ex.raw.length);
  const out = request(target, { method: ex.method, headers });
  out.on('error', () => undefined);
  out.write(ex.raw.subarray(0, Math.floor(ex.raw.length / 2)));
  return out;
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}
