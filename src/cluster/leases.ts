/**
 * Leases with fencing tokens on PostgreSQL (the `leases` table, migration 009), for several bridge
 * processes on one database: a lease is a name (`worker:<id>`, `puppet:<id>`) that one holder owns
 * until `expires_at`, by the database's clock, never a worker's.
 *
 * - `acquire` takes leases that are free (released or never held) or expired, and only those; each
 *   change of holder adds one to the lease's `fence`, so a fence names one tenure.
 * - `renew` extends, in one statement, the leases the holder still has at the fence it holds them
 *   at, and only those not yet expired: a lease that expired (even if nobody took it) is gone for
 *   its old holder, who has dropped it locally before then (src/cluster/worker.ts).
 * - `release` hands a lease over at once (a graceful stop): free for the next `acquire`.
 * - Writes that matter under a lease are fenced (`StoreWrites.requireLease`): they commit only while
 *   the lease is still at the writer's fence.
 *
 * Every call goes to the pool, not the ordered writer: a renewal never waits behind a queue of
 * message writes.
 */
import type { PgDatabase, Row } from '../store/postgres-database.js';

export interface HeldLease {
  readonly name: string;
  readonly fence: number;
}

export interface LeaseRow {
  readonly name: string;
  /** Undefined once released. */
  readonly holder: string | undefined;
  readonly fence: number;
  readonly expiresAt: Date;
  /** Held and not expired, by the database's clock. */
  readonly live: boolean;
}

/** The channel `notify` and `onChange` use. */
const CHANNEL = 'interop_bridge_leases';

const held = (r: Row): HeldLease => ({ name: r.name as string, fence: r.fence as number });

export class Leases {
  constructor(private readonly db: PgDatabase) {}

  /**
   * Takes the leases among `names` that are free or expired, at most `limit` of them, for `ttlMs`
   * from now (the database's now); returns those it got with their new fences.
   */
  async acquire(
    holder: string,
    names: readonly string[],
    ttlMs: number,
    limit = names.length,
  ): Promise<HeldLease[]> {
    if (names.length === 0 || limit <= 0) return [];
    const rows = await this.db.query(
      `WITH candidates AS (
         SELECT n.name FROM unnest($2::text[]) AS n(name)
         WHERE NOT EXISTS (
           SELECT 1 FROM leases l WHERE l.name = n.name AND l.holder IS NOT NULL AND l.expires_at > now())
         LIMIT $4)
       INSERT INTO leases (name, holder, fence, expires_at)
       SELECT name, $1, 1, now() + $3 * interval '1 millisecond' FROM candidates
       ON CONFLICT (name) DO UPDATE
         SET holder = EXCLUDED.holder, fence = leases.fence + 1, expires_at = EXCLUDED.expires_at
         WHERE leases.holder IS NULL OR leases.expires_at <= now()
       RETURNING name, fence`,
      [holder, [...new Set(names)], ttlMs, limit],
    );
    return rows.map(held);
  }

  /**
   * Extends the holder's leases (each at the fence it holds) by `ttlMs` from now, in one statement;
   * returns the names still held. One missing was lost: expired, or taken by another holder.
   */
  async renew(holder: string, leases: readonly HeldLease[], ttlMs: number): Promise<Set<string>> {
    if (leases.length === 0) return new Set();
    const rows = await this.db.query(
      `UPDATE leases SET expires_at = now() + $4 * interval '1 millisecond'
       FROM unnest($2::text[], $3::bigint[]) AS h(name, fence)
       WHERE leases.name = h.name AND leases.fence = h.fence AND leases.holder = $1
         AND leases.expires_at > now()
       RETURNING leases.name`,
      [holder, leases.map((l) => l.name), leases.map((l) => l.fence), ttlMs],
    );
    return new Set(rows.map((r) => r.name as string));
  }

  /** Hands the holder's `names` over at once (the fence stays: the next holder's is one more). */
  async release(holder: string, names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    await this.db.query(
      'UPDATE leases SET holder = NULL, expires_at = now() WHERE name = ANY($2::text[]) AND holder = $1',
      [holder, [...names]],
    );
  }

  /**
   * Tells every worker listening (`onChange`) that leases were let go or a worker joined, so they
   * rebalance now rather than at their next round.
   */
  async notify(what: string): Promise<void> {
    await this.db.query('SELECT pg_notify($1, $2)', [CHANNEL, what]);
  }

  /** Calls `changed` on every `notify` (from any process on the database). */
  onChange(changed: (what: string) => void): Promise<void> {
    return this.db.listen(CHANNEL, changed);
  }

  /** The leases whose names start with `prefix` (all without one), by name. */
  async list(prefix = ''): Promise<LeaseRow[]> {
    const rows = await this.db.query(
      `SELECT name, holder, fence, expires_at, (holder IS NOT NULL AND expires_at > now()) AS live
       FROM leases WHERE starts_with(name, $1) ORDER BY name`,
      [prefix],
    );
    return rows.map((r) => ({
      name: r.name as string,
      holder: (r.holder as string | null) ?? undefined,
      fence: r.fence as number,
      expiresAt: r.expires_at as Date,
      live: r.live as boolean,
    }));
  }

  /** The holder of the lease `name` if it is live (held, not expired). */
  async holderOf(name: string): Promise<string | undefined> {
    const r = await this.db.queryOne(
      'SELECT holder FROM leases WHERE name = $1 AND holder IS NOT NULL AND expires_at > now()',
      [name],
    );
    return (r?.holder as string | undefined) ?? undefined;
  }

  /** How many leases starting with `prefix` are live (held, not expired). */
  async countLive(prefix: string): Promise<number> {
    const r = await this.db.queryOne(
      `SELECT count(*) AS n FROM leases WHERE starts_with(name, $1) AND holder IS NOT NULL AND expires_at > now()`,
      [prefix],
    );
    return Number(r?.n ?? 0);
  }
}
