/**
 * The homeserver's JSON calls over node:http(s) with keep-alive agents, without matrix-bot-sdk's
 * request stack (the `request` library: option parsing, redirects, a qs encoder and a log line per
 * call), which cost more than the rest of the HTTP work of a native -> Matrix message
 * (docs/BENCHMARKS.md). Same contract as the SDK's `doHttpRequest` for what it serves: the body is
 * JSON (or a Buffer with its content type), the answer's JSON is returned; an answer carrying an
 * `errcode` rejects with the SDK's MatrixError, any other non-2xx with `{ statusCode, body }`, a
 * network failure or a timeout with the socket's error. Raw answers (media) stay with the SDK.
 */
import http from 'node:http';
import https from 'node:https';
import { MatrixError } from 'matrix-bot-sdk';

const AGENTS: Record<string, http.Agent> = {
  'http:': new http.Agent({ keepAlive: true }),
  'https:': new https.Agent({ keepAlive: true }),
};

/** A query parameter value this encoder takes; anything else is left to the SDK. */
type QueryValue = string | number | boolean | null | undefined | readonly (string | number | boolean)[];

/** Whether every value of `qs` is one this module encodes (nested objects are the SDK's). */
export function plainQuery(qs: Record<string, unknown> | null | undefined): boolean {
  if (!qs) return true;
  for (const v of Object.values(qs)) {
    if (v === null || v === undefined) continue;
    if (Array.isArray(v)) {
      if (!v.every((x) => ['string', 'number', 'boolean'].includes(typeof x))) return false;
    } else if (!['string', 'number', 'boolean'].includes(typeof v)) return false;
  }
  return true;
}

/** `?a=1&b=x&b=y`, as the SDK's encoder writes it: arrays repeated, undefined left out, null empty. */
export function queryString(qs: Record<string, unknown> | null | undefined): string {
  if (!qs) return '';
  const parts: string[] = [];
  for (const [key, value] of Object.entries(qs as Record<string, QueryValue>)) {
    if (value === undefined) continue;
    const k = encodeURIComponent(key);
    if (value === null) parts.push(`${k}=`);
    else if (Array.isArray(value)) for (const v of value) parts.push(`${k}=${encodeURIComponent(String(v))}`);
    else parts.push(`${k}=${encodeURIComponent(String(value))}`);
  }
  return parts.length === 0 ? '' : `?${parts.join('&')}`;
}

export interface JsonCall {
  readonly method: string;
  /** The homeserver's base URL, e.g. `https://matrix.example.org` (a path prefix is kept). */
  readonly baseUrl: string;
  /** From `/`, without the query. */
  readonly path: string;
  readonly query?: Record<string, unknown> | null | undefined;
  readonly body?: unknown;
  /** For a Buffer body. */
  readonly contentType?: string | undefined;
  readonly accessToken?: string | undefined;
  readonly timeoutMs: number;
}

/** Makes the call; resolves with the answer's JSON (or text, if it is not JSON). */
export function jsonCall(call: JsonCall): Promise<unknown> {
  const base = new URL(call.baseUrl);
  const transport = base.protocol === 'https:' ? https : http;
  const agent = AGENTS[base.protocol];
  const headers: http.OutgoingHttpHeaders = {};
  if (call.accessToken) headers.Authorization = `Bearer ${call.accessToken}`;
  let payload: Buffer | string | undefined;
  if (call.body !== undefined && call.body !== null) {
    if (Buffer.isBuffer(call.body)) {
      payload = call.body;
      headers['Content-Type'] = call.contentType ?? 'application/octet-stream';
    } else {
      payload = JSON.stringify(call.body);
      headers['Content-Type'] = 'application/json';
    }
    headers['Content-Length'] = Buffer.byteLength(payload);
  }
  const prefix = base.pathname.endsWith('/') ? base.pathname.slice(0, -1) : base.pathname;
  return new Promise((resolve, reject) => {
    const req = transport.request(
      {
        method: call.method,
        protocol: base.protocol,
        hostname: base.hostname.startsWith('[') ? base.hostname.slice(1, -1) : base.hostname,
        port: base.port || undefined,
        path: `${prefix}${call.path}${queryString(call.query)}`,
        headers,
        agent,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // not JSON: the text is the answer (and the error's body)
          }
          const status = res.statusCode ?? 0;
          if (typeof body === 'object' && body !== null && 'errcode' in body) {
            reject(new MatrixError(body as ConstructorParameters<typeof MatrixError>[0], status));
          } else if (status < 200 || status >= 300) {
            reject(Object.assign(new Error(`HTTP ${status}`), { statusCode: status, body }));
          } else {
            resolve(body);
          }
        });
      },
    );
    req.setTimeout(call.timeoutMs, () => req.destroy(new Error(`no answer within ${call.timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}
