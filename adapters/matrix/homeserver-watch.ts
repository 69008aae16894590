/**
 * Notices the homeserver going away, even while the bridge has nothing to send: it asks for
 * `/_matrix/client/versions` (no token, answered from memory) every half second. A restart takes
 * Synapse longer than that, so one of the asks finds it away (connection refused or reset, a
 * timeout, 502/503/504 from a proxy in front) and the listener is told (held-back.ts); so is the
 * first answer after that.
 * (Synapse does not let an appservice's users long-poll /sync, which would show it sooner.)
 */
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

  constructor(private readonly o: HomeserverWatchOptions) {}

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
  }

  #schedule(): void {
    if (!this.#running) return;
    this.#timer = setTimeout(
      () => void this.#ask().finally(() => this.#schedule()),
      this.o.intervalMs ?? 500,
    );
    this.#timer.unref();
  }

  async #ask(): Promise<void> {
    const url = `${this.o.homeserverUrl.replace(/\/$/, '')}/_matrix/client/versions`;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(this.o.timeoutMs ?? 2_000) });
      await res.arrayBuffer();
      if (!this.#running) return;
      this.#up = res.status < 500;
      if (this.#up) this.o.answered?.();
      else this.o.wentAway(`/versions answered ${res.status}`);
    } catch (err) {
      this.#up = false;
      if (this.#running) this.o.wentAway(`/versions failed: ${(err as Error).message}`);
    }
  }
}
