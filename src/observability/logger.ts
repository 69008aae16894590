import { pino, type Logger, type DestinationStream } from 'pino';
import pretty from 'pino-pretty';

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
  'authorization',
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
