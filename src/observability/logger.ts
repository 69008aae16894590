import { pino, type Logger, type DestinationStream } from 'pino';
import pretty from 'pino-pretty';
import { redactText, redactUrl, serializeError } from './redact.js';

export type { Logger };

/**
 * Field names whose values never reach a log line, at any of the first three levels of nesting:
 * keys, tokens and secrets. Code should not log them in the first place; this is the safety net.
 */
export const REDACTED_FIELDS = [
  'token',
  'access_token',
  'as_token',
  'hs_token',
  'secret',
  'password',
  'auth',
  'authorization',
  'Authorization',
  'cookie',
  'asToken',
  'hsToken',
  'privateKey',
  'private_key',
  'identityPrivate',
  'noisePrivate',
  'signingKey',
  'jwt',
  'mediaKey',
  'media_key',
  'plaintext',
  'd',
] as const;

const redactPaths = REDACTED_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]);

const asText = (v: unknown) => (typeof v === 'string' ? redactText(v) : v);
const asUrl = (v: unknown) => (typeof v === 'string' ? redactUrl(v) : v);
const asRequest = (v: unknown) => {
  if (typeof v !== 'object' || v === null) return asUrl(v);
  const r = v as { method?: unknown; url?: unknown; uri?: unknown; href?: unknown };
  return { method: r.method, url: asUrl(r.url ?? r.uri ?? r.href) };
};

/**
 * Fields whose values may hold a URL, a request or an error, by name: each is written without query
 * strings, credentials or tokens (redact.ts). The error serializer keeps only type, message, stack
 * and codes, never a request's options or headers that HTTP libraries hang on their errors.
 */
const serializers: Record<string, (v: unknown) => unknown> = {
  err: (v) => serializeError(v),
  error: (v) => serializeError(v),
  cause: (v) => serializeError(v),
  url: asUrl,
  uri: asUrl,
  href: asUrl,
  path: asUrl,
  location: asUrl,
  source: asUrl,
  req: asRequest,
  request: asRequest,
  headers: () => '[redacted]',
  failure: asText,
  reason: asText,
  detail: asText,
};

export interface LoggerOptions {
  level?: string;
  format?: 'auto' | 'json' | 'pretty';
  /** Where to write; standard output when absent. */
  destination?: DestinationStream;
}

/** The root logger. Components take a child: `rootLogger.child({ component: 'gateway' })`. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const format = options.format ?? 'auto';
  const readable =
    format === 'pretty' || (format === 'auto' && !options.destination && process.stdout.isTTY === true);
  const base = {
    level: options.level ?? 'info',
    redact: { paths: redactPaths, censor: '[redacted]' },
    serializers,
    // The message line itself: an error's text interpolated into it is redacted like the fields.
    hooks: {
      logMethod(this: Logger, args: unknown[], method: (...a: unknown[]) => void) {
        method.apply(
          this,
          args.map((a) => (typeof a === 'string' ? redactText(a) : a)),
        );
      },
    },
    base: { pid: process.pid },
  };
  if (readable) {
    return pino(
      base,
      pretty({
        colorize: process.stdout.isTTY === true,
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname',
      }),
    );
  }
  return options.destination ? pino(base, options.destination) : pino(base);
}

export function componentLogger(root: Logger, component: string): Logger {
  return root.child({ component });
}
