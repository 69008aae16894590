/**
 * The emulator's admin HTTP API: JSON over plain HTTP, for tests and operators. It inspects
 * (stats, accounts, queue metadata, profiles), creates native users and sets their profiles,
 * injects the faults of `emulator.faults`, restarts the gateway listener and rotates its keys.
 *
 * It can change everything, so it is guarded three ways: it listens on loopback unless the
 * configuration deliberately opens it (with a token); with a token every request must carry it; and
 * without one only requests whose Host header names a loopback host are served, so a web page that
 * rebinds its DNS name to 127.0.0.1 cannot drive it. A request body must be JSON
 * (`application/json`, which a browser cannot send cross-origin without a preflight).
 *
 * It never returns a private key or a ciphertext body: queue items are described by their metadata
 * and sizes only.
 *
 * This file is the HTTP side (listening, the guards, bodies, replies) and the one routing table;
 * the endpoints live in emulator/admin/, one file per subject.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { InteropError } from '../src/errors.js';
import { componentLogger, type Logger } from '../src/observability/logger.js';
import { requestUrl } from '../src/util/http-listener.js';
import { jsonDepthExceeds, MAX_JSON_DEPTH } from '../src/util/json.js';
import { isLoopbackHost } from './config.js';
import {
  AdminError,
  type AdminContext,
  type AdminTarget,
  type Endpoint,
  type Reply,
} from './admin/endpoint.js';
import {
  delay,
  disconnect,
  dropNext,
  presentCertificate,
  refuseConnections,
  replayLastDelivered,
  resetFaults,
} from './admin/faults.js';
import { restartGateway, rotateKeys } from './admin/gateway-control.js';
import { changeParticipants, createGroup, leaveGroup, listGroups, setSubject } from './admin/groups.js';
import { accounts, queues, stats } from './admin/inspection.js';
import { createNativeUser, sendAsNativeUser } from './admin/native-users.js';
import { setNativeProfile, viewProfile } from './admin/profiles.js';

// The names this module exported before its endpoints moved to emulator/admin/.
export { AdminError, type AdminErrorCode, type AdminTarget } from './admin/endpoint.js';
export { expiredCertChain } from './admin/faults.js';
export { ADMIN_MAX_QUEUE_ITEMS } from './admin/inspection.js';

/** Request bodies larger than this are refused before they are read. */
export const ADMIN_MAX_BODY_BYTES = 64 * 1024;

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

// --- the server ------------------------------------------------------------------------------------

type Method = 'GET' | 'POST';

/** Every admin endpoint by path and method (docs/EMULATOR.md, "Admin API"). */
const ROUTES: ReadonlyMap<string, Partial<Record<Method, Endpoint>>> = new Map([
  ['/admin/stats', { GET: stats }],
  ['/admin/accounts', { GET: accounts }],
  ['/admin/queues', { GET: queues }],
  ['/admin/native-users', { POST: createNativeUser }],
  ['/admin/native-users/send', { POST: sendAsNativeUser }],
  ['/admin/native-users/profile', { POST: setNativeProfile }],
  ['/admin/profiles', { GET: viewProfile }],
  ['/admin/groups', { GET: listGroups, POST: createGroup }],
  ['/admin/groups/participants', { POST: changeParticipants }],
  ['/admin/groups/leave', { POST: leaveGroup }],
  ['/admin/groups/subject', { POST: setSubject }],
  ['/admin/faults/drop', { POST: dropNext }],
  ['/admin/faults/delay', { POST: delay }],
  ['/admin/faults/replay', { POST: replayLastDelivered }],
  ['/admin/faults/certificate', { POST: presentCertificate }],
  ['/admin/faults/refuse', { POST: refuseConnections }],
  ['/admin/faults/disconnect', { POST: disconnect }],
  ['/admin/faults/reset', { POST: resetFaults }],
  ['/admin/restart', { POST: restartGateway }],
  ['/admin/keys/rotate', { POST: rotateKeys }],
]);

export class AdminServer {
  readonly #server: http.Server;
  readonly #context: AdminContext;
  readonly #tokenDigest: Buffer | undefined;
  readonly #log: Logger;
  readonly #maxBody: number;

  private constructor(options: AdminServerOptions) {
    this.#tokenDigest = options.token === undefined ? undefined : sha256(options.token);
    this.#log = options.logger ? componentLogger(options.logger, 'admin') : pino({ level: 'silent' });
    this.#maxBody = options.maxBodyBytes ?? ADMIN_MAX_BODY_BYTES;
    const now = options.clock ?? (() => Math.floor(Date.now() / 1000));
    this.#context = { target: options.target, now, startedAt: now() };
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

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    let pathname = '/';
    let reply: Reply;
    try {
      const url = requestUrl(req.url, 'http://admin.invalid');
      pathname = url.pathname;
      this.#authorize(req);
      const methods = ROUTES.get(pathname);
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
      reply = await handler(this.#context, { body, query: Object.fromEntries(url.searchParams) });
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
    if (jsonDepthExceeds(text, MAX_JSON_DEPTH)) {
      throw new AdminError(
        400,
        'admin_bad_json',
        `the request body nests deeper than ${MAX_JSON_DEPTH} levels`,
      );
    }
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
}

// --- helpers ---------------------------------------------------------------------------------------

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
