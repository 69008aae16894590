/**
 * Notices the homeserver going away, even while the bridge has nothing to send: it asks for
 * `/_matrix/client/versions` (no token, answered from memory) every half second. A restart takes
 * Synapse longer than that, so one of the asks finds it away (connection refused or reset, a
 * timeout, 502/503/504 from a proxy in front) and the listener is told (held-back.ts); so is the
 * first answer after that.
 * (Synapse does not let an appservice's users long-poll /sync, which would show it sooner.)
 */
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Logger } from '../../src/observability/logger.js';

export interface HomeserverWatchOptions {
  readonly homeserverUrl: string;
  /** Called when an ask finds the homeserver away. */
  readonly wentAway: (what: string) => void;
  /** Called when an ask is answered. */
  readonly answered?: () => void;
  readonly log?: Logger | undefined;
  /** Between asks. Default 500 ms. */
  readonly intervalMs?: number;
  /** An ask not answered within this long counts as away. Default 2 s. */
  readonly timeoutMs?: number;
}

export class HomeserverWatch {
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #up = false;
  readonly #url: URL;
  /**
   * One kept-alive connection: an ask costs a request on it, not a connection and a fetch (which
   * cost about 1.7 ms of CPU each, 1% of the bridge's CPU at 100 messages/s). A restart closes it,
   * so the next ask finds the homeserver away.
   */
  readonly #agent: HttpAgent;

  constructor(private readonly o: HomeserverWatchOptions) {
    this.#url = new URL(`${o.homeserverUrl.replace(/\/$/, '')}/_matrix/client/versions`);
    this.#agent =
      this.#url.protocol === 'https:'
        ? new HttpsAgent({ keepAlive: true, maxSockets: 1 })
        : new HttpAgent({ keepAlive: true, maxSockets: 1 });
  }

  /** Whether the last ask was answered (the metrics' `interop_bridge_local_server_up`). */
  get up(): boolean {
    return this.#up;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#schedule();
  }

  stop(): void {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#agent.destroy();
  }

  #schedule(): void {
    if (!this.#running) return;
    this.#timer = setTimeout(
      () => void this.#ask().finally(() => this.#schedule()),
      this.o.intervalMs ?? 500,
    );
    this.#timer.unref();
  }

  #ask(): Promise<void> {
    const timeoutMs = this.o.timeoutMs ?? 2_000;
    return new Promise((resolve) => {
      let settled = false;
      const settle = (status: number | undefined, failure?: string): void => {
        if (settled) return;
        settled = true;
        resolve();
        if (!this.#running) return;
        this.#up = status !== undefined && status < 500;
        if (this.#up) this.o.answered?.();
        else this.o.wentAway(failure ?? `/versions answered ${String(status)}`);
      };
      const send = this.#url.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = send(this.#url, { agent: this.#agent, timeout: timeoutMs }, (res) => {
        res.on('error', (err) => settle(undefined, `/versions failed: ${err.message}`));
        res.on('end', () => settle(res.statusCode));
        res.resume();
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', (err) => settle(undefined, `/versions failed: ${err.message}`));
      req.end();
    });
  }
}
