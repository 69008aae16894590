/**
 * Client-server calls through matrix-bot-sdk's MatrixClient, with what it lacks: every request is
 * retried with backoff on `M_LIMIT_EXCEEDED` (waiting `retry_after_ms` when the homeserver names
 * it), on 5xx answers and on network errors (a refused or dropped connection, a timeout). Other
 * errors (403, 404, 400...) are final and thrown at once.
 *
 * Ghosts are separate clients with the same as_token and `impersonateUserId` (the `user_id` query
 * parameter of the appservice API).
 */
import { LogService, MatrixClient, MatrixError, type ILogger } from 'matrix-bot-sdk';
import type { Logger } from '../../src/observability/logger.js';
import { MatrixAdapterError } from './errors.js';
import { jsonCall, plainQuery } from './http.js';

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  readonly maxAttempts: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  /** Told when a call finds the homeserver away (no connection, 502/503/504), before the retry. */
  readonly onUnavailable?: (what: string) => void;
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 10, initialDelayMs: 500, maxDelayMs: 30_000 };

/** The status and Matrix error code of a failed call, whatever shape matrix-bot-sdk threw it in. */
export function describeFailure(err: unknown): { status?: number; errcode?: string; retryAfterMs?: number } {
  if (err instanceof MatrixError) {
    return {
      status: err.statusCode,
      errcode: err.errcode,
      ...(typeof err.retryAfterMs === 'number' ? { retryAfterMs: err.retryAfterMs } : {}),
    };
  }
  if (typeof err === 'object' && err !== null && 'statusCode' in err) {
    const status = (err as { statusCode: unknown }).statusCode;
    if (typeof status === 'number') return { status };
  }
  // Retries ran out: the last answer is the cause.
  if (err instanceof MatrixAdapterError && err.cause !== undefined) return describeFailure(err.cause);
  return {};
}

/** Whether a failure is worth another attempt, and how long to wait first (undefined: backoff). */
export function retryable(err: unknown): { retry: boolean; afterMs?: number } {
  const f = describeFailure(err);
  if (f.errcode === 'M_LIMIT_EXCEEDED' || f.status === 429) {
    return f.retryAfterMs === undefined ? { retry: true } : { retry: true, afterMs: f.retryAfterMs };
  }
  if (f.status !== undefined) return { retry: f.status >= 500 };
  // No HTTP answer at all: connection refused, reset, timed out.
  return { retry: true };
}

function failureText(err: unknown): string {
  const f = describeFailure(err);
  if (f.errcode !== undefined) return `${f.status ?? '?'} ${f.errcode}`;
  if (f.status !== undefined) return `HTTP ${f.status}`;
  return (err as Error)?.message ?? String(err);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Runs `call` until it succeeds, fails for good, or the attempts run out. */
export async function withRetry<T>(
  what: string,
  policy: RetryPolicy,
  call: () => Promise<T>,
  log?: Logger,
): Promise<T> {
  let delay = policy.initialDelayMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const r = retryable(err);
      if (!r.retry) throw err;
      if (r.afterMs === undefined && describeFailure(err).status !== 429)
        policy.onUnavailable?.(`${what}: ${failureText(err)}`);
      if (attempt >= policy.maxAttempts) {
        throw new MatrixAdapterError(
          'matrix_unavailable',
          `${what} failed ${attempt} times (last: ${failureText(err)}): the homeserver is unavailable or overloaded; it will be tried again later`,
          { cause: err },
        );
      }
      const wait = r.afterMs ?? delay;
      log?.debug({ what, attempt, waitMs: wait, failure: failureText(err) }, 'retrying a homeserver call');
      await sleep(Math.min(wait, policy.maxDelayMs));
      delay = Math.min(delay * 2, policy.maxDelayMs);
    }
  }
}

/**
 * A MatrixClient whose every request goes through `withRetry`, and whose JSON calls go through
 * http.ts rather than the SDK's request stack (raw answers, such as media, stay with the SDK).
 */
export class RetryingMatrixClient extends MatrixClient {
  /** The user this client acts as (the appservice's `user_id`), as `impersonateUserId` set it. */
  #actingAs: { userId: string; deviceId?: string | undefined } | undefined;

  constructor(
    homeserverUrl: string,
    accessToken: string,
    readonly policy: RetryPolicy,
    private readonly log?: Logger,
  ) {
    super(homeserverUrl, accessToken);
  }

  override impersonateUserId(userId: string | null, deviceId?: string): void {
    super.impersonateUserId(userId, deviceId);
    this.#actingAs = userId === null ? undefined : { userId, deviceId };
  }

  /** One attempt, as the SDK's doRequest makes it (its defaults; the identity acted as in the query). */
  #once(
    method: string,
    endpoint: string,
    qs: Record<string, unknown> | null | undefined,
    body: unknown = null,
    timeout = 60_000,
    raw = false,
    contentType = 'application/json',
    noEncoding = false,
  ): Promise<unknown> {
    // A fresh copy of the query each time: the SDK adds user_id to the object it is given.
    const query = qs ? { ...qs } : null;
    if (raw || noEncoding || !plainQuery(query)) {
      return super.doRequest(
        method,
        endpoint,
        query,
        body,
        timeout,
        raw,
        contentType,
        noEncoding,
      ) as Promise<unknown>;
    }
    const acting = this.#actingAs;
    return jsonCall({
      method,
      baseUrl: this.homeserverUrl,
      path: endpoint.startsWith('/') ? endpoint : `/${endpoint}`,
      query: acting
        ? {
            ...query,
            user_id: acting.userId,
            ...(acting.deviceId !== undefined ? { 'org.matrix.msc3202.device_id': acting.deviceId } : {}),
          }
        : query,
      body,
      contentType,
      accessToken: this.accessToken,
      timeoutMs: timeout,
    });
  }

  override doRequest(
    method: string,
    endpoint: string,
    qs?: Record<string, unknown> | null,
    body?: unknown,
    timeout?: number,
    raw?: boolean,
    contentType?: string,
    noEncoding?: boolean,
  ): Promise<unknown> {
    return withRetry(
      `${method} ${endpoint.split('?')[0] ?? endpoint}`,
      this.policy,
      () => this.#once(method, endpoint, qs, body, timeout, raw, contentType, noEncoding),
      this.log,
    );
  }

  /**
   * Sends an event under `txnId`, once. The same txnId makes a resend harmless only while the
   * homeserver remembers it (Synapse forgets on a restart), so before each attempt after a failure,
   * and before the first when the core says the event may be a repeat (`mayBeRepeat`: an earlier
   * delivery failed after its retries, or a previous run stopped first), the room's recent events
   * are searched for this one (marked with the txnId in its content).
   */
  async sendEventOnce(
    roomId: string,
    type: string,
    txnId: string,
    content: Record<string, unknown>,
    qs?: Record<string, unknown>,
    mayBeRepeat = false,
  ): Promise<string> {
    const room = encodeURIComponent(roomId);
    const path = `/_matrix/client/v3/rooms/${room}/send/${encodeURIComponent(type)}/${encodeURIComponent(txnId)}`;
    const marked = { ...content, [TXN_MARKER]: txnId };
    // A retry, or a send the core may have asked for before (in this run or the last): Synapse
    // forgets transaction ids when it restarts, so look for the event before sending it again.
    let look = mayBeRepeat;
    return withRetry(
      `PUT /_matrix/client/v3/rooms/{roomId}/send`,
      this.policy,
      async () => {
        if (look) {
          const found = await this.#findSent(room, txnId);
          if (found !== undefined) return found;
        }
        look = true;
        const res = (await this.#once('PUT', path, qs, marked)) as {
          event_id: string;
        };
        return res.event_id;
      },
      this.log,
    );
  }

  /** The id of a recent event of the room marked with `txnId`, if there is one. */
  async #findSent(room: string, txnId: string): Promise<string | undefined> {
    const res = (await this.#once('GET', `/_matrix/client/v3/rooms/${room}/messages`, {
      dir: 'b',
      limit: 50,
    })) as { chunk?: { event_id?: unknown; content?: Record<string, unknown> }[] };
    const hit = (res.chunk ?? []).find((e) => e.content?.[TXN_MARKER] === txnId);
    return typeof hit?.event_id === 'string' ? hit.event_id : undefined;
  }
}

/**
 * Where the bridge marks the events it sends with their transaction id, so that it can find one it
 * sent before sending again (a custom key in the event content, ignored by clients).
 */
export const TXN_MARKER = 'org.interop_bridge.txn_id';

/** Sends matrix-bot-sdk's own logging to ours, at debug (it logs every non-2xx answer as an error). */
export function routeSdkLogs(log: Logger | undefined): void {
  const to =
    (level: 'debug' | 'trace') =>
    (module: string, ...parts: unknown[]) =>
      log?.[level](
        { module },
        parts
          .map((p) => (p instanceof Error ? p.message : typeof p === 'string' ? p : JSON.stringify(p)))
          .join(' ')
          .slice(0, 500),
      );
  const logger: ILogger = {
    info: to('debug'),
    warn: to('debug'),
    error: to('debug'),
    debug: to('trace'),
    trace: to('trace'),
  };
  LogService.setLogger(logger);
}
