/**
 * What may carry a secret into a log line, made safe: a URL's query string (the appservice API's
 * legacy `access_token`, a signed media link), userinfo, `Authorization` values and JWTs. The logger
 * (logger.ts) applies these to the fields and messages it writes; code that logs a URL or a request
 * should still pass it through `redactUrl` itself.
 */

export const REDACTED = '[redacted]';

/**
 * A URL or a request target (`/path?query`) without its query, fragment or userinfo: the query
 * becomes `?[redacted]`. Never throws, whatever the input (a malformed escape stays as it is).
 */
export function redactUrl(url: string | undefined | null): string {
  if (url === undefined || url === null) return '';
  let out = String(url);
  const hash = out.indexOf('#');
  if (hash >= 0) out = out.slice(0, hash);
  const query = out.indexOf('?');
  if (query >= 0) out = `${out.slice(0, query)}?${REDACTED}`;
  return out.replace(USERINFO, `$1${REDACTED}@`);
}

const USERINFO = /(\b[a-z][a-z0-9+.-]*:\/\/)[^/@\s?#]*@/gi;
/** A query string inside free text: from "?" to the next space or quote, when it holds a "=". */
const QUERY_IN_TEXT = /\?[^\s"'<>`]*=[^\s"'<>`]*/g;
const BEARER = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi;
const JWT = /\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g;
const SECRET_ASSIGNMENT =
  /\b(access_token|as_token|hs_token|token|secret|password|authorization)(["']?\s*[:=]\s*["']?)[^\s"'&,;}]+/gi;

/**
 * Free text (an error message, a stack, a message line) with every URL query, userinfo, Bearer or
 * Basic credential, JWT and `token=...`-style assignment masked.
 */
export function redactText(text: string): string {
  if (text.length === 0) return text;
  return text
    .replace(USERINFO, `$1${REDACTED}@`)
    .replace(QUERY_IN_TEXT, `?${REDACTED}`)
    .replace(BEARER, `$1 ${REDACTED}`)
    .replace(JWT, REDACTED)
    .replace(SECRET_ASSIGNMENT, `$1$2${REDACTED}`);
}

/** Properties of an error that are safe and useful to log; anything else (a request's options, headers, a response) is left out. */
const ERROR_FIELDS = ['code', 'errno', 'syscall', 'statusCode', 'status', 'errcode', 'reason'] as const;

/**
 * The `err` serializer: type, message, stack and a few codes, each redacted; never the enumerable
 * rest of an error, where HTTP libraries keep the request (URL with query, headers). A string is
 * redacted as text.
 */
export function serializeError(err: unknown, depth = 0): unknown {
  if (typeof err === 'string') return redactText(err);
  if (!(err instanceof Error)) {
    if (typeof err === 'object' && err !== null && 'statusCode' in err) {
      // A non-2xx response thrown as is (matrix-bot-sdk): only its status.
      return { type: 'HttpResponse', statusCode: (err as { statusCode: unknown }).statusCode };
    }
    return err;
  }
  const out: Record<string, unknown> = {
    type: err.constructor?.name ?? 'Error',
    message: redactText(err.message ?? ''),
  };
  if (err.stack !== undefined) out['stack'] = redactText(err.stack);
  for (const field of ERROR_FIELDS) {
    const value = (err as unknown as Record<string, unknown>)[field];
    if (typeof value === 'string') out[field] = redactText(value);
    else if (typeof value === 'number') out[field] = value;
  }
  if (err.cause !== undefined && depth < 3) out['cause'] = serializeError(err.cause, depth + 1);
  return out;
}
