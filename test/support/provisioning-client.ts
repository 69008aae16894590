/**
 * A client of the provisioning API for the tests, checking every exchange against
 * docs/provisioning.openapi.yaml (with the OpenAPI validator the Matrix tests use on the Matrix
 * spec): each request meant to be valid must be valid, every response must be a status the
 * operation documents, with a body that matches its schema. A departure fails the call.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { OpenApi } from './homeserver/openapi.js';
import { SpecFiles } from './homeserver/spec-files.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PREFIX = '/_matrix/provision';

let spec: OpenApi | undefined;
/** The API's definition, loaded once (every YAML file of docs/: only this one has paths). */
export function provisioningSpec(): OpenApi {
  spec ??= new OpenApi(new SpecFiles(REPO), 'docs');
  return spec;
}

export interface CallOptions {
  /** `Authorization: Bearer <token>`; none when undefined. */
  readonly token?: string | undefined;
  /** `?user_id=`. */
  readonly userId?: string | undefined;
  /** A JSON body (an object), or raw text sent as it is. */
  readonly body?: unknown;
  /** A raw `Authorization` header (overrides `token`). */
  readonly authorization?: string;
  /** The request is deliberately outside the definition (a test of a refusal): not validated. */
  readonly invalid?: boolean;
}

export interface Answer {
  readonly status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly body: any;
}

export class ProvisioningClient {
  /** Every exchange, for a test that wants to see which operations it covered. */
  readonly operations = new Set<string>();

  constructor(readonly baseUrl: string) {}

  async call(method: 'GET' | 'POST', route: string, o: CallOptions = {}): Promise<Answer> {
    const query = new URLSearchParams();
    if (o.userId !== undefined) query.set('user_id', o.userId);
    const target = `${PREFIX}${route}${o.userId !== undefined ? `?${query}` : ''}`;
    const raw =
      o.body === undefined
        ? Buffer.alloc(0)
        : Buffer.from(typeof o.body === 'string' ? o.body : JSON.stringify(o.body));
    const headers: Record<string, string> = {};
    if (o.authorization !== undefined) headers['authorization'] = o.authorization;
    else if (o.token !== undefined) headers['authorization'] = `Bearer ${o.token}`;
    if (raw.length > 0) headers['content-type'] = 'application/json';
    const res = await fetch(`${this.baseUrl}${target}`, {
      method,
      headers,
      ...(raw.length > 0 ? { body: raw } : {}),
    });
    const text = await res.text();
    let body: unknown;
    try {
      body = JSON.parse(text) as unknown;
    } catch {
      throw new Error(`${method} ${route}: the answer (${res.status}) is not JSON: ${text.slice(0, 200)}`);
    }
    const problems: string[] = [];
    const match = provisioningSpec().match(method, `${PREFIX}${route}`);
    if (typeof match === 'string') {
      // An endpoint that is not there: the refusal still has the Error shape.
      const e = body as { errcode?: unknown; error?: unknown };
      if (res.status < 400 || typeof e.errcode !== 'string' || typeof e.error !== 'string') {
        problems.push(`${match}: answered ${res.status} ${text.slice(0, 200)}`);
      }
    } else {
      const { operation, pathParams } = match[0]!;
      this.operations.add(operation.operationId);
      if (o.invalid !== true) {
        for (const p of provisioningSpec().validateRequest(operation, {
          pathParams,
          query,
          contentType: headers['content-type'],
          body: raw.length > 0 ? (JSON.parse(raw.toString()) as unknown) : undefined,
          rawBody: raw,
        })) {
          problems.push(`request ${p.path} ${p.message}`);
        }
      }
      let checked: { path: string; message: string }[];
      try {
        checked = provisioningSpec().validateResponse(
          operation,
          res.status,
          res.headers.get('content-type') ?? undefined,
          body,
        );
      } catch {
        checked = [
          {
            path: 'response',
            message: `status ${res.status} is not documented for ${operation.operationId}`,
          },
        ];
      }
      for (const p of checked) problems.push(`${p.path} ${p.message}`);
    }
    if (problems.length > 0) {
      throw new Error(
        `${method} ${route} departs from docs/provisioning.openapi.yaml:\n- ${problems.join('\n- ')}\nanswer ${res.status}: ${text.slice(0, 500)}`,
      );
    }
    return { status: res.status, body };
  }
}
