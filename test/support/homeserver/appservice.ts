import type { SchemaProblem } from './json-schema.js';
import type { OpenApi } from './openapi.js';

/** One namespace entry of a registration (application service API, "Registration"). */
export interface Namespace {
  regex: string;
  exclusive: boolean;
}

/** An application service registration, as the registration YAML holds it. */
export interface Registration {
  id: string;
  url: string | null;
  as_token: string;
  hs_token: string;
  sender_localpart: string;
  namespaces: { users?: Namespace[]; aliases?: Namespace[]; rooms?: Namespace[] };
  rate_limited?: boolean;
  protocols?: string[];
  receive_ephemeral?: boolean;
  /** MSC2409's unstable name, which matrix-bot-sdk and older homeservers use. */
  'de.sorunome.msc2409.push_ephemeral'?: boolean;
}

/** A transaction the homeserver pushed (or tried to), one entry per attempt. */
export interface TransactionAttempt {
  readonly txnId: string;
  readonly attempt: number;
  readonly body: TransactionBody;
  /** The HTTP status the appservice answered, or the network error. */
  readonly outcome: { status: number; body: unknown } | { error: string };
  /** A fault the homeserver injected: the answer was ignored, or the same transaction resent after success. */
  readonly fault?: 'ignored_response' | 'duplicate';
}

export interface TransactionBody {
  events: unknown[];
  ephemeral?: unknown[];
  'de.sorunome.msc2409.ephemeral'?: unknown[];
}

export interface PusherOptions {
  /** Backoff before resending a failed transaction: first delay and cap, in milliseconds. */
  readonly retryInitialMs: number;
  readonly retryMaxMs: number;
  readonly maxEventsPerTransaction: number;
  /** Check each transaction and answer against the spec (default true; see StandInHomeserverOptions.validate). */
  readonly validate?: boolean;
}

/** A namespace regex matches the whole identifier (as Synapse applies them). */
const matches = (list: Namespace[] | undefined, id: string, exclusiveOnly = false): boolean =>
  (list ?? []).some((ns) => (!exclusiveOnly || ns.exclusive) && new RegExp(`^(?:${ns.regex})$`).test(id));

/** Who belongs to the appservice: its bot (`sender_localpart`) and its user namespaces. */
export class AppserviceNamespaces {
  constructor(
    readonly registration: Registration,
    readonly serverName: string,
  ) {}

  get botUserId(): string {
    return `@${this.registration.sender_localpart}:${this.serverName}`;
  }

  /** The appservice may act as this user (any of its user namespaces, or its bot). */
  ownsUser(userId: string): boolean {
    return userId === this.botUserId || matches(this.registration.namespaces.users, userId);
  }

  /** Nobody else may register or act as this user. */
  claimsExclusively(userId: string): boolean {
    return userId === this.botUserId || matches(this.registration.namespaces.users, userId, true);
  }

  interestedInRoom(roomId: string): boolean {
    return matches(this.registration.namespaces.rooms, roomId);
  }

  get receivesEphemeral(): boolean {
    return (
      this.registration.receive_ephemeral === true ||
      this.registration['de.sorunome.msc2409.push_ephemeral'] === true
    );
  }
}

type Report = (where: string, problems: SchemaProblem[]) => void;

/**
 * Pushes events to the appservice in order, one transaction at a time: a transaction, once built,
 * is resent unchanged under the same txnId until the appservice answers 200, with backoff; only
 * then is the next one built from what queued meanwhile. Nothing is ever dropped.
 */
export class TransactionPusher {
  readonly attempts: TransactionAttempt[] = [];
  private readonly events: unknown[] = [];
  private readonly ephemeral: unknown[] = [];
  private nextTxnId = 1;
  private running: Promise<void> | undefined;
  private closed = false;
  private sleeping: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  private ignoreResponses = 0;
  private dropConnections = 0;
  private duplicates = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly registration: Registration,
    private readonly api: OpenApi,
    private readonly options: PusherOptions,
    private readonly report: Report,
  ) {}

  enqueueEvent(event: unknown): void {
    this.events.push(event);
    this.kick();
  }

  enqueueEphemeral(event: unknown): void {
    this.ephemeral.push(event);
    this.kick();
  }

  /** The next transaction is numbered 1 again (a homeserver restart with nothing unsent). */
  restartNumbering(): void {
    this.nextTxnId = 1;
  }

  /** The appservice's next N answers are treated as lost: the same transaction is sent again. */
  ignoreNextResponses(n: number): void {
    this.ignoreResponses += n;
  }

  /** The next N attempts fail as a network error before any request reaches the appservice. */
  failNextConnections(n: number): void {
    this.dropConnections += n;
  }

  /** The next acknowledged transaction is sent a second time, as a homeserver retrying after a lost reply does. */
  duplicateNext(): void {
    this.duplicates += 1;
  }

  /** Resolves once every queued event has been acknowledged by the appservice. */
  idle(): Promise<void> {
    if (this.running === undefined && this.events.length === 0 && this.ephemeral.length === 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  close(): Promise<void> {
    this.closed = true;
    if (this.sleeping !== undefined) {
      clearTimeout(this.sleeping.timer);
      this.sleeping.wake();
    }
    return this.running ?? Promise.resolve();
  }

  private kick(): void {
    if (this.running !== undefined || this.closed || this.registration.url === null) return;
    this.running = this.loop().finally(() => {
      this.running = undefined;
      if (this.events.length > 0 || this.ephemeral.length > 0) this.kick();
      else for (const w of this.idleWaiters.splice(0)) w();
    });
  }

  private async loop(): Promise<void> {
    while (!this.closed && (this.events.length > 0 || this.ephemeral.length > 0)) {
      const max = this.options.maxEventsPerTransaction;
      const events = this.events.slice(0, max);
      const ephemeral = this.ephemeral.slice(0, max);
      const body: TransactionBody = { events };
      if (ephemeral.length > 0) {
        body.ephemeral = ephemeral;
        body['de.sorunome.msc2409.ephemeral'] = ephemeral;
      }
      const txnId = String(this.nextTxnId++);
      if (this.options.validate !== false)
        this.report(
          `transaction ${txnId} (sent by the stand-in)`,
          this.api.validateRequest(this.api.byId('sendTransaction'), {
            pathParams: { txnId },
            query: new URLSearchParams(),
            contentType: 'application/json',
            body,
            rawBody: Buffer.from(JSON.stringify(body)),
          }),
        );
      await this.deliver(txnId, body);
      this.events.splice(0, events.length);
      this.ephemeral.splice(0, ephemeral.length);
      if (this.duplicates > 0 && !this.closed) {
        this.duplicates--;
        await this.attempt(
          txnId,
          body,
          this.attempts.filter((a) => a.txnId === txnId).length + 1,
          'duplicate',
        );
      }
    }
  }

  /** Sends one transaction until it is acknowledged (or the homeserver shuts down). */
  private async deliver(txnId: string, body: TransactionBody): Promise<void> {
    let delay = this.options.retryInitialMs;
    for (let attempt = 1; !this.closed; attempt++) {
      const ignored = this.ignoreResponses > 0;
      if (ignored) this.ignoreResponses--;
      const ok = await this.attempt(txnId, body, attempt, ignored ? 'ignored_response' : undefined);
      if (ok && !ignored) return;
      await this.sleep(delay);
      delay = Math.min(delay * 2, this.options.retryMaxMs);
    }
  }

  private async attempt(
    txnId: string,
    body: TransactionBody,
    attempt: number,
    fault: TransactionAttempt['fault'],
  ): Promise<boolean> {
    const url = `${(this.registration.url ?? '').replace(/\/$/, '')}/_matrix/app/v1/transactions/${encodeURIComponent(txnId)}`;
    let outcome: TransactionAttempt['outcome'];
    if (this.dropConnections > 0) {
      this.dropConnections--;
      outcome = { error: 'connection failed (injected)' };
    } else {
      outcome = await appserviceCall(url, 'PUT', this.registration.hs_token, body);
    }
    this.attempts.push(
      fault === undefined ? { txnId, attempt, body, outcome } : { txnId, attempt, body, outcome, fault },
    );
    if ('status' in outcome) {
      if (this.options.validate !== false)
        this.report(
          `the appservice's answer to transaction ${txnId}`,
          this.api.validateResponse(
            this.api.byId('sendTransaction'),
            outcome.status,
            'application/json',
            outcome.body,
          ),
        );
      return outcome.status === 200;
    }
    return false;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.sleeping = undefined;
        resolve();
      }, ms);
      this.sleeping = { timer, wake: resolve };
    });
  }
}

/** One JSON call from the homeserver to the appservice, authenticated with `hs_token`. */
export async function appserviceCall(
  url: string,
  method: 'PUT' | 'POST',
  hsToken: string,
  body: unknown,
  timeoutMs = 10_000,
): Promise<{ status: number; body: unknown } | { error: string }> {
  try {
    const res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${hsToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text) as unknown;
    } catch {
      // left as text: the response validator reports a non-JSON answer
    }
    return { status: res.status, body: parsed };
  } catch (err) {
    const e = err as Error;
    return { error: e.name === 'TimeoutError' ? 'timeout' : `${e.name}: ${e.message}` };
  }
}
