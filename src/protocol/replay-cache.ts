/**
 * Remembers token ids (`jti`) until the tokens can no longer be accepted, so a captured token
 * cannot be presented twice. Bounded: the cache never holds more than `maxEntries` ids.
 *
 * When full it first forgets ids whose tokens have expired (soonest-expiring first, via a min-heap).
 * It never forgets an id whose token is still acceptable, because that would reopen the replay
 * window for that token; if nothing has expired it refuses the new id with ReplayCacheFullError.
 * The gateway turns that into a `replay_cache_full` failure: the client retries later, and no token
 * is ever accepted without being remembered.
 */
import { InteropError } from '../errors.js';

export const DEFAULT_REPLAY_CACHE_MAX_ENTRIES = 100_000;

/** The cache is full of ids whose tokens are still valid; the new token cannot be remembered. */
export class ReplayCacheFullError extends InteropError {
  constructor(maxEntries: number) {
    super(
      'replay_cache_full',
      `replay cache is full (${maxEntries} unexpired token ids): refusing new tokens until some expire; ` +
        'raise the cache size or shorten provider token lifetimes',
    );
  }
}

/** What the token verifier needs: remember an id once, say whether it was seen before. */
export interface ReplayGuard {
  /**
   * Records `id` as used until `expiresAt` (seconds since the epoch). Returns false if `id` was
   * already recorded and has not expired. Throws ReplayCacheFullError rather than exceed its bound.
   */
  recordOnce(id: string, expiresAt: number, now: number): boolean;
}

interface Entry {
  id: string;
  expiresAt: number;
}

export class ReplayCache implements ReplayGuard {
  readonly maxEntries: number;
  private readonly byId = new Map<string, number>();
  /** Min-heap on expiresAt; holds exactly the entries of `byId`. */
  private readonly heap: Entry[] = [];

  constructor(options: { maxEntries?: number } = {}) {
    const maxEntries = options.maxEntries ?? DEFAULT_REPLAY_CACHE_MAX_ENTRIES;
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError(`replay cache maxEntries must be a positive integer, got ${maxEntries}`);
    }
    this.maxEntries = maxEntries;
  }

  get size(): number {
    return this.byId.size;
  }

  /** Whether `id` is remembered and its token has not expired at `now`. */
  has(id: string, now: number): boolean {
    const expiresAt = this.byId.get(id);
    return expiresAt !== undefined && expiresAt > now;
  }

  recordOnce(id: string, expiresAt: number, now: number): boolean {
    const known = this.byId.get(id);
    if (known !== undefined && known > now) return false;
    // Expired ids are dropped here too, so a stale entry can never shadow a fresh record.
    this.purgeExpired(now);
    if (this.byId.size >= this.maxEntries) throw new ReplayCacheFullError(this.maxEntries);
    this.byId.set(id, expiresAt);
    this.push({ id, expiresAt });
    return true;
  }

  /** Forgets every id whose token expired at or before `now`. Returns how many were dropped. */
  purgeExpired(now: number): number {
    let dropped = 0;
    for (let top = this.heap[0]; top !== undefined && top.expiresAt <= now; top = this.heap[0]) {
      this.pop();
      this.byId.delete(top.id);
      dropped++;
    }
    return dropped;
  }

  private push(entry: Entry): void {
    const heap = this.heap;
    heap.push(entry);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent]!;
      if (p.expiresAt <= entry.expiresAt) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = entry;
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop();
    if (last === undefined || heap.length === 0) return;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && heap[right]!.expiresAt < heap[left]!.expiresAt ? right : left;
      if (heap[child]!.expiresAt >= last.expiresAt) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = last;
  }
}
