/**
 * What every admin endpoint shares: the emulator it drives, the request it gets and the reply it
 * gives, how it validates a body and how it refuses. The server (../admin.ts) routes to the
 * endpoints; the endpoints never touch node:http.
 */
import { z } from 'zod';
import { InteropError } from '../../src/errors.js';
import { parseJid } from '../../src/protocol/stanza/index.js';
import type { Emulator } from '../gateway.js';
import type { EmulatorKeys } from '../keys.js';
import type { NativeUser } from '../native-user.js';

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
  /** Connects a native user client for an existing native account, with a behaviour. */
  connectNative?(phone: string, behaviour: 'echo' | 'answer' | 'silent'): Promise<NativeUser>;
  /** The connected native user with this number, if the emulator runs one. */
  native?(phone: string): NativeUser | undefined;
}

/** What an endpoint works with besides its request. */
export interface AdminContext {
  readonly target: AdminTarget;
  /** Seconds since the epoch. */
  readonly now: () => number;
  /** When the admin API started, in seconds since the epoch. */
  readonly startedAt: number;
}

export interface AdminRequest {
  body: unknown;
  query: Record<string, string>;
}

export interface Reply {
  status: number;
  body: unknown;
}

export type Endpoint = (ctx: AdminContext, req: AdminRequest) => Reply | Promise<Reply>;

export const ok = (body: unknown = {}): Reply => ({ status: 200, body });

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
  | 'admin_user_not_running'
  | 'admin_send_failed'
  | 'admin_group_refused'
  | 'admin_profile_refused'
  | 'admin_user_not_found'
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

export const expecting = (phrase: string) => ({ error: () => phrase });
export const ACCOUNT_PHRASE = 'a bare account JID such as "4915112345678@wa.interop" or "alice@acme.interop"';
export const account = () =>
  z.string(expecting(ACCOUNT_PHRASE)).refine((s) => {
    try {
      const jid = parseJid(s);
      return jid.user !== undefined && jid.device === undefined;
    } catch {
      return false;
    }
  }, expecting(ACCOUNT_PHRASE));
export const int = (min: number, max: number) =>
  z
    .number(expecting(`an integer from ${min} to ${max}`))
    .int(expecting(`an integer from ${min} to ${max}`))
    .min(min, expecting(`an integer from ${min} to ${max}`))
    .max(max, expecting(`an integer from ${min} to ${max}`));
export const emptyBody = z.strictObject({});

/** Validates against a strict schema; every problem in one 400, "field: expected X, found Y". */
export function parse<T extends z.ZodType>(schema: T, value: unknown, what = 'body'): z.infer<T> {
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
