/**
 * A gate that all of a bridge's puppet connections pass through before they dial the gateway: at
 * most `maxConcurrent` handshakes in flight and at most `perSecond` new attempts each second. With
 * thousands of puppets, a bridge start or a gateway restart would otherwise send every puppet at
 * the gateway at once (a thundering herd that also starves the bridge's own event loop).
 */
import { InteropError } from '../errors.js';

export interface ConnectionGateOptions {
  maxConcurrent?: number;
  perSecond?: number;
  now?: () => number;
}

interface Waiter {
  resolve(release: () => void): void;
  reject(err: Error): void;
}

export class ConnectionGate {
  private readonly maxConcurrent: number;
  private readonly perSecond: number;
  private readonly now: () => number;
  private readonly waiters: Waiter[] = [];
  private inFlight = 0;
  private tokens: number;
  private refilledAt: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: ConnectionGateOptions = {}) {
    this.maxConcurrent = options.maxConcurrent ?? 128;
    this.perSecond = options.perSecond ?? 400;
    this.now = options.now ?? Date.now;
    // A full bucket at start would let `perSecond` attempts out in the first instant: start with
    // a tenth of a second's worth.
    this.tokens = Math.max(1, this.perSecond / 10);
    this.refilledAt = this.now();
  }

  /** Handshakes in flight now (for metrics and tests). */
  get active(): number {
    return this.inFlight;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** Resolves with a release function once this attempt may dial; rejects if `signal` aborts first. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(aborted());
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject };
      this.waiters.push(waiter);
      signal?.addEventListener(
        'abort',
        () => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) {
            this.waiters.splice(i, 1);
            reject(aborted());
          }
        },
        { once: true },
      );
      this.pump();
    });
  }

  private pump(): void {
    this.refill();
    while (this.waiters.length > 0 && this.inFlight < this.maxConcurrent && this.tokens >= 1) {
      this.tokens -= 1;
      this.inFlight += 1;
      const waiter = this.waiters.shift() as Waiter;
      let released = false;
      waiter.resolve(() => {
        if (released) return;
        released = true;
        this.inFlight -= 1;
        this.pump();
      });
    }
    if (this.waiters.length > 0 && this.tokens < 1 && this.timer === undefined) {
      const wait = Math.ceil(((1 - this.tokens) / this.perSecond) * 1000);
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, wait);
      this.timer.unref();
    }
  }

  private refill(): void {
    const now = this.now();
    const elapsed = (now - this.refilledAt) / 1000;
    this.refilledAt = now;
    this.tokens = Math.min(this.perSecond, this.tokens + elapsed * this.perSecond);
  }
}

function aborted(): InteropError {
  return new InteropError('gateway_connection_stopped', 'the connection was stopped while waiting to dial');
}
