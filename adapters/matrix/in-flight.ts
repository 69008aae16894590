/** The work the adapter has started and `stop()` waits for: the inbound pump, rooms, notices. */
import type { Logger } from '../../src/observability/logger.js';

export class InFlight {
  readonly #work = new Set<Promise<unknown>>();

  constructor(private readonly log: Logger) {}

  /** Counts `p` as in flight until it settles. */
  track<T>(p: Promise<T>): Promise<T> {
    this.#work.add(p);
    void p.finally(() => this.#work.delete(p)).catch(() => undefined);
    return p;
  }

  /** Runs `work` without throwing (for what the core asks of the adapter and must not fail). */
  background(what: string, work: () => Promise<unknown>): void {
    void this.track(
      work().catch((err: unknown) =>
        this.log.warn({ err: (err as Error).message, what }, 'Matrix notice could not be sent'),
      ),
    );
  }

  /** Resolves once everything in flight, and whatever it started meanwhile, has settled. */
  async settled(): Promise<void> {
    while (this.#work.size > 0) await Promise.allSettled([...this.#work]);
  }
}
