/**
 * Reconnect delays: exponential with full jitter (a random delay between 0 and the exponential
 * bound), so that many puppets dropped at once by a gateway restart do not reconnect in lockstep.
 */
export interface BackoffOptions {
  initialDelayMs: number;
  maxDelayMs: number;
  random?: () => number;
}

export class Backoff {
  private attempt = 0;

  constructor(private readonly options: BackoffOptions) {}

  /** The delay before the next attempt; each call doubles the bound, up to the maximum. */
  next(): number {
    const bound = Math.min(
      this.options.maxDelayMs,
      this.options.initialDelayMs * 2 ** Math.min(this.attempt, 30),
    );
    this.attempt++;
    const random = this.options.random ?? Math.random;
    // Never less than a tenth of the initial delay: a tight loop helps nobody.
    return Math.max(Math.round(this.options.initialDelayMs / 10), Math.round(random() * bound));
  }

  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}
