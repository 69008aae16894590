import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../observability/logger.js';

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>;

/**
 * The bridge's own HTTP listener: health, the provider's JWKS, and (in later layers) metrics and
 * hosted media. Routes are exact paths (per method), or path prefixes (any method, so the handler can
 * answer 405 itself); an exact route wins over a prefix, a longer prefix over a shorter one.
 * Anything else is a JSON 404.
 */
export class HttpListener {
  private readonly routes = new Map<string, Handler>();
  private readonly prefixes: { prefix: string; handler: Handler }[] = [];
  private readonly server: http.Server;

  constructor(private readonly log: Logger) {
    this.server = http.createServer((req, res) => void this.dispatch(req, res));
    this.server.keepAliveTimeout = 5_000;
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 30_000;
  }

  route(method: string, path: string, handler: Handler): void {
    this.routes.set(`${method} ${path}`, handler);
  }

  /** Every request whose path starts with `prefix` (which should end in "/"), whatever its method. */
  routePrefix(prefix: string, handler: Handler): void {
    this.prefixes.push({ prefix, handler });
    this.prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  /** Where the listener is bound, once listening. */
  get address(): AddressInfo | undefined {
    const a = this.server.address();
    return typeof a === 'object' && a !== null ? a : undefined;
  }

  /** Stops accepting connections and waits for open requests to finish. */
  async close(): Promise<void> {
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    await closed;
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] as string;
    const exact = this.routes.get(`${req.method} ${path}`);
    const prefix = exact ? undefined : this.prefixes.find((p) => path.startsWith(p.prefix));
    const handler = exact ?? prefix?.handler;
    try {
      if (handler) await handler(req, res);
      else sendJson(res, 404, { error: 'not_found', message: `no route for ${req.method} ${path}` });
    } catch (err) {
      // The route, not the path: under a prefix the rest of the path can be a capability (a media token).
      const route = prefix ? `${prefix.prefix}…` : path;
      this.log.error({ err, method: req.method, route }, 'HTTP handler failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal', message: 'internal error' });
      else res.destroy();
    }
  }
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * The request target as a URL, never throwing: appended to the base rather than resolved against it,
 * so "//x" stays a path instead of naming a host (or making `new URL` throw).
 */
export function requestUrl(target: string | undefined, base: string): URL {
  const t = target ?? '/';
  try {
    return new URL(`${base}${t.startsWith('/') ? '' : '/'}${t}`);
  } catch {
    return new URL(`${base}/`);
  }
}
