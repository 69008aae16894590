/**
 * The gateway's replay check, kept across restarts: the ids of accepted client tokens are held in
 * the bounded in-memory ReplayCache (the fast path) and written to the emulator's database, from
 * which a starting gateway reloads the unexpired ones. A ClientHello recorded off the wire and
 * replayed after a restart is refused like one replayed without a restart. Rows are purged with the
 * rest of the expired state (EmulatorStore.purgeExpired).
 */
import { ReplayCache, type ReplayGuard } from '../src/protocol/replay-cache.js';
import type { EmulatorStore } from './store.js';

export class PersistentReplayGuard implements ReplayGuard {
  readonly #cache: ReplayCache;

  constructor(
    private readonly store: EmulatorStore,
    now: number,
  ) {
    this.#cache = new ReplayCache();
    for (const row of store.usedTokens(now)) this.#cache.recordOnce(row.id, row.expires_at, now);
  }

  recordOnce(id: string, expiresAt: number, now: number): boolean {
    if (!this.#cache.recordOnce(id, expiresAt, now)) return false;
    // Durable before the token is accepted: a crash right after cannot reopen the window.
    this.store.recordUsedToken(id, expiresAt);
    return true;
  }
}
