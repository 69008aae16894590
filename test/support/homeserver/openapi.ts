import { readdirSync } from 'node:fs';
import path from 'node:path';
import { SchemaValidator, type SchemaProblem } from './json-schema.js';
import { isObject, type SpecFiles, type SpecNode } from './spec-files.js';

/** One operation of the spec's OpenAPI definitions, with the concrete path it is served under. */
export interface Operation {
  readonly operationId: string;
  readonly method: string;
  /** Full path template, e.g. `/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}`. */
  readonly template: string;
  /** The definition file, relative to the spec's data/ folder. */
  readonly file: string;
  readonly node: SpecNode;
  readonly regex: RegExp;
  readonly paramNames: readonly string[];
}

export interface OperationMatch {
  readonly operation: Operation;
  readonly pathParams: Record<string, string>;
}

/** What the validator needs of an HTTP request. */
export interface RequestParts {
  readonly pathParams: Record<string, string>;
  readonly query: URLSearchParams;
  readonly contentType: string | undefined;
  /** The parsed JSON body, `undefined` when there is none; `rawBody` holds the bytes. */
  readonly body: unknown;
  readonly rawBody: Buffer;
  /** Query parameters the spec allows on every request in this context (e.g. `user_id` for an appservice). */
  readonly extraQuery?: readonly string[];
}

const METHODS = ['get', 'put', 'post', 'delete', 'head', 'patch'];

/**
 * The operations of one API (client-server or application service), loaded from every YAML file of
 * its folder, matched by method and path, and used to validate requests and responses.
 */
export class OpenApi {
  readonly operations: Operation[] = [];
  private readonly validator: SchemaValidator;

  constructor(
    private readonly files: SpecFiles,
    folder: string,
  ) {
    this.validator = new SchemaValidator(files);
    const dir = path.join(files.root, folder);
    for (const name of readdirSync(dir)
      .filter((n) => n.endsWith('.yaml'))
      .sort()) {
      this.addFile(path.join(dir, name));
    }
    // Literal segments win over parameters: `/media/config` before `/media/{x}`.
    this.operations.sort((a, b) => a.paramNames.length - b.paramNames.length);
  }

  private addFile(abs: string): void {
    const doc = this.files.load(abs);
    if (!isObject(doc) || !isObject(doc['paths'])) return;
    const basePath = basePathOf(doc);
    for (const [p, item] of Object.entries(doc['paths'])) {
      if (!isObject(item)) continue;
      for (const method of METHODS) {
        const op = item[method];
        if (!isObject(op)) continue;
        // The spec keys a second definition of one path with a trailing space (`/rooms/{roomId}/invite `).
        const template = basePath + p.trim();
        const paramNames: string[] = [];
        // A trailing empty `{stateKey}` may drop its slash (client-server spec, GET/PUT state).
        const pattern = template
          .split(/(\{[^}]+\})/)
          .map((part) => {
            const m = /^\{([^}]+)\}$/.exec(part);
            if (m === null) return part.replace(/[.*+?^$()|[\]\\]/g, '\\$&');
            paramNames.push(m[1] as string);
            return m[1] === 'stateKey' ? '([^/]*)' : '([^/]+)';
          })
          .join('')
          .replace(/\/\(\[\^\/\]\*\)$/, '(?:/([^/]*))?');
        this.operations.push({
          operationId: String(op['operationId'] ?? `${method} ${template}`),
          method: method.toUpperCase(),
          template,
          file: this.files.relative(abs),
          node: {
            value: { ...op, parameters: [...asArray(item['parameters']), ...asArray(op['parameters'])] },
            file: abs,
          },
          regex: new RegExp(`^${pattern}$`),
          paramNames,
        });
      }
    }
  }

  /**
   * The operations for a request (several when the spec defines one path twice, like invite by user
   * ID and by third-party ID), or why there are none (`unknown_path` / `wrong_method`).
   */
  match(method: string, pathname: string): OperationMatch[] | 'unknown_path' | 'wrong_method' {
    let pathKnown = false;
    const found: OperationMatch[] = [];
    for (const operation of this.operations) {
      const m = operation.regex.exec(pathname);
      if (m === null) continue;
      pathKnown = true;
      if (operation.method !== method) continue;
      if (found.length > 0 && found[0]?.operation.template !== operation.template) continue;
      const pathParams: Record<string, string> = {};
      operation.paramNames.forEach((name, i) => {
        pathParams[name] = decodeURIComponent(m[i + 1] ?? '');
      });
      found.push({ operation, pathParams });
    }
    return found.length > 0 ? found : pathKnown ? 'wrong_method' : 'unknown_path';
  }

  byId(operationId: string): Operation {
    const op = this.operations.find((o) => o.operationId === operationId);
    if (op === undefined) throw new Error(`no operation ${operationId} in the spec`);
    return op;
  }

  /** Every way the request departs from the operation's definition (parameters and JSON body). */
  validateRequest(operation: Operation, req: RequestParts): SchemaProblem[] {
    const out: SchemaProblem[] = [];
    const op = operation.node.value as Record<string, unknown>;
    const declared = new Set<string>();
    for (const raw of asArray(op['parameters'])) {
      const param = this.files.deref({ value: raw, file: operation.node.file });
      if (!isObject(param.value)) continue;
      const {
        name,
        in: where,
        required,
        schema,
      } = param.value as {
        name: string;
        in: string;
        required?: boolean;
        schema?: unknown;
      };
      if (where === 'header') continue;
      const schemaNode = { value: schema ?? true, file: param.file };
      if (where === 'path') {
        const v = req.pathParams[name];
        if (v !== undefined) out.push(...this.validator.validate(schemaNode, v, `path parameter ${name}`));
        continue;
      }
      if (where !== 'query') continue;
      declared.add(name);
      const values = req.query.getAll(name);
      if (values.length === 0) {
        if (required === true)
          out.push({ path: `query parameter ${name}`, message: 'is required but missing' });
        continue;
      }
      const coerced = coerceQuery(schemaNode.value, values);
      if (typeof coerced === 'string' && coerced.startsWith('!')) {
        out.push({ path: `query parameter ${name}`, message: coerced.slice(1) });
        continue;
      }
      out.push(...this.validator.validate(schemaNode, coerced, `query parameter ${name}`));
    }
    for (const name of new Set(req.query.keys())) {
      if (!declared.has(name) && !(req.extraQuery ?? []).includes(name)) {
        out.push({ path: `query parameter ${name}`, message: `is not defined for ${operation.operationId}` });
      }
    }
    if (op['requestBody'] !== undefined) out.push(...this.validateBody(operation, req));
    return out;
  }

  private validateBody(operation: Operation, req: RequestParts): SchemaProblem[] {
    const rb = this.files.deref({ value: operation.node.value, file: operation.node.file });
    const requestBody = this.files.deref({
      value: (rb.value as Record<string, unknown>)['requestBody'],
      file: rb.file,
    });
    if (!isObject(requestBody.value)) return [];
    const content = requestBody.value['content'];
    const json = isObject(content) ? content['application/json'] : undefined;
    if (!isObject(json)) return []; // raw bytes (media upload): nothing to check structurally
    if (req.rawBody.length === 0) {
      return requestBody.value['required'] === true
        ? [{ path: 'body', message: 'is required but missing' }]
        : [];
    }
    if (req.body === undefined) return [{ path: 'body', message: 'is not valid JSON' }];
    return this.validator.validate(
      { value: json['schema'] ?? true, file: requestBody.file },
      req.body,
      'body',
    );
  }

  /**
   * Every way a response departs from the definition. A status the operation does not list is
   * accepted only as a standard error response (the spec's common error codes apply to every
   * endpoint), checked against the error schema (the rate-limit one for 429).
   */
  validateResponse(
    operation: Operation,
    status: number,
    contentType: string | undefined,
    body: unknown,
  ): SchemaProblem[] {
    const op = operation.node.value as Record<string, unknown>;
    const responses = isObject(op['responses']) ? op['responses'] : {};
    const listed = responses[String(status)];
    let schema: SpecNode | undefined;
    if (listed !== undefined) {
      const response = this.files.deref({ value: listed, file: operation.node.file });
      const content = isObject(response.value) ? response.value['content'] : undefined;
      const json = isObject(content) ? content['application/json'] : undefined;
      if (isObject(json)) schema = { value: json['schema'] ?? true, file: response.file };
      else if (isObject(content) && contentType?.startsWith('application/json') === true && status < 300) {
        return [
          {
            path: 'response',
            message: `status ${status} of ${operation.operationId} is not JSON in the spec`,
          },
        ];
      }
    } else if (status >= 400) {
      schema = this.files.node(
        status === 429
          ? 'api/client-server/definitions/errors/rate_limited.yaml'
          : 'api/client-server/definitions/errors/error.yaml',
      );
    } else {
      return [{ path: 'response', message: `status ${status} is not defined for ${operation.operationId}` }];
    }
    if (schema === undefined) return [];
    if (!(contentType ?? '').startsWith('application/json')) {
      return [
        { path: 'response', message: `must be application/json, got ${contentType ?? 'no content type'}` },
      ];
    }
    return this.validator.validate(schema, body, 'response');
  }

  /** Validates a value against a schema file (for bodies the spec describes outside an operation). */
  validateAgainst(schemaFile: string, value: unknown, at: string): SchemaProblem[] {
    return this.validator.validate(this.files.node(schemaFile), value, at);
  }
}

function basePathOf(doc: Record<string, unknown>): string {
  const servers = asArray(doc['servers']);
  const first = servers[0];
  if (!isObject(first) || !isObject(first['variables'])) return '';
  const base = first['variables']['basePath'];
  return isObject(base) && typeof base['default'] === 'string' ? base['default'] : '';
}

function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** Query strings are text: turn them into the JSON value the parameter's schema describes. */
function coerceQuery(schema: unknown, values: string[]): unknown {
  const type = isObject(schema) ? schema['type'] : undefined;
  const one = values[values.length - 1] as string;
  if (type === 'array') return values;
  if (values.length > 1) return `!is given ${values.length} times`;
  if (type === 'integer') return /^-?\d+$/.test(one) ? Number(one) : `!must be an integer, got "${one}"`;
  if (type === 'number')
    return Number.isFinite(Number(one)) ? Number(one) : `!must be a number, got "${one}"`;
  if (type === 'boolean')
    return one === 'true' ? true : one === 'false' ? false : `!must be true or false, got "${one}"`;
  return one;
}
