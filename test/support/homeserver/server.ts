import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  AppserviceNamespaces,
  TransactionPusher,
  appserviceCall,
  type Registration,
  type TransactionAttempt,
} from './appservice.js';
import { EventSchemas } from './event-schemas.js';
import { FaultPlan, type FaultKind, type FaultMatch } from './faults.js';
import type { SchemaProblem } from './json-schema.js';
import { OpenApi, type Operation } from './openapi.js';
import { Room, RoomRuleError, newEventId, type ClientEvent, type Membership } from './room.js';
import { SpecFiles, isObject, sharedSpecFiles } from './spec-files.js';

export interface StandInHomeserverOptions {
  /** The appservice registration; `url` may be null until the bridge listens (see `setAppserviceUrl`). */
  readonly registration: Registration;
  /** Default `example.test`. */
  readonly serverName?: string;
  /** Backoff for resending a transaction the appservice did not acknowledge. Default 20 ms doubling to 500 ms. */
  readonly transactionRetry?: { readonly initialMs: number; readonly maxMs: number };
  /** `m.upload.size`: uploads above it get 413 M_TOO_LARGE. Default 50 MiB. */
  readonly uploadLimitBytes?: number;
  /** Read the spec from elsewhere than ../shared/specs/matrix/data. */
  readonly specDir?: string;
  /**
   * Check every request, answer, event and transaction against the spec (default true). The
   * end-to-end benchmark turns it off: a real homeserver does not spend that CPU on the bridge's
   * behalf. Requests are still matched to their operation; nothing is reported as a violation.
   */
  readonly validate?: boolean;
}

/** A departure from the spec, by the bridge (request, event, appservice answer) or by the stand-in itself. */
export interface Violation {
  /** `request`, `event`, `response` (the stand-in's own answer), `transaction`, `appservice`, `unimplemented`. */
  readonly where: string;
  /** `PUT /_matrix/client/v3/rooms/!x:example.test/send/m.room.message/1 (sendMessage)`, or a transaction. */
  readonly context: string;
  /** The offending field, e.g. `body.content.msgtype`, `query parameter limit`. */
  readonly path: string;
  readonly message: string;
}

/** Every request the homeserver received, in arrival order. */
export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly operationId: string | undefined;
  /** The user the request acted as (after `user_id` masquerading), if authenticated. */
  readonly userId: string | undefined;
  readonly viaAppservice: boolean;
  readonly body: unknown;
  readonly status: number;
  readonly response: unknown;
  readonly fault?: FaultKind['kind'];
}

/** Media in the content repository. */
export interface StoredMedia {
  readonly bytes: Buffer;
  readonly contentType: string;
  readonly filename: string | undefined;
  readonly uploader: string;
}

interface Account {
  readonly userId: string;
  profile: Record<string, unknown>;
}

interface Auth {
  readonly userId: string;
  readonly token: string;
  readonly deviceId: string | undefined;
  readonly appservice: boolean;
}

interface Ctx {
  readonly op: Operation;
  readonly params: Record<string, string>;
  readonly query: URLSearchParams;
  readonly body: Record<string, unknown>;
  readonly raw: Buffer;
  readonly contentType: string | undefined;
  readonly auth: Auth | undefined;
}

interface Reply {
  readonly status: number;
  readonly json?: unknown;
  readonly bytes?: Buffer;
  readonly headers?: Record<string, string>;
}

/** A Matrix error response (client-server spec, "Standard error response"). */
export class MatrixError extends Error {
  constructor(
    readonly errcode: string,
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

type Handler = (c: Ctx) => Reply | Promise<Reply>;
type EventListener = (event: ClientEvent) => void;

const ok = (json: unknown = {}): Reply => ({ status: 200, json });
const SUPPORTED_VERSIONS = [
  'v1.1',
  'v1.2',
  'v1.3',
  'v1.4',
  'v1.5',
  'v1.6',
  'v1.7',
  'v1.8',
  'v1.9',
  'v1.10',
  'v1.11',
  'v1.12',
  'v1.13',
];
const ROOM_VERSION = '11';

/**
 * The stand-in Matrix homeserver: the client-server API as an application service and a few local
 * users use it, and the application service API towards the bridge, validating every request,
 * response, event and transaction against the specification's own definitions.
 */
export class StandInHomeserver {
  readonly serverName: string;
  readonly registration: Registration;
  readonly requests: RecordedRequest[] = [];
  readonly faults = new FaultPlan();
  readonly rooms = new Map<string, Room>();
  readonly media = new Map<string, StoredMedia>();
  readonly clientApi: OpenApi;
  readonly appserviceApi: OpenApi;
  readonly events: EventSchemas;
  readonly namespaces: AppserviceNamespaces;
  private readonly violationList: Violation[] = [];
  private readonly accounts = new Map<string, Account>();
  private readonly tokens = new Map<string, { userId: string; deviceId: string }>();
  private readonly txnResults = new Map<string, string>();
  private readonly listeners = new Set<EventListener>();
  private readonly typingTimers = new Set<NodeJS.Timeout>();
  private readonly pusher: TransactionPusher;
  private readonly uploadLimit: number;
  private readonly validating: boolean;
  private server: Server | undefined;
  private port = 0;

  private constructor(options: StandInHomeserverOptions) {
    const files = options.specDir === undefined ? sharedSpecFiles() : new SpecFiles(options.specDir);
    this.serverName = options.serverName ?? 'example.test';
    this.registration = { ...options.registration };
    this.clientApi = new OpenApi(files, 'api/client-server');
    this.appserviceApi = new OpenApi(files, 'api/application-service');
    this.events = new EventSchemas(files);
    this.namespaces = new AppserviceNamespaces(this.registration, this.serverName);
    this.uploadLimit = options.uploadLimitBytes ?? 50 * 1024 * 1024;
    this.validating = options.validate !== false;
    this.report(
      'registration',
      'the registration file',
      this.appserviceApi.validateAgainst(
        'api/application-service/definitions/registration.yaml',
        this.registration,
        'registration',
      ),
    );
    const retry = options.transactionRetry ?? { initialMs: 20, maxMs: 500 };
    this.pusher = new TransactionPusher(
      this.registration,
      this.appserviceApi,
      {
        retryInitialMs: retry.initialMs,
        retryMaxMs: retry.maxMs,
        maxEventsPerTransaction: 100,
        validate: this.validating,
      },
      (context, problems) =>
        this.report(context.includes('answer') ? 'appservice' : 'transaction', context, problems),
    );
    this.ensureAccount(this.namespaces.botUserId);
  }

  /** Starts listening on 127.0.0.1 on a free port. */
  static async start(options: StandInHomeserverOptions): Promise<StandInHomeserver> {
    const hs = new StandInHomeserver(options);
    const server = createServer((req, res) => void hs.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    hs.server = server;
    hs.port = (server.address() as AddressInfo).port;
    return hs;
  }

  /** The homeserver's base URL, e.g. `http://127.0.0.1:41234`. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Where to push transactions, once the bridge's appservice listener is up. */
  setAppserviceUrl(url: string): void {
    this.registration.url = url;
  }

  // ---- violations ---------------------------------------------------------------------------------

  get violations(): readonly Violation[] {
    return this.violationList;
  }

  /** Returns the violations so far and forgets them (for tests that provoke violations on purpose). */
  takeViolations(): Violation[] {
    return this.violationList.splice(0);
  }

  /** Throws an error listing every violation, each with the offending field. */
  assertNoViolations(): void {
    if (this.violationList.length === 0) return;
    const lines = this.violationList.map((v) => `  - [${v.where}] ${v.context}: ${v.path} ${v.message}`);
    throw new Error(
      `the stand-in homeserver saw ${this.violationList.length} spec violation(s):\n${lines.join('\n')}`,
    );
  }

  private report(where: string, context: string, problems: SchemaProblem[]): void {
    for (const p of problems) this.violationList.push({ where, context, path: p.path, message: p.message });
  }

  // ---- appservice side ----------------------------------------------------------------------------

  /** Every transaction attempt pushed to the appservice, in order, retries included. */
  get transactions(): readonly TransactionAttempt[] {
    return this.pusher.attempts;
  }

  /** Resolves when every event so far has been acknowledged by the appservice. */
  transactionsIdle(): Promise<void> {
    return this.pusher.idle();
  }

  /** The appservice's next N answers to transactions are treated as lost, so the same txnId is resent. */
  loseTransactionResponses(n: number): void {
    this.pusher.ignoreNextResponses(n);
  }

  /** The next N transaction attempts fail to connect. */
  failTransactionConnections(n: number): void {
    this.pusher.failNextConnections(n);
  }

  /** The next acknowledged transaction is delivered a second time under the same txnId. */
  duplicateNextTransaction(): void {
    this.pusher.duplicateNext();
  }

  /**
   * The next `n` appservice pings reach the appservice, and are then answered 502
   * `M_CONNECTION_FAILED` all the same, as Synapse does when its retry of the appservice fires at
   * the same moment (`AlreadyCalled`).
   */
  failNextPingsAfterDelivery(n: number): void {
    this.pingFaults += n;
  }

  private pingFaults = 0;

  /**
   * Transaction ids start from 1 again, as Synapse's do after a restart with nothing left unsent
   * (it keeps the counter only with its queue): new events come under ids the appservice has seen.
   */
  restartTransactionNumbering(): void {
    this.pusher.restartNumbering();
  }

  /**
   * A call from the homeserver to the appservice outside the transaction stream (user and room
   * queries, a transaction with a wrong token): the answer is checked against the application
   * service API like every other. `token` defaults to the hs_token; pass null to send none.
   */
  async callAppservice(
    method: 'GET' | 'PUT' | 'POST',
    path: string,
    body?: unknown,
    token: string | null = this.registration.hs_token,
  ): Promise<{ status: number; body: unknown } | { error: string }> {
    const base = (this.registration.url ?? '').replace(/\/$/, '');
    const found = this.appserviceApi.match(method, path);
    if (typeof found === 'string') {
      throw new Error(`${method} ${path} is not an endpoint of the application service API`);
    }
    const operation = found[0]!.operation;
    let outcome: { status: number; body: unknown } | { error: string };
    try {
      const res = await fetch(`${base}${path}`, {
        method,
        headers: {
          ...(token === null ? {} : { authorization: `Bearer ${token}` }),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text) as unknown;
      } catch {
        // reported by the response check below
      }
      outcome = { status: res.status, body: parsed };
    } catch (err) {
      return { error: (err as Error).message };
    }
    this.report(
      'appservice',
      `the appservice's answer to ${method} ${path} (${operation.operationId})`,
      this.appserviceApi.validateResponse(operation, outcome.status, 'application/json', outcome.body),
    );
    return outcome;
  }

  // ---- faults -------------------------------------------------------------------------------------

  /** The next `count` matching requests get 429 M_LIMIT_EXCEEDED with `retry_after_ms`. */
  rateLimitNext(count: number, retryAfterMs: number, match?: FaultMatch): void {
    this.faults.add(count, { kind: 'rate_limit', retryAfterMs }, match);
  }

  /** The next `count` matching requests get this 5xx status (M_UNKNOWN). */
  failNext(count: number, status: 500 | 502 | 503 | 504, match?: FaultMatch): void {
    this.faults.add(count, { kind: 'status', status }, match);
  }

  /** The next `count` matching requests have their connection destroyed without an answer. */
  dropNext(count: number, match?: FaultMatch): void {
    this.faults.add(count, { kind: 'drop' }, match);
  }

  // ---- users and state, for tests -----------------------------------------------------------------

  /** Registers a local (non-appservice) user directly and returns an access token for it. */
  registerLocalUser(localpart: string, displayname?: string): { userId: string; accessToken: string } {
    const userId = `@${localpart}:${this.serverName}`;
    if (this.namespaces.claimsExclusively(userId)) {
      throw new Error(`${userId} is in the appservice's exclusive namespace: pick another local user`);
    }
    const account = this.ensureAccount(userId);
    if (displayname !== undefined) account.profile['displayname'] = displayname;
    return { userId, accessToken: this.issueToken(userId) };
  }

  room(roomId: string): Room | undefined {
    return this.rooms.get(roomId);
  }

  profile(userId: string): Record<string, unknown> | undefined {
    return this.accounts.get(userId)?.profile;
  }

  isRegistered(userId: string): boolean {
    return this.accounts.has(userId);
  }

  /** Called for every event the homeserver accepts, in order. Returns an unsubscribe function. */
  onEvent(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves with the first event (already stored or future) that satisfies the predicate. */
  waitForEvent(predicate: (e: ClientEvent) => boolean): Promise<ClientEvent> {
    for (const room of this.rooms.values()) {
      const found = room.timeline.find(predicate);
      if (found !== undefined) return Promise.resolve(found);
    }
    return new Promise((resolve) => {
      const off = this.onEvent((e) => {
        if (predicate(e)) {
          off();
          resolve(e);
        }
      });
    });
  }

  async close(): Promise<void> {
    for (const t of this.typingTimers) clearTimeout(t);
    await this.pusher.close();
    const server = this.server;
    if (server !== undefined) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  // ---- HTTP ---------------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://stand-in');
    const method = req.method ?? 'GET';
    const contentType = req.headers['content-type'];
    let body: unknown;
    if (raw.length > 0 && (contentType === undefined || contentType.startsWith('application/json'))) {
      try {
        body = JSON.parse(raw.toString('utf8')) as unknown;
      } catch {
        body = undefined;
      }
    }
    const context = `${method} ${url.pathname}`;
    const record = (
      reply: Reply,
      operationId: string | undefined,
      auth: Auth | undefined,
      fault?: FaultKind['kind'],
    ): void => {
      this.requests.push({
        method,
        path: url.pathname,
        query: url.searchParams,
        operationId,
        userId: auth?.userId,
        viaAppservice: auth?.appservice ?? false,
        body: body ?? (raw.length > 0 ? raw : undefined),
        status: reply.status,
        response: reply.json ?? reply.bytes,
        ...(fault === undefined ? {} : { fault }),
      });
    };

    const found = this.clientApi.match(method, url.pathname);
    if (typeof found === 'string') {
      const reply = error(
        found === 'wrong_method' ? 405 : 404,
        'M_UNRECOGNIZED',
        `${context} is not an endpoint of the client-server API`,
      );
      this.report('request', context, [
        { path: 'path', message: 'is not an endpoint of the client-server API' },
      ]);
      record(reply, undefined, undefined);
      send(res, reply);
      return;
    }

    // Authenticate first: which query parameters are allowed depends on who asks.
    let auth: Auth | undefined;
    const first = found[0]!;
    try {
      auth = this.authenticate(req, url.searchParams, first.operation);
    } catch (err) {
      const reply = errorReply(err);
      record(reply, first.operation.operationId, undefined);
      send(res, reply);
      return;
    }
    const extraQuery = auth?.appservice === true ? ['user_id', 'device_id', 'ts'] : [];
    const parts = { query: url.searchParams, contentType, body, rawBody: raw, extraQuery };
    const candidates = found.map((m) => ({
      ...m,
      // Without validation, a path of several operations is still told apart by checking.
      problems:
        this.validating || found.length > 1
          ? this.clientApi.validateRequest(m.operation, { ...parts, pathParams: m.pathParams })
          : [],
    }));
    const chosen = candidates.find((c) => c.problems.length === 0) ?? candidates[0]!;
    const { operation, pathParams } = chosen;
    const opContext = `${context} (${operation.operationId})`;
    if (
      url.searchParams.has('ts') &&
      !['sendMessage', 'setRoomStateWithKey'].includes(operation.operationId)
    ) {
      chosen.problems.push({
        path: 'query parameter ts',
        message: 'is only defined for sending events (timestamp massaging)',
      });
    }

    if (chosen.problems.length > 0) {
      this.report('request', opContext, chosen.problems);
      const firstProblem = chosen.problems[0]!;
      const errcode =
        raw.length > 0 && body === undefined && contentType?.startsWith('application/json') !== false
          ? 'M_NOT_JSON'
          : firstProblem.message.includes('required')
            ? 'M_MISSING_PARAM'
            : firstProblem.path.startsWith('body')
              ? 'M_BAD_JSON'
              : 'M_INVALID_PARAM';
      const reply = error(400, errcode, `${firstProblem.path} ${firstProblem.message}`);
      record(reply, operation.operationId, auth);
      this.sendValidated(res, operation, reply);
      return;
    }

    const fault = this.faults.take({
      operationId: operation.operationId,
      method,
      path: url.pathname,
      fromAppservice: auth?.appservice ?? false,
    });
    if (fault !== undefined) {
      if (fault.kind === 'drop') {
        record({ status: 0 }, operation.operationId, auth, 'drop');
        res.socket?.destroy();
        return;
      }
      const reply =
        fault.kind === 'rate_limit'
          ? {
              ...error(429, 'M_LIMIT_EXCEEDED', 'Too many requests (injected by the test)', {
                retry_after_ms: fault.retryAfterMs,
              }),
              headers: { 'retry-after': String(Math.ceil(fault.retryAfterMs / 1000)) },
            }
          : error(fault.status, 'M_UNKNOWN', `injected ${fault.status} from the test`);
      record(reply, operation.operationId, auth, fault.kind);
      this.sendValidated(res, operation, reply);
      return;
    }

    const handler = this.handlers[operation.operationId];
    let reply: Reply;
    if (handler === undefined) {
      this.report('unimplemented', opContext, [
        {
          path: 'operation',
          message: `${operation.operationId} is in the spec but the stand-in does not serve it: add it to test/support/homeserver/server.ts`,
        },
      ]);
      reply = error(
        404,
        'M_UNRECOGNIZED',
        `the stand-in homeserver does not implement ${operation.operationId}`,
      );
    } else {
      try {
        reply = await handler({
          op: operation,
          params: pathParams,
          query: url.searchParams,
          body: isObject(body) ? body : {},
          raw,
          contentType,
          auth,
        });
      } catch (err) {
        reply = errorReply(err);
      }
    }
    if (operation.operationId === 'sendMessage' && reply.status === 200 && this.restartsAfterSend > 0) {
      // Stored, then the server went down before answering, and came back without its memory of
      // transaction ids (Synapse keeps them in memory only).
      this.restartsAfterSend--;
      this.txnResults.clear();
      record({ status: 0 }, operation.operationId, auth, 'drop');
      res.socket?.destroy();
      return;
    }
    record(reply, operation.operationId, auth);
    this.sendValidated(res, operation, reply);
  }

  private restartsAfterSend = 0;

  /**
   * The next `n` sends are stored, then answered by a dropped connection and forgotten by
   * transaction id, as when Synapse restarts between storing an event and answering: a resend
   * under the same transaction id makes a second event unless the sender looks first.
   */
  restartAfterNextSends(n: number): void {
    this.restartsAfterSend += n;
  }

  private sendValidated(res: ServerResponse, operation: Operation, reply: Reply): void {
    if (this.validating && (reply.json !== undefined || reply.bytes === undefined)) {
      this.report(
        'response',
        `the stand-in's ${reply.status} answer to ${operation.operationId}`,
        this.clientApi.validateResponse(operation, reply.status, 'application/json', reply.json ?? {}),
      );
    }
    send(res, reply);
  }

  /** Bearer token to user; appservice masquerading through `user_id` (application service API, "Identity assertion"). */
  private authenticate(req: IncomingMessage, query: URLSearchParams, op: Operation): Auth | undefined {
    const security = (op.node.value as Record<string, unknown>)['security'];
    const schemes = Array.isArray(security) ? (security as Record<string, unknown>[]) : [];
    const optional = schemes.length === 0 || schemes.some((s) => Object.keys(s).length === 0);
    const header = req.headers.authorization;
    const token = header?.startsWith('Bearer ') === true ? header.slice(7) : undefined;
    if (token === undefined) {
      if (optional) return undefined;
      throw new MatrixError(
        'M_MISSING_TOKEN',
        401,
        'Missing access token: send Authorization: Bearer <token>',
      );
    }
    if (token === this.registration.as_token) {
      const userId = query.get('user_id') ?? this.namespaces.botUserId;
      if (!this.namespaces.ownsUser(userId)) {
        throw new MatrixError(
          'M_FORBIDDEN',
          403,
          `Application service cannot masquerade as ${userId}: outside its namespaces`,
        );
      }
      if (!this.accounts.has(userId) && op.operationId !== 'register') {
        throw new MatrixError('M_FORBIDDEN', 403, `Application service has not registered ${userId}`);
      }
      return { userId, token, deviceId: undefined, appservice: true };
    }
    if (schemes.some((s) => 'appserviceAccessTokenBearer' in s)) {
      throw new MatrixError('M_FORBIDDEN', 403, 'This endpoint needs the application service token');
    }
    const t = this.tokens.get(token);
    if (t === undefined) {
      throw new MatrixError('M_UNKNOWN_TOKEN', 401, 'Unrecognised access token', { soft_logout: false });
    }
    return { userId: t.userId, token, deviceId: t.deviceId, appservice: false };
  }

  // ---- handlers, by operationId -------------------------------------------------------------------

  private readonly handlers: Record<string, Handler> = {
    getVersions: () => ok({ versions: SUPPORTED_VERSIONS, unstable_features: {} }),

    getTokenOwner: (c) => {
      const a = need(c.auth);
      return ok(
        a.deviceId === undefined
          ? { user_id: a.userId, is_guest: false }
          : { user_id: a.userId, device_id: a.deviceId, is_guest: false },
      );
    },

    register: (c) => this.register(c),

    createRoom: async (c) => {
      const invite = Array.isArray(c.body['invite']) ? (c.body['invite'] as unknown[]) : [];
      for (const userId of invite) if (typeof userId === 'string') await this.queryUnknownUser(userId);
      return this.createRoom(need(c.auth).userId, c.body);
    },

    sendMessage: (c) =>
      this.idempotent(c, 'send', () => {
        const sender = need(c.auth).userId;
        const room = this.joinedRoom(c.params['roomId']!, sender);
        room.authorizeEvent(sender, c.params['eventType']!, undefined);
        return this.emit(room, { type: c.params['eventType']!, sender, content: c.body }, this.massagedTs(c))
          .event_id;
      }),

    redactEvent: (c) =>
      this.idempotent(c, 'redact', () => {
        const sender = need(c.auth).userId;
        const room = this.joinedRoom(c.params['roomId']!, sender);
        const target = room.event(c.params['eventId']!);
        if (target === undefined) throw new MatrixError('M_NOT_FOUND', 404, 'Event not found');
        if (target.sender !== sender && room.powerLevel(sender) < room.requiredLevel('redact')) {
          throw new MatrixError('M_FORBIDDEN', 403, `${sender} may not redact others' events`);
        }
        const content: Record<string, unknown> = { redacts: target.event_id };
        if (typeof c.body['reason'] === 'string') content['reason'] = c.body['reason'];
        const event = this.emit(room, {
          type: 'm.room.redaction',
          sender,
          content,
          redacts: target.event_id,
        });
        target.content = {};
        target.unsigned = { ...target.unsigned, redacted_because: event };
        return event.event_id;
      }),

    setRoomStateWithKey: (c) => {
      const sender = need(c.auth).userId;
      const room = this.joinedRoom(c.params['roomId']!, sender);
      const type = c.params['eventType']!;
      const stateKey = c.params['stateKey'] ?? '';
      if (type === 'm.room.member') {
        const membership = c.body['membership'];
        if (typeof membership !== 'string')
          throw new MatrixError('M_BAD_JSON', 400, 'membership is required');
        if (membership !== 'join' || room.membership(stateKey) !== 'join') {
          room.authorizeMembership(sender, stateKey, membership as Membership);
        } else if (sender !== stateKey) {
          throw new MatrixError('M_FORBIDDEN', 403, 'only a member may change their own member event');
        }
      } else {
        room.authorizeEvent(sender, type, stateKey);
        if (type === 'm.room.power_levels') room.authorizePowerLevels(sender, c.body);
      }
      return ok({
        event_id: this.emit(room, { type, sender, content: c.body, state_key: stateKey }, this.massagedTs(c))
          .event_id,
      });
    },

    getRoomStateWithKey: (c) => {
      const room = this.memberRoom(c.params['roomId']!, need(c.auth).userId);
      const e = room.stateEvent(c.params['eventType']!, c.params['stateKey'] ?? '');
      if (e === undefined) throw new MatrixError('M_NOT_FOUND', 404, 'Event not found');
      return ok(c.query.get('format') === 'event' ? e : e.content);
    },

    getOneRoomEvent: (c) => {
      const room = this.memberRoom(c.params['roomId']!, need(c.auth).userId);
      const e = room.event(c.params['eventId']!);
      if (e === undefined) throw new MatrixError('M_NOT_FOUND', 404, 'Event not found');
      return ok(e);
    },

    getJoinedRooms: (c) => {
      const userId = need(c.auth).userId;
      return ok({
        joined_rooms: [...this.rooms.values()]
          .filter((r) => r.membership(userId) === 'join')
          .map((r) => r.roomId),
      });
    },

    getRoomState: (c) => ok([...this.memberRoom(c.params['roomId']!, need(c.auth).userId).state.values()]),

    getMembersByRoom: (c) => {
      const room = this.memberRoom(c.params['roomId']!, need(c.auth).userId);
      return ok({ chunk: [...room.state.values()].filter((e) => e.type === 'm.room.member') });
    },

    getJoinedMembersByRoom: (c) => {
      const room = this.joinedRoom(c.params['roomId']!, need(c.auth).userId);
      const joined: Record<string, unknown> = {};
      for (const userId of room.members('join')) {
        const content = room.stateEvent('m.room.member', userId)?.content ?? {};
        const entry: Record<string, unknown> = {};
        if (typeof content['displayname'] === 'string') entry['display_name'] = content['displayname'];
        if (typeof content['avatar_url'] === 'string') entry['avatar_url'] = content['avatar_url'];
        joined[userId] = entry;
      }
      return ok({ joined });
    },

    getRoomEvents: (c) => {
      const room = this.memberRoom(c.params['roomId']!, need(c.auth).userId);
      const dir = c.query.get('dir');
      const limit = Number(c.query.get('limit') ?? '10');
      const total = room.timeline.length;
      const from = c.query.get('from');
      let pos = from === null ? (dir === 'b' ? total : 0) : Number(from.replace(/^t/, ''));
      if (!Number.isInteger(pos) || pos < 0 || pos > total)
        throw new MatrixError('M_INVALID_PARAM', 400, `bad from token ${from}`);
      const start = `t${pos}`;
      let chunk: ClientEvent[];
      if (dir === 'b') {
        chunk = room.timeline.slice(Math.max(0, pos - limit), pos).reverse();
        pos = Math.max(0, pos - limit);
      } else {
        chunk = room.timeline.slice(pos, pos + limit);
        pos = Math.min(total, pos + limit);
      }
      const atEdge = dir === 'b' ? pos === 0 : pos === total;
      return ok(atEdge ? { chunk, start } : { chunk, start, end: `t${pos}` });
    },

    joinRoomById: (c) => this.join(need(c.auth).userId, c.params['roomId']!),
    joinRoom: (c) => this.join(need(c.auth).userId, c.params['roomIdOrAlias']!),

    inviteUser: async (c) => {
      const sender = need(c.auth).userId;
      const room = this.existingRoom(c.params['roomId']!);
      const target = String(c.body['user_id']);
      await this.queryUnknownUser(target);
      room.authorizeMembership(sender, target, 'invite');
      const content: Record<string, unknown> = { membership: 'invite' };
      if (typeof c.body['reason'] === 'string') content['reason'] = c.body['reason'];
      this.emitMember(room, sender, target, content);
      return ok();
    },

    leaveRoom: (c) => {
      const sender = need(c.auth).userId;
      const room = this.existingRoom(c.params['roomId']!);
      room.authorizeMembership(sender, sender, 'leave');
      const content: Record<string, unknown> = { membership: 'leave' };
      if (typeof c.body['reason'] === 'string') content['reason'] = c.body['reason'];
      this.emitMember(room, sender, sender, content);
      return ok();
    },

    setProfileField: (c) => {
      const a = need(c.auth);
      const userId = c.params['userId']!;
      const key = c.params['keyName']!;
      if (userId !== a.userId)
        throw new MatrixError('M_FORBIDDEN', 403, `${a.userId} cannot change the profile of ${userId}`);
      if (!(key in c.body))
        throw new MatrixError(
          'M_MISSING_PARAM',
          400,
          `the body must hold the property "${key}" named in the URL`,
        );
      const value = c.body[key];
      if (key === 'displayname' && typeof value !== 'string')
        throw new MatrixError('M_BAD_JSON', 400, 'displayname must be a string');
      if (
        key === 'avatar_url' &&
        (typeof value !== 'string' || !/^mxc:\/\/[^/]+\/[A-Za-z0-9_-]+$/.test(value))
      ) {
        throw new MatrixError('M_BAD_JSON', 400, 'avatar_url must be an mxc:// URI');
      }
      this.ensureAccount(userId).profile[key] = value;
      // Like Synapse: the new name and avatar propagate to the user's member events.
      if (key === 'displayname' || key === 'avatar_url') {
        for (const room of this.rooms.values()) {
          const member = room.stateEvent('m.room.member', userId);
          if (member?.content['membership'] !== 'join') continue;
          this.emitMember(room, userId, userId, { ...member.content, [key]: value });
        }
      }
      return ok();
    },

    getProfileField: (c) => {
      const value = this.accounts.get(c.params['userId']!)?.profile[c.params['keyName']!];
      if (value === undefined) throw new MatrixError('M_NOT_FOUND', 404, 'Profile field not set');
      return ok({ [c.params['keyName']!]: value });
    },

    getUserProfile: (c) => {
      const account = this.accounts.get(c.params['userId']!);
      if (account === undefined) throw new MatrixError('M_NOT_FOUND', 404, 'Profile not found');
      return ok(account.profile);
    },

    postReceipt: (c) => {
      const userId = need(c.auth).userId;
      const room = this.joinedRoom(c.params['roomId']!, userId);
      const eventId = c.params['eventId']!;
      if (room.event(eventId) === undefined)
        throw new MatrixError('M_NOT_FOUND', 404, `no event ${eventId} in the room`);
      const threadId = typeof c.body['thread_id'] === 'string' ? c.body['thread_id'] : undefined;
      this.receipt(room, userId, c.params['receiptType']!, eventId, threadId);
      return ok();
    },

    setReadMarker: (c) => {
      const userId = need(c.auth).userId;
      const room = this.joinedRoom(c.params['roomId']!, userId);
      for (const type of ['m.fully_read', 'm.read', 'm.read.private']) {
        const eventId = c.body[type];
        if (typeof eventId !== 'string') continue;
        if (room.event(eventId) === undefined)
          throw new MatrixError('M_NOT_FOUND', 404, `no event ${eventId} in the room`);
        this.receipt(room, userId, type, eventId, undefined);
      }
      return ok();
    },

    setTyping: (c) => {
      const userId = need(c.auth).userId;
      if (c.params['userId'] !== userId)
        throw new MatrixError('M_FORBIDDEN', 403, `${userId} cannot set typing for ${c.params['userId']}`);
      const room = this.joinedRoom(c.params['roomId']!, userId);
      if (c.body['typing'] === true) {
        const timeout = typeof c.body['timeout'] === 'number' ? c.body['timeout'] : 30_000;
        room.typing.set(userId, Date.now() + timeout);
        const timer = setTimeout(() => {
          this.typingTimers.delete(timer);
          if ((room.typing.get(userId) ?? Infinity) <= Date.now()) {
            room.typing.delete(userId);
            this.emitTyping(room);
          }
        }, timeout);
        timer.unref();
        this.typingTimers.add(timer);
      } else {
        room.typing.delete(userId);
      }
      this.emitTyping(room);
      return ok();
    },

    getConfigAuthed: () => ok({ 'm.upload.size': this.uploadLimit }),

    uploadContent: (c) => {
      const a = need(c.auth);
      if (c.raw.length > this.uploadLimit) {
        throw new MatrixError(
          'M_TOO_LARGE',
          413,
          `upload of ${c.raw.length} bytes exceeds m.upload.size ${this.uploadLimit}`,
        );
      }
      const mediaId = randomBytes(12).toString('base64url');
      this.media.set(`${this.serverName}/${mediaId}`, {
        bytes: c.raw,
        contentType: c.contentType ?? 'application/octet-stream',
        filename: c.query.get('filename') ?? undefined,
        uploader: a.userId,
      });
      return ok({ content_uri: `mxc://${this.serverName}/${mediaId}` });
    },

    getContentAuthed: (c) => this.download(c),
    getContentOverrideNameAuthed: (c) => this.download(c),

    pingAppservice: async (c) => {
      if (c.params['appserviceId'] !== this.registration.id) {
        throw new MatrixError('M_FORBIDDEN', 403, `this token belongs to appservice ${this.registration.id}`);
      }
      if (this.registration.url === null)
        throw new MatrixError('M_URL_NOT_SET', 400, 'the appservice has no URL');
      const body: Record<string, unknown> = {};
      if (typeof c.body['transaction_id'] === 'string') body['transaction_id'] = c.body['transaction_id'];
      const started = Date.now();
      const url = `${this.registration.url.replace(/\/$/, '')}/_matrix/app/v1/ping`;
      const outcome = await appserviceCall(url, 'POST', this.registration.hs_token, body, 5_000);
      if ('error' in outcome) {
        if (outcome.error === 'timeout')
          throw new MatrixError('M_CONNECTION_TIMEOUT', 504, 'the appservice did not answer the ping');
        throw new MatrixError('M_CONNECTION_FAILED', 502, `cannot reach the appservice: ${outcome.error}`);
      }
      this.report(
        'appservice',
        "the appservice's answer to POST /_matrix/app/v1/ping",
        this.appserviceApi.validateResponse(
          this.appserviceApi.byId('ping'),
          outcome.status,
          'application/json',
          outcome.body,
        ),
      );
      if (this.pingFaults > 0) {
        this.pingFaults--;
        throw new MatrixError('M_CONNECTION_FAILED', 502, 'AlreadyCalled (injected: the ping was delivered)');
      }
      if (outcome.status !== 200) {
        throw new MatrixError(
          'M_BAD_STATUS',
          502,
          `the appservice answered the ping with ${outcome.status}`,
          {
            status: outcome.status,
            body: typeof outcome.body === 'string' ? outcome.body : JSON.stringify(outcome.body),
          },
        );
      }
      return ok({ duration_ms: Date.now() - started });
    },
  };

  // ---- operations ---------------------------------------------------------------------------------

  private register(c: Ctx): Reply {
    const username = typeof c.body['username'] === 'string' ? c.body['username'] : undefined;
    const auth = c.auth;
    if (auth?.appservice === true) {
      if (c.body['type'] !== 'm.login.application_service') {
        throw new MatrixError(
          'M_MISSING_PARAM',
          400,
          'an appservice registers users with type m.login.application_service',
        );
      }
      if (username === undefined) throw new MatrixError('M_MISSING_PARAM', 400, 'username is required');
      const userId = `@${username}:${this.serverName}`;
      if (!this.namespaces.ownsUser(userId)) {
        throw new MatrixError('M_EXCLUSIVE', 400, `${userId} is outside the appservice's user namespaces`);
      }
      if (this.accounts.has(userId)) {
        throw new MatrixError('M_USER_IN_USE', 400, 'Desired user ID is already taken.');
      }
      this.ensureAccount(userId);
      if (c.body['inhibit_login'] === true) return ok({ user_id: userId });
      const accessToken = this.issueToken(userId);
      return ok({
        user_id: userId,
        access_token: accessToken,
        device_id: this.tokens.get(accessToken)!.deviceId,
      });
    }
    // Ordinary registration: check the name first (as Synapse does), then user-interactive auth (m.login.dummy).
    if (username !== undefined) {
      const userId = `@${username}:${this.serverName}`;
      if (this.namespaces.claimsExclusively(userId)) {
        throw new MatrixError(
          'M_EXCLUSIVE',
          400,
          `${userId} is in the exclusive namespace of an application service`,
        );
      }
      if (this.accounts.has(userId))
        throw new MatrixError('M_USER_IN_USE', 400, 'Desired user ID is already taken.');
    }
    const authData = c.body['auth'];
    if (!isObject(authData) || authData['type'] !== 'm.login.dummy') {
      return {
        status: 401,
        json: { flows: [{ stages: ['m.login.dummy'] }], params: {}, session: randomBytes(8).toString('hex') },
      };
    }
    const userId = `@${username ?? `user${randomBytes(4).toString('hex')}`}:${this.serverName}`;
    this.ensureAccount(userId);
    const accessToken = this.issueToken(userId);
    return ok({
      user_id: userId,
      access_token: accessToken,
      device_id: this.tokens.get(accessToken)!.deviceId,
    });
  }

  /** createRoom in the order the spec lists: create, creator's join, power levels, preset, initial_state, name, topic, invites. */
  /**
   * An unknown user in the appservice's user namespaces is asked about before an invite (application
   * service API, "Query user": "such as a room invite"): the appservice creates it, or says 404.
   */
  private async queryUnknownUser(userId: string): Promise<void> {
    if (this.accounts.has(userId) || !this.namespaces.ownsUser(userId) || this.registration.url === null)
      return;
    await this.callAppservice('GET', `/_matrix/app/v1/users/${encodeURIComponent(userId)}`);
  }

  private createRoom(creator: string, body: Record<string, unknown>): Reply {
    const version = typeof body['room_version'] === 'string' ? body['room_version'] : ROOM_VERSION;
    if (!/^(?:[1-9]|1[01])$/.test(version)) {
      throw new MatrixError(
        'M_UNSUPPORTED_ROOM_VERSION',
        400,
        `the stand-in supports room versions 1-11, not ${version}`,
      );
    }
    const invite = Array.isArray(body['invite']) ? (body['invite'] as string[]) : [];
    for (const userId of invite) {
      if (!this.accounts.has(userId))
        throw new MatrixError('M_NOT_FOUND', 404, `cannot invite unknown user ${userId}`);
    }
    const roomId = `!${randomBytes(9).toString('base64url')}:${this.serverName}`;
    const room = new Room(roomId, version);
    this.rooms.set(roomId, room);
    const preset = body['preset'] ?? (body['visibility'] === 'public' ? 'public_chat' : 'private_chat');
    const creation = isObject(body['creation_content']) ? body['creation_content'] : {};
    const state = (type: string, content: Record<string, unknown>, stateKey = ''): void => {
      this.emit(room, { type, sender: creator, content, state_key: stateKey });
    };
    state('m.room.create', { ...creation, room_version: version });
    const profile = this.accounts.get(creator)?.profile ?? {};
    this.emitMember(room, creator, creator, { membership: 'join', ...pickProfile(profile) });
    const users: Record<string, number> = { [creator]: 100 };
    if (preset === 'trusted_private_chat') for (const u of invite) users[u] = 100;
    const override = isObject(body['power_level_content_override'])
      ? body['power_level_content_override']
      : {};
    state('m.room.power_levels', {
      users,
      users_default: 0,
      events: {
        'm.room.name': 50,
        'm.room.power_levels': 100,
        'm.room.history_visibility': 100,
        'm.room.canonical_alias': 50,
        'm.room.avatar': 50,
        'm.room.tombstone': 100,
        'm.room.server_acl': 100,
        'm.room.encryption': 100,
      },
      events_default: 0,
      state_default: 50,
      ban: 50,
      kick: 50,
      redact: 50,
      invite: 0,
      notifications: { room: 50 },
      ...override,
    });
    state('m.room.join_rules', { join_rule: preset === 'public_chat' ? 'public' : 'invite' });
    state('m.room.history_visibility', { history_visibility: 'shared' });
    if (preset !== 'public_chat') state('m.room.guest_access', { guest_access: 'can_join' });
    for (const raw of Array.isArray(body['initial_state']) ? body['initial_state'] : []) {
      const e = raw as { type: string; state_key?: string; content: Record<string, unknown> };
      state(e.type, e.content, e.state_key ?? '');
    }
    if (typeof body['name'] === 'string') state('m.room.name', { name: body['name'] });
    if (typeof body['topic'] === 'string') state('m.room.topic', { topic: body['topic'] });
    for (const userId of invite) {
      const content: Record<string, unknown> = { membership: 'invite' };
      if (body['is_direct'] === true) content['is_direct'] = true;
      this.emitMember(room, creator, userId, content);
    }
    return ok({ room_id: roomId });
  }

  private join(userId: string, roomIdOrAlias: string): Reply {
    const room = this.existingRoom(roomIdOrAlias);
    if (room.membership(userId) !== 'join') {
      room.authorizeMembership(userId, userId, 'join');
      this.emitMember(room, userId, userId, {
        membership: 'join',
        ...pickProfile(this.accounts.get(userId)?.profile ?? {}),
      });
    }
    return ok({ room_id: room.roomId });
  }

  private download(c: Ctx): Reply {
    need(c.auth);
    const key = `${c.params['serverName']}/${c.params['mediaId']}`;
    const m = this.media.get(key);
    if (m === undefined) throw new MatrixError('M_NOT_FOUND', 404, `no media mxc://${key}`);
    const filename = c.params['fileName'] ?? m.filename;
    // Authenticated media: inline only for types that cannot run script (client-server spec, content repository).
    const inline = /^(?:image\/(?:jpeg|png|gif|webp|apng|avif)|video\/|audio\/|text\/plain)/.test(
      m.contentType,
    );
    const disposition = `${inline ? 'inline' : 'attachment'}${filename === undefined ? '' : `; filename*=utf-8''${encodeURIComponent(filename)}`}`;
    return {
      status: 200,
      bytes: m.bytes,
      headers: { 'content-type': m.contentType, 'content-disposition': disposition },
    };
  }

  private receipt(
    room: Room,
    userId: string,
    type: string,
    eventId: string,
    threadId: string | undefined,
  ): void {
    let byUser = room.receipts.get(type);
    if (byUser === undefined) room.receipts.set(type, (byUser = new Map()));
    const ts = Date.now();
    byUser.set(userId, threadId === undefined ? { eventId, ts } : { eventId, ts, threadId });
    if (type !== 'm.read') return; // private receipts and the fully-read marker are the user's own business
    const receipt: Record<string, unknown> = { ts };
    if (threadId !== undefined) receipt['thread_id'] = threadId;
    this.emitEphemeral(room, {
      type: 'm.receipt',
      room_id: room.roomId,
      content: { [eventId]: { 'm.read': { [userId]: receipt } } },
    });
  }

  private emitTyping(room: Room): void {
    this.emitEphemeral(room, {
      type: 'm.typing',
      room_id: room.roomId,
      content: { user_ids: [...room.typing.keys()] },
    });
  }

  /** Ephemeral events go to the appservice when it asked for them and one of its users is in the room. */
  private emitEphemeral(room: Room, event: Record<string, unknown>): void {
    if (this.validating)
      this.report(
        'event',
        `${String(event['type'])} in ${room.roomId}`,
        this.events.validateEphemeral(event),
      );
    if (!this.namespaces.receivesEphemeral) return;
    if (
      !room.members('join').some((u) => this.namespaces.ownsUser(u)) &&
      !this.namespaces.interestedInRoom(room.roomId)
    )
      return;
    this.pusher.enqueueEphemeral(event);
  }

  private emitMember(
    room: Room,
    sender: string,
    target: string,
    content: Record<string, unknown>,
  ): ClientEvent {
    return this.emit(room, { type: 'm.room.member', sender, content, state_key: target });
  }

  /**
   * Validates, stores and distributes an event. An event that fails its schema is refused with
   * M_BAD_JSON (and recorded as a violation), so a bridge bug cannot pass unnoticed.
   */
  private emit(
    room: Room,
    e: {
      type: string;
      sender: string;
      content: Record<string, unknown>;
      state_key?: string;
      redacts?: string;
    },
    ts?: number,
  ): ClientEvent {
    const event: ClientEvent = {
      event_id: newEventId(),
      type: e.type,
      sender: e.sender,
      room_id: room.roomId,
      origin_server_ts: ts ?? Date.now(),
      content: e.content,
      ...(e.state_key === undefined ? {} : { state_key: e.state_key }),
      ...(e.redacts === undefined ? {} : { redacts: e.redacts }),
      unsigned: {},
    };
    const problems = this.validating ? this.events.validateRoomEvent(event) : [];
    if (problems.length > 0) {
      this.report('event', `${e.type} from ${e.sender} in ${room.roomId}`, problems);
      const p = problems[0]!;
      throw new MatrixError('M_BAD_JSON', 400, `${p.path.replace(/^event\./, '')} ${p.message}`);
    }
    const before = room.members('join');
    room.append(event);
    // An appservice hears events in rooms where one of its users is (or was just) joined, events from or
    // about its users, and events in rooms of its room namespaces (application service API, "Pushing events").
    const ns = this.namespaces;
    const interested =
      ns.ownsUser(event.sender) ||
      (event.type === 'm.room.member' && ns.ownsUser(event.state_key ?? '')) ||
      ns.interestedInRoom(room.roomId) ||
      before.some((u) => ns.ownsUser(u));
    if (interested) this.pusher.enqueueEvent(event);
    for (const l of [...this.listeners]) l(event);
    return event;
  }

  private idempotent(c: Ctx, kind: string, act: () => string): Reply {
    const a = need(c.auth);
    const key = [a.token, a.userId, kind, c.params['roomId'], c.params['txnId']].join('\u0000');
    let eventId = this.txnResults.get(key);
    if (eventId === undefined) {
      eventId = act();
      this.txnResults.set(key, eventId);
    }
    return ok({ event_id: eventId });
  }

  /** Timestamp massaging (application service API): only an appservice may set `ts`. */
  private massagedTs(c: Ctx): number | undefined {
    const ts = c.query.get('ts');
    if (ts === null || c.auth?.appservice !== true) return undefined;
    if (!/^\d+$/.test(ts))
      throw new MatrixError('M_INVALID_PARAM', 400, 'ts must be a timestamp in milliseconds');
    return Number(ts);
  }

  private existingRoom(roomId: string): Room {
    const room = this.rooms.get(roomId);
    if (room === undefined) throw new MatrixError('M_NOT_FOUND', 404, `unknown room ${roomId}`);
    return room;
  }

  private joinedRoom(roomId: string, userId: string): Room {
    const room = this.rooms.get(roomId);
    if (room === undefined || room.membership(userId) !== 'join') {
      throw new MatrixError('M_FORBIDDEN', 403, `${userId} is not in room ${roomId}`);
    }
    return room;
  }

  /** Reading state or history: members, and users who were members (spec: history visibility `shared`). */
  private memberRoom(roomId: string, userId: string): Room {
    const room = this.rooms.get(roomId);
    const m = room?.membership(userId);
    if (room === undefined || m === undefined || m === 'ban') {
      throw new MatrixError('M_FORBIDDEN', 403, `${userId} is not in room ${roomId}`);
    }
    return room;
  }

  private ensureAccount(userId: string): Account {
    let account = this.accounts.get(userId);
    if (account === undefined) {
      account = { userId, profile: {} };
      this.accounts.set(userId, account);
    }
    return account;
  }

  private issueToken(userId: string): string {
    const token = `syt_${randomBytes(16).toString('base64url')}`;
    this.tokens.set(token, { userId, deviceId: randomBytes(5).toString('hex').toUpperCase() });
    return token;
  }
}

function need(auth: Auth | undefined): Auth {
  if (auth === undefined) throw new MatrixError('M_MISSING_TOKEN', 401, 'Missing access token');
  return auth;
}

function pickProfile(profile: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (typeof profile['displayname'] === 'string') out['displayname'] = profile['displayname'];
  if (typeof profile['avatar_url'] === 'string') out['avatar_url'] = profile['avatar_url'];
  return out;
}

function error(status: number, errcode: string, message: string, extra: Record<string, unknown> = {}): Reply {
  return { status, json: { errcode, error: message, ...extra } };
}

function errorReply(err: unknown): Reply {
  if (err instanceof MatrixError) return error(err.status, err.errcode, err.message, err.extra);
  if (err instanceof RoomRuleError) return error(err.status, err.errcode, err.message);
  return error(500, 'M_UNKNOWN', `stand-in homeserver bug: ${(err as Error).stack ?? String(err)}`);
}

function send(res: ServerResponse, reply: Reply): void {
  const headers: Record<string, string> = { ...reply.headers };
  let payload: Buffer;
  if (reply.bytes !== undefined) {
    payload = reply.bytes;
  } else {
    payload = Buffer.from(JSON.stringify(reply.json ?? {}));
    headers['content-type'] = 'application/json';
  }
  headers['content-length'] = String(payload.length);
  res.writeHead(reply.status, headers);
  res.end(payload);
}
