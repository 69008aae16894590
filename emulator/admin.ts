/**
 * The emulator's admin HTTP API: JSON over plain HTTP, for tests and operators. It inspects
 * (stats, accounts, queue metadata), creates native users, injects the faults of `emulator.faults`,
 * restarts the gateway listener and rotates its keys.
 *
 * It can change everything, so it is guarded three ways: it listens on loopback unless the
 * configuration deliberately opens it (with a token); with a token every request must carry it; and
 * without one only requests whose Host header names a loopback host are served, so a web page that
 * rebinds its DNS name to 127.0.0.1 cannot drive it. A request body must be JSON
 * (`application/json`, which a browser cannot send cross-origin without a preflight).
 *
 * It never returns a private key or a ciphertext body: queue items are described by their metadata
 * and sizes only.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { create } from '@bufbuild/protobuf';
import { pino } from 'pino';
import { z } from 'zod';
import { InteropError } from '../src/errors.js';
import { componentLogger, type Logger } from '../src/observability/logger.js';
import { decodeCertChain, encodeCertChain, issueLeaf } from '../src/protocol/cert-chain.js';
import { CertChain_NoiseCertificateSchema } from '../src/protocol/gen/interop/v1/handshake_pb.js';
import { parseJid } from '../src/protocol/stanza/index.js';
import { isLoopbackHost } from './config.js';
import type { Emulator } from './gateway.js';
import { keyFiles, rootKeyFingerprint, type CertificateInfo, type EmulatorKeys } from './keys.js';

/** Request bodies larger than this are refused before they are read. */
export const ADMIN_MAX_BODY_BYTES = 64 * 1024;
/** `GET /admin/queues` lists at most this many items (and says how many there are). */
export const ADMIN_MAX_QUEUE_ITEMS = 1000;

/** What the admin API drives: implemented by RunningEmulator (emulator/main.ts). */
export interface AdminTarget {
  /** The gateway now running (a new object after `restartGateway`). */
  readonly gateway: Emulator;
  readonly keys: EmulatorKeys;
  /** The data directory, whose keys/intermediate.json signs the "expired" certificate fault. */
  readonly dataDir: string;
  /** Stops the gateway listener and starts it again on the same port, database and keys. */
  restartGateway(): Promise<Emulator>;
  /** A new Noise static key and leaf on disk, used at once by new connections. */
  rotateKeys(validityDays?: number): EmulatorKeys;
}

export interface AdminServerOptions {
  target: AdminTarget;
  /** Default 127.0.0.1; the configuration refuses a non-loopback host without a token. */
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** When set, every request needs `Authorization: Bearer <token>`. A secret: never logged. */
  token?: string;
  logger?: Logger;
  maxBodyBytes?: number;
  /** Seconds since the epoch; the system clock by default. */
  clock?: () => number;
}

export type AdminErrorCode =
  | 'admin_bad_json'
  | 'admin_invalid_request'
  | 'admin_unsupported_media_type'
  | 'admin_body_too_large'
  | 'admin_unauthorized'
  | 'admin_host_refused'
  | 'admin_not_found'
  | 'admin_method_not_allowed'
  | 'admin_phone_invalid'
  | 'admin_user_exists'
  | 'admin_nothing_to_replay'
  | 'admin_intermediate_unavailable'
  | 'admin_internal';

/** A refused admin request: its HTTP status, and `{error: code, message}` as the body. */
export class AdminError extends InteropError {
  declare readonly code: AdminErrorCode;

  constructor(
    readonly status: number,
    code: AdminErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(code, message);
  }
}

// --- request bodies --------------------------------------------------------------------------------

const expecting = (phrase: string) => ({ error: () => phrase });
const ACCOUNT_PHRASE = 'a bare account JID such as "4915112345678@wa.interop" or "alice@acme.interop"';
const account = () =>
  z.string(expecting(ACCOUNT_PHRASE)).refine((s) => {
    try {
      const jid = parseJid(s);
      return jid.user !== undefined && jid.device === undefined;
    } catch {
      return false;
    }
  }, expecting(ACCOUNT_PHRASE));
const int = (min: number, max: number) =>
  z
    .number(expecting(`an integer from ${min} to ${max}`))
    .int(expecting(`an integer from ${min} to ${max}`))
    .min(min, expecting(`an integer from ${min} to ${max}`))
    .max(max, expecting(`an integer from ${min} to ${max}`));

const E164 = /^\+[1-9][0-9]{6,14}$/;

const bodies = {
  empty: z.strictObject({}),
  nativeUser: z.strictObject({ phone: z.string(expecting('an E.164 number such as "+4915112345678"')) }),
  drop: z.strictObject({ account: account(), count: int(0, 1_000_000) }),
  delay: z.strictObject({
    account: z.union([z.literal('*'), account()], expecting(`"*" or ${ACCOUNT_PHRASE}`)),
    ms: int(0, 600_000),
  }),
  replay: z.strictObject({ account: account() }),
  certificate: z.strictObject({
    kind: z.enum(['foreign', 'expired', 'valid'], expecting('one of "foreign", "expired", "valid"')),
  }),
  refuse: z.strictObject({ refuse: z.boolean(expecting('true or false')) }),
  disconnect: z.strictObject({ account: account() }),
  rotate: z.strictObject({ validityDays: int(1, 3650).optional() }),
};

const queueQuery = z.strictObject({ account: account().optional() });

// --- the server ------------------------------------------------------------------------------------

type Method = 'GET' | 'POST';

interface AdminRequest {
  body: unknown;
  query: Record<string, string>;
}

interface Reply {
  status: number;
  body: unknown;
}

type Handler = (req: AdminRequest) => Reply | Promise<Reply>;

export class AdminServer {
  readonly #server: http.Server;
  readonly #target: AdminTarget;
  readonly #tokenDigest: Buffer | undefined;
  readonly #log: Logger;
  readonly #maxBody: number;
  readonly #now: () => number;
  readonly #startedAt: number;
  readonly #routes: Map<string, Partial<Record<Method, Handler>>>;

  private constructor(options: AdminServerOptions) {
    this.#target = options.target;
    this.#tokenDigest = options.token === undefined ? undefined : sha256(options.token);
    this.#log = options.logger ? componentLogger(options.logger, 'admin') : pino({ level: 'silent' });
    this.#maxBody = options.maxBodyBytes ?? ADMIN_MAX_BODY_BYTES;
    this.#now = options.clock ?? (() => Math.floor(Date.now() / 1000));
    this.#startedAt = this.#now();
    this.#routes = this.#routeTable();
    this.#server = http.createServer((req, res) => void this.#handle(req, res));
    this.#server.headersTimeout = 10_000;
    this.#server.requestTimeout = 30_000;
  }

  static async start(options: AdminServerOptions): Promise<AdminServer> {
    const admin = new AdminServer(options);
    await new Promise<void>((resolve, reject) => {
      admin.#server.once('error', reject);
      admin.#server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
        admin.#server.off('error', reject);
        resolve();
      });
    });
    admin.#log.info(
      { host: admin.host, port: admin.port, auth: admin.authenticates ? 'bearer token' : 'loopback only' },
      'admin API listening',
    );
    return admin;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  get host(): string {
    return (this.#server.address() as AddressInfo).address;
  }

  /** Whether requests need the bearer token. */
  get authenticates(): boolean {
    return this.#tokenDigest !== undefined;
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  #routeTable(): Map<string, Partial<Record<Method, Handler>>> {
    const target = this.#target;
    const faults = () => target.gateway.faults;
    const ok = (body: unknown = {}): Reply => ({ status: 200, body });
    return new Map<string, Partial<Record<Method, Handler>>>([
      ['/admin/stats', { GET: () => ok(this.#stats()) }],
      ['/admin/accounts', { GET: () => ok({ accounts: this.#accounts() }) }],
      ['/admin/queues', { GET: (req) => ok(this.#queues(parse(queueQuery, req.query, 'query'))) }],
      ['/admin/native-users', { POST: (req) => this.#createNativeUser(parse(bodies.nativeUser, req.body)) }],
      [
        '/admin/faults/drop',
        {
          POST: (req) => {
            const b = parse(bodies.drop, req.body);
            faults().dropNext(b.account, b.count);
            return ok(b);
          },
        },
      ],
      [
        '/admin/faults/delay',
        {
          POST: (req) => {
            const b = parse(bodies.delay, req.body);
            faults().delay(b.account, b.ms);
            return ok(b);
          },
        },
      ],
      [
        '/admin/faults/replay',
        {
          POST: (req) => {
            const b = parse(bodies.replay, req.body);
            if (!faults().replayLastDelivered(b.account)) {
              throw new AdminError(
                409,
                'admin_nothing_to_replay',
                `no connected device of ${b.account} has been delivered a message on its current connection: ` +
                  'connect it and deliver one first',
              );
            }
            return ok({ account: b.account, replayed: true });
          },
        },
      ],
      [
        '/admin/faults/certificate',
        {
          POST: (req) => {
            const { kind } = parse(bodies.certificate, req.body);
            if (kind === 'foreign') faults().presentForeignCertificate();
            else if (kind === 'valid') faults().presentCertificateChain(undefined);
            else faults().presentCertificateChain(expiredCertChain(target.keys, target.dataDir, this.#now()));
            return ok({ kind });
          },
        },
      ],
      [
        '/admin/faults/refuse',
        {
          POST: (req) => {
            const b = parse(bodies.refuse, req.body);
            faults().refuseConnections(b.refuse);
            return ok(b);
          },
        },
      ],
      [
        '/admin/faults/disconnect',
        {
          POST: (req) => {
            const b = parse(bodies.disconnect, req.body);
            return ok({ account: b.account, closed: faults().disconnect(b.account) });
          },
        },
      ],
      [
        '/admin/faults/reset',
        {
          POST: (req) => {
            parse(bodies.empty, req.body);
            faults().reset();
            return ok();
          },
        },
      ],
      [
        '/admin/restart',
        {
          POST: async (req) => {
            parse(bodies.empty, req.body);
            const gateway = await target.restartGateway();
            return ok({ gateway: { host: gateway.host, port: gateway.port } });
          },
        },
      ],
      [
        '/admin/keys/rotate',
        {
          POST: (req) => {
            const b = parse(bodies.rotate, req.body);
            return ok({ keys: keysView(target.rotateKeys(b.validityDays)) });
          },
        },
      ],
    ]);
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    let pathname = '/';
    let reply: Reply;
    try {
      const url = new URL(req.url ?? '/', 'http://admin.invalid');
      pathname = url.pathname;
      this.#authorize(req);
      const methods = this.#routes.get(pathname);
      if (!methods) {
        throw new AdminError(
          404,
          'admin_not_found',
          `no admin endpoint ${pathname}: see docs/EMULATOR.md, "Admin API"`,
        );
      }
      const handler = methods[method as Method];
      if (!handler) {
        const allowed = Object.keys(methods).join(', ');
        throw new AdminError(
          405,
          'admin_method_not_allowed',
          `${pathname} does not accept ${method}: use ${allowed}`,
          { allow: allowed },
        );
      }
      const body = method === 'POST' ? await this.#readBody(req) : {};
      reply = await handler({ body, query: Object.fromEntries(url.searchParams) });
    } catch (err) {
      reply = this.#errorReply(err, res);
    }
    this.#log.info({ method, path: pathname, status: reply.status }, 'admin request');
    send(res, reply);
  }

  #authorize(req: http.IncomingMessage): void {
    if (this.#tokenDigest) {
      const header = req.headers.authorization ?? '';
      const match = /^Bearer +(\S+)\s*$/i.exec(header);
      if (!match?.[1] || !timingSafeEqual(sha256(match[1]), this.#tokenDigest)) {
        throw new AdminError(
          401,
          'admin_unauthorized',
          header === ''
            ? 'this admin API needs "Authorization: Bearer <token>" with the admin.token of the emulator configuration'
            : 'the bearer token is not the admin.token of the emulator configuration',
          { 'www-authenticate': 'Bearer realm="interop-emulator-admin"' },
        );
      }
      return;
    }
    const host = (req.headers.host ?? '').replace(/:\d+$/, '');
    if (!isLoopbackHost(host)) {
      throw new AdminError(
        403,
        'admin_host_refused',
        `the Host header "${req.headers.host ?? ''}" is not a loopback name: use http://127.0.0.1:${this.port}/ ` +
          '(or configure admin.token to accept other names)',
      );
    }
  }

  /** The JSON body; an empty body is `{}`. Refuses an oversize body before buffering it. */
  async #readBody(req: http.IncomingMessage): Promise<unknown> {
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > this.#maxBody) throw this.#tooLarge();
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > this.#maxBody) throw this.#tooLarge();
      chunks.push(chunk);
    }
    if (size === 0) return {};
    const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    if (type !== 'application/json') {
      throw new AdminError(
        415,
        'admin_unsupported_media_type',
        `a request body must be JSON sent as "Content-Type: application/json", got "${req.headers['content-type'] ?? 'none'}"`,
      );
    }
    const text = Buffer.concat(chunks).toString('utf8');
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw new AdminError(
        400,
        'admin_bad_json',
        `the request body is not valid JSON: ${(err as Error).message}`,
      );
    }
  }

  #tooLarge(): AdminError {
    return new AdminError(
      413,
      'admin_body_too_large',
      `a request body may be at most ${this.#maxBody} bytes`,
      { connection: 'close' },
    );
  }

  #errorReply(err: unknown, res: http.ServerResponse): Reply {
    if (err instanceof AdminError) {
      for (const [name, value] of Object.entries(err.headers)) res.setHeader(name, value);
      return { status: err.status, body: { error: err.code, message: err.message } };
    }
    if (err instanceof InteropError) {
      // A failure of the emulator itself (key rotation, restart): its code and advice, as is.
      this.#log.error({ code: err.code }, err.message);
      return { status: 500, body: { error: err.code, message: err.message } };
    }
    this.#log.error({ err }, 'admin request failed');
    return {
      status: 500,
      body: {
        error: 'admin_internal',
        message: `the emulator failed to carry out the request (${(err as Error).message ?? String(err)}); see its log`,
      },
    };
  }

  // --- views ---------------------------------------------------------------------------------------

  #stats() {
    const gateway = this.#target.gateway;
    return {
      ...gateway.stats(),
      connectedDevices: gateway.connectedDevices(),
      uptimeSeconds: this.#now() - this.#startedAt,
      gateway: { gatewayId: gateway.gatewayId, host: gateway.host, port: gateway.port },
      keys: keysView(this.#target.keys),
    };
  }

  #accounts() {
    const gateway = this.#target.gateway;
    const connected = gateway.connectedDevices();
    return gateway.accounts().map((a) => ({
      jid: a.jid,
      kind: a.kind,
      phone: a.phone,
      enlisted: a.kind === 'native' || a.enlisted_identity_key !== null,
      createdAt: iso(a.created_at),
      connectedDevices: connected.filter((d) => bareOf(d) === a.jid),
    }));
  }

  #queues(query: { account?: string | undefined }) {
    const now = this.#now();
    const all = this.#target.gateway.queued(query.account);
    return {
      total: all.length,
      truncated: all.length > ADMIN_MAX_QUEUE_ITEMS,
      items: all.slice(0, ADMIN_MAX_QUEUE_ITEMS).map((q) => ({
        seq: q.seq,
        kind: q.kind,
        id: q.stanza_id,
        sender: q.from_jid,
        recipient: q.recipient_jid,
        recipientDevice: q.recipient_device,
        type: q.msg_type,
        encType: q.enc_type,
        mediaType: q.media_type,
        size: q.payload.length,
        ageSeconds: Math.max(0, now - q.stored_at),
        expiresInSeconds: q.expires_at - now,
      })),
    };
  }

  #createNativeUser(body: { phone: string }): Reply {
    if (!E164.test(body.phone)) {
      throw new AdminError(
        400,
        'admin_phone_invalid',
        `phone: expected an E.164 number ("+", then 7 to 15 digits, not starting with 0), found ${JSON.stringify(body.phone)}`,
      );
    }
    const gateway = this.#target.gateway;
    const jid = `${body.phone.slice(1)}@wa.interop`;
    if (gateway.accounts().some((a) => a.jid === jid)) {
      throw new AdminError(409, 'admin_user_exists', `the native user ${body.phone} (${jid}) already exists`);
    }
    return { status: 201, body: { jid: gateway.createNativeUser(body.phone), phone: body.phone } };
  }
}

// --- helpers ---------------------------------------------------------------------------------------

/** Validates against a strict schema; every problem in one 400, "field: expected X, found Y". */
function parse<T extends z.ZodType>(schema: T, value: unknown, what = 'body'): z.infer<T> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new AdminError(
      400,
      'admin_invalid_request',
      `the request ${what} must be a JSON object, found ${Array.isArray(value) ? 'a list' : JSON.stringify(value)}`,
    );
  }
  const result = schema.safeParse(value);
  if (result.success) return result.data as z.infer<T>;
  const problems = result.error.issues.flatMap((issue) => {
    const key = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((k) => `unknown field "${k}"`);
    }
    const found = issue.path.reduce<unknown>(
      (node, k) =>
        typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[String(k)] : undefined,
      value,
    );
    return [
      `${key}: expected ${issue.message}, found ${found === undefined ? 'nothing' : JSON.stringify(found)}`,
    ];
  });
  throw new AdminError(400, 'admin_invalid_request', problems.join('; '));
}

function send(res: http.ServerResponse, reply: Reply): void {
  const text = JSON.stringify(reply.body);
  res.writeHead(reply.status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}

function bareOf(deviceJid: string): string {
  return deviceJid.replace(/:\d+@/, '@');
}

function certificateView(c: CertificateInfo) {
  return { serial: c.serial, notBefore: iso(c.notBefore), notAfter: iso(c.notAfter) };
}

/** Public keys and their fingerprints (first 8 bytes of SHA-256): never a private key. */
function keysView(keys: EmulatorKeys) {
  return {
    rootKey: Buffer.from(keys.rootPublicKey).toString('base64'),
    rootKeyFingerprint: rootKeyFingerprint(keys.rootPublicKey),
    staticKey: Buffer.from(keys.staticKey.publicKey).toString('base64'),
    staticKeyFingerprint: rootKeyFingerprint(keys.staticKey.publicKey),
    intermediate: certificateView(keys.intermediate),
    leaf: certificateView(keys.leaf),
  };
}

/**
 * The running chain with its leaf replaced by one that expired a day ago: same key and serial,
 * signed by the real intermediate (its private key read from keys/intermediate.json), so a client
 * pinned to the real root gets past the signature checks and fails with `cert_expired`.
 */
export function expiredCertChain(keys: EmulatorKeys, dataDir: string, now: number): Uint8Array {
  const file = keyFiles(dataDir).intermediate;
  const unavailable = (why: string) =>
    new AdminError(
      409,
      'admin_intermediate_unavailable',
      `cannot sign an expired leaf with the real intermediate (${why}); use kind "foreign" instead, ` +
        'or reload the keys (SIGHUP, POST /admin/keys/rotate) and try again',
    );
  let fields: { publicKey?: unknown; privateKey?: unknown };
  try {
    fields = JSON.parse(readFileSync(file, 'utf8')) as typeof fields;
  } catch (err) {
    throw unavailable(`${file} is unreadable: ${(err as Error).message}`);
  }
  const publicKey =
    typeof fields.publicKey === 'string' ? Buffer.from(fields.publicKey, 'base64') : undefined;
  const privateKey =
    typeof fields.privateKey === 'string' ? Buffer.from(fields.privateKey, 'base64') : undefined;
  const chain = decodeCertChain(keys.certChain);
  if (!publicKey || !privateKey || privateKey.length !== 32) throw unavailable(`${file} holds no key pair`);
  if (!publicKey.equals(Buffer.from(chain.intermediate.details.key))) {
    throw unavailable(`${file} holds another intermediate than the running chain`);
  }
  const leaf = issueLeaf({
    intermediatePrivateKey: new Uint8Array(privateKey),
    serial: keys.leaf.serial,
    issuerSerial: chain.intermediate.details.serial,
    key: keys.staticKey.publicKey,
    notBefore: now - 2 * 86_400,
    notAfter: now - 86_400,
  });
  const intermediate = create(CertChain_NoiseCertificateSchema, {
    details: chain.intermediate.detailsBytes,
    signature: chain.intermediate.signature,
  });
  return encodeCertChain({ leaf, intermediate });
}
