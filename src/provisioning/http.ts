/**
 * The provisioning API's HTTP plumbing: errors as Matrix-style `{errcode, error}` answers, request
 * bodies read with a cap and parsed with their nesting bounded, JSON answers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseJsonBounded } from '../util/json.js';

/** The largest request body taken, in bytes (the largest real one is a broadcast's text). */
export const MAX_BODY_BYTES = 64 * 1024;

/** A refusal: answered with `status` and `{errcode, error}`, never logged with the request's secrets. */
export class ProvisioningError extends Error {
  constructor(
    readonly status: number,
    readonly errcode: string,
    message: string,
  ) {
    super(message);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    // Integration managers and admin panels call from a browser (as mautrix bridges allow).
    'access-control-allow-origin': '*',
  });
  res.end(text);
}

export function sendError(res: ServerResponse, err: ProvisioningError): void {
  sendJson(res, err.status, { errcode: err.errcode, error: err.message });
}

/**
 * The request's JSON body as an object; `{}` when there is none. Refuses a body over the cap
 * (413 M_TOO_LARGE, before reading it when Content-Length says so), one that is not JSON
 * (400 M_NOT_JSON) and JSON that is not an object (400 M_BAD_JSON).
 */
export async function readJsonObject(req: IncomingMessage): Promise<Record<string, unknown>> {
  const declared = Number(req.headers['content-length'] ?? '0');
  const tooLarge = () =>
    new ProvisioningError(413, 'M_TOO_LARGE', `the request body is over ${MAX_BODY_BYTES} bytes`);
  if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw tooLarge();
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  const parsed = parseJsonBounded(text, 16);
  if (!parsed.ok) {
    throw parsed.reason === 'too_deep'
      ? new ProvisioningError(400, 'M_BAD_JSON', 'the request body nests deeper than any request of this API')
      : new ProvisioningError(400, 'M_NOT_JSON', 'the request body is not JSON');
  }
  const value = parsed.value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ProvisioningError(400, 'M_BAD_JSON', 'the request body must be a JSON object');
  }
  return value as Record<string, unknown>;
}
