/**
 * The SQL of a puppet's Signal state on PostgreSQL (the tables of signal-store-sqlite.ts, same
 * columns). Loads are asynchronous (a puppet's own keys; one remote user's sessions and
 * identities); writes are loose writes of the database (postgres-database.ts): they join the
 * atomic unit being collected, or go out in order on the next turn. The Signal layer
 * (src/signal/postgres-store.ts) keeps what it loaded and answers the synchronous reads from it.
 */
import { sql, type PgDatabase, type Row } from './postgres-database.js';
import type { IdentityRow, PreKeyRow, PuppetIdentityRow, SignedPreKeyRow } from './signal-store-sqlite.js';

const bytes = (v: unknown): Uint8Array => new Uint8Array(v as Buffer);
const bin = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

export interface OwnKeysRows {
  identity: PuppetIdentityRow | undefined;
  preKeys: PreKeyRow[];
  signedPreKeys: SignedPreKeyRow[];
  lastPreKeyId: number;
  lastSignedPreKeyId: number;
}

/** The lease a puppet's Signal state is written under, with several workers (src/cluster/). */
export type LeaseOf = () => { readonly name: string; readonly fence: number } | undefined;

/**
 * The condition of a fenced write, its lease name and fence the parameters `$n` and `$n+1`: the
 * lease is still at the writer's fence (its row key-share-locked until the write commits: a change
 * of holder, which moves the fence, waits for it; a renewal does not, migration 020).
 */
export const fenced = (n: number): string =>
  `EXISTS (SELECT 1 FROM leases WHERE name = $${n} AND fence = $${n + 1} FOR KEY SHARE)`;

export class PgSignalTables {
  /**
   * @param lease With several workers: every write (sessions, identities, prekeys, key counters)
   *   lands only while the puppet's lease is at this process's fence (a conditional statement;
   *   nothing is written once the lease moved on).
   */
  constructor(
    readonly db: PgDatabase,
    readonly puppetId: number,
    private readonly now: () => number = Date.now,
    private readonly lease?: LeaseOf,
  ) {}

  /** The puppet's own keys and key counters, after every write asked so far. */
  async loadOwn(): Promise<OwnKeysRows> {
    await this.db.settled();
    const id = this.puppetId;
    const [identity, preKeys, signed, counters] = await Promise.all([
      this.db.queryOne(
        'SELECT registration_id, identity_public, identity_private FROM puppets WHERE id = $1',
        [id],
      ),
      this.db.query('SELECT * FROM signal_prekeys WHERE puppet_id = $1', [id]),
      this.db.query('SELECT * FROM signal_signed_prekeys WHERE puppet_id = $1', [id]),
      this.db.queryOne('SELECT * FROM signal_key_counters WHERE puppet_id = $1', [id]),
    ]);
    return {
      identity: identity && {
        registrationId: identity.registration_id as number,
        identityPublic: bytes(identity.identity_public),
        identityPrivate: bytes(identity.identity_private),
      },
      preKeys: preKeys.map((r) => ({
        keyId: r.key_id as number,
        publicKey: bytes(r.public_key),
        privateKey: bytes(r.private_key),
        uploaded: (r.uploaded as number) !== 0,
      })),
      signedPreKeys: signed.map((r) => ({
        keyId: r.key_id as number,
        publicKey: bytes(r.public_key),
        privateKey: bytes(r.private_key),
        signature: bytes(r.signature),
        createdAt: r.created_at as number,
      })),
      lastPreKeyId: (counters?.last_prekey_id as number | undefined) ?? 0,
      lastSignedPreKeyId: (counters?.last_signed_prekey_id as number | undefined) ?? 0,
    };
  }

  /** One remote user's sessions ("user.<device>"; '/' sorts right after '.') and identities. */
  async loadUser(user: string): Promise<{ sessions: [string, Uint8Array][]; identities: IdentityRow[] }> {
    await this.db.settled();
    const range = [this.puppetId, `${user}.`, `${user}/`];
    const [sessions, identities] = await Promise.all([
      this.db.query(
        'SELECT address, record FROM signal_sessions WHERE puppet_id = $1 AND address > $2 AND address < $3',
        range,
      ),
      this.db.query(
        'SELECT * FROM signal_identities WHERE puppet_id = $1 AND remote_user > $2 AND remote_user < $3',
        range,
      ),
    ]);
    return {
      sessions: sessions.map((r: Row) => [r.address as string, bytes(r.record)]),
      identities: identities.map((r: Row) => ({
        address: r.remote_user as string,
        identityKey: bytes(r.identity_key),
        trust: r.trust as IdentityRow['trust'],
        firstSeen: r.first_seen as number,
        changedAt: r.changed_at as number,
      })),
    };
  }

  /**
   * Writes one statement of the puppet's Signal state. With a lease, it lands only while the lease
   * is at this process's fence: `statement(cond)` puts `cond` where its condition goes (`TRUE`
   * without a lease), whose parameters follow `values`.
   */
  private write(statement: (cond: string) => string, ...values: unknown[]): void {
    const lease = this.lease?.();
    if (!lease) {
      this.db.write(sql(statement('TRUE'), ...values));
      return;
    }
    this.db.write(sql(statement(fenced(values.length + 1)), ...values, lease.name, lease.fence));
  }

  setCounters(lastPreKeyId: number, lastSignedPreKeyId: number): void {
    this.write(
      (cond) =>
        `INSERT INTO signal_key_counters (puppet_id, last_prekey_id, last_signed_prekey_id)
         SELECT $1::integer, $2::bigint, $3::bigint WHERE ${cond}
         ON CONFLICT (puppet_id) DO UPDATE SET last_prekey_id = excluded.last_prekey_id,
           last_signed_prekey_id = excluded.last_signed_prekey_id`,
      this.puppetId,
      lastPreKeyId,
      lastSignedPreKeyId,
    );
  }

  putSession(address: string, record: Uint8Array): void {
    this.write(
      (cond) =>
        `INSERT INTO signal_sessions (puppet_id, address, record, updated_at)
         SELECT $1::integer, $2::text, $3::bytea, $4::bigint WHERE ${cond}
         ON CONFLICT (puppet_id, address) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at`,
      this.puppetId,
      address,
      bin(record),
      this.now(),
    );
  }

  deleteSession(address: string): void {
    this.write(
      (cond) => `DELETE FROM signal_sessions WHERE puppet_id = $1 AND address = $2 AND ${cond}`,
      this.puppetId,
      address,
    );
  }

  putPreKey(k: PreKeyRow): void {
    this.write(
      (cond) =>
        `INSERT INTO signal_prekeys (puppet_id, key_id, public_key, private_key, uploaded)
         SELECT $1::integer, $2::integer, $3::bytea, $4::bytea, $5::integer WHERE ${cond}
         ON CONFLICT (puppet_id, key_id) DO UPDATE SET public_key = excluded.public_key,
           private_key = excluded.private_key, uploaded = excluded.uploaded`,
      this.puppetId,
      k.keyId,
      bin(k.publicKey),
      bin(k.privateKey),
      k.uploaded ? 1 : 0,
    );
  }

  removePreKey(keyId: number): void {
    this.write(
      (cond) => `DELETE FROM signal_prekeys WHERE puppet_id = $1 AND key_id = $2 AND ${cond}`,
      this.puppetId,
      keyId,
    );
  }

  markPreKeysUploaded(keyIds: readonly number[]): void {
    this.write(
      (cond) =>
        `UPDATE signal_prekeys SET uploaded = 1 WHERE puppet_id = $1 AND key_id = ANY($2) AND ${cond}`,
      this.puppetId,
      keyIds,
    );
  }

  putSignedPreKey(k: SignedPreKeyRow): void {
    this.write(
      (cond) =>
        `INSERT INTO signal_signed_prekeys (puppet_id, key_id, public_key, private_key, signature, created_at)
         SELECT $1::integer, $2::integer, $3::bytea, $4::bytea, $5::bytea, $6::bigint WHERE ${cond}
         ON CONFLICT (puppet_id, key_id) DO UPDATE SET public_key = excluded.public_key,
           private_key = excluded.private_key, signature = excluded.signature, created_at = excluded.created_at`,
      this.puppetId,
      k.keyId,
      bin(k.publicKey),
      bin(k.privateKey),
      bin(k.signature),
      k.createdAt,
    );
  }

  removeSignedPreKey(keyId: number): void {
    this.write(
      (cond) => `DELETE FROM signal_signed_prekeys WHERE puppet_id = $1 AND key_id = $2 AND ${cond}`,
      this.puppetId,
      keyId,
    );
  }

  putRemoteIdentity(i: IdentityRow): void {
    this.write(
      (cond) =>
        `INSERT INTO signal_identities (puppet_id, remote_user, identity_key, trust, first_seen, changed_at)
         SELECT $1::integer, $2::text, $3::bytea, $4::text, $5::bigint, $6::bigint WHERE ${cond}
         ON CONFLICT (puppet_id, remote_user) DO UPDATE SET identity_key = excluded.identity_key,
           trust = excluded.trust, first_seen = excluded.first_seen, changed_at = excluded.changed_at`,
      this.puppetId,
      i.address,
      bin(i.identityKey),
      i.trust,
      i.firstSeen,
      i.changedAt,
    );
  }
}
