/**
 * The SQL of a puppet's Signal state (tables of 001_initial.sql: puppets, signal_sessions,
 * signal_prekeys, signal_signed_prekeys, signal_identities). Rows in, rows out, as bytes: the Signal
 * layer (src/signal/sqlite-store.ts) decides what they mean and caches decoded sessions in front.
 */
import { preparedStatements, type Db, type Prepared, type Statement } from './sql.js';

type Row = Record<string, unknown>;
const bytes = (v: unknown): Uint8Array => new Uint8Array(v as Buffer);
const blob = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

export interface PuppetIdentityRow {
  registrationId: number;
  identityPublic: Uint8Array;
  identityPrivate: Uint8Array;
}

export interface PreKeyRow {
  keyId: number;
  publicKey: Uint8Array;
  privateKey: Uint8Array;
  uploaded: boolean;
}

export interface SignedPreKeyRow {
  keyId: number;
  publicKey: Uint8Array;
  privateKey: Uint8Array;
  signature: Uint8Array;
  createdAt: number;
}

export type IdentityTrust = 'trusted' | 'changed' | 'blocked';

export interface IdentityRow {
  /** The remote device's Signal address ("user.device"), stored in the remote_user column. */
  address: string;
  identityKey: Uint8Array;
  trust: IdentityTrust;
  firstSeen: number;
  changedAt: number;
}

/** The Signal tables of one puppet. Statements are prepared once per instance. */
export class SignalTables {
  private readonly prepared: Prepared;

  constructor(
    readonly db: Db,
    readonly puppetId: number,
    private readonly now: () => number = Date.now,
  ) {
    this.prepared = preparedStatements(db);
  }

  private q(sql: string): Statement {
    return this.prepared(sql);
  }

  atomically<T>(work: () => T): T {
    return this.db.transaction(work)();
  }

  identity(): PuppetIdentityRow | undefined {
    const r = this.q(
      'SELECT registration_id, identity_public, identity_private FROM puppets WHERE id = ?',
    ).get(this.puppetId) as Row | undefined;
    return (
      r && {
        registrationId: r.registration_id as number,
        identityPublic: bytes(r.identity_public),
        identityPrivate: bytes(r.identity_private),
      }
    );
  }

  /**
   * Advances a key id counter (signal_key_counters, migration 002) by `count` and returns the last
   * value before the advance; the caller maps the numbers into the protocol's id range.
   */
  advanceCounter(counter: 'last_prekey_id' | 'last_signed_prekey_id', count: number): number {
    return this.atomically(() => {
      this.q('INSERT INTO signal_key_counters (puppet_id) VALUES (?) ON CONFLICT (puppet_id) DO NOTHING').run(
        this.puppetId,
      );
      const before = (
        this.q(`SELECT ${counter} AS n FROM signal_key_counters WHERE puppet_id = ?`).get(
          this.puppetId,
        ) as Row
      ).n as number;
      this.q(`UPDATE signal_key_counters SET ${counter} = ? WHERE puppet_id = ?`).run(
        before + count,
        this.puppetId,
      );
      return before;
    });
  }

  // -- sessions

  session(address: string): Uint8Array | undefined {
    const r = this.q('SELECT record FROM signal_sessions WHERE puppet_id = ? AND address = ?').get(
      this.puppetId,
      address,
    ) as Row | undefined;
    return r && bytes(r.record);
  }

  putSession(address: string, record: Uint8Array): void {
    this.q(
      `INSERT INTO signal_sessions (puppet_id, address, record, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (puppet_id, address) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at`,
    ).run(this.puppetId, address, blob(record), this.now());
  }

  deleteSession(address: string): void {
    this.q('DELETE FROM signal_sessions WHERE puppet_id = ? AND address = ?').run(this.puppetId, address);
  }

  /** Addresses "user.<device>" of one remote user ('/' sorts right after '.'). */
  sessionAddresses(user: string): string[] {
    return (
      this.q(
        'SELECT address FROM signal_sessions WHERE puppet_id = ? AND address > ? AND address < ? ORDER BY address',
      ).all(this.puppetId, `${user}.`, `${user}/`) as Row[]
    ).map((r) => r.address as string);
  }

  // -- one-time prekeys

  preKey(keyId: number): PreKeyRow | undefined {
    const r = this.q('SELECT * FROM signal_prekeys WHERE puppet_id = ? AND key_id = ?').get(
      this.puppetId,
      keyId,
    ) as Row | undefined;
    return r && toPreKey(r);
  }

  putPreKeys(keys: readonly PreKeyRow[]): void {
    const insert = this.q(
      `INSERT INTO signal_prekeys (puppet_id, key_id, public_key, private_key, uploaded) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (puppet_id, key_id) DO UPDATE SET public_key = excluded.public_key,
         private_key = excluded.private_key, uploaded = excluded.uploaded`,
    );
    this.atomically(() => {
      for (const k of keys) {
        insert.run(this.puppetId, k.keyId, blob(k.publicKey), blob(k.privateKey), k.uploaded ? 1 : 0);
      }
    });
  }

  removePreKey(keyId: number): void {
    this.q('DELETE FROM signal_prekeys WHERE puppet_id = ? AND key_id = ?').run(this.puppetId, keyId);
  }

  preKeysNotUploaded(limit: number): PreKeyRow[] {
    return (
      this.q('SELECT * FROM signal_prekeys WHERE puppet_id = ? AND uploaded = 0 ORDER BY key_id LIMIT ?').all(
        this.puppetId,
        limit,
      ) as Row[]
    ).map(toPreKey);
  }

  markPreKeysUploaded(keyIds: readonly number[]): void {
    const mark = this.q('UPDATE signal_prekeys SET uploaded = 1 WHERE puppet_id = ? AND key_id = ?');
    this.atomically(() => {
      for (const id of keyIds) mark.run(this.puppetId, id);
    });
  }

  preKeyCount(): number {
    return (this.q('SELECT count(*) AS n FROM signal_prekeys WHERE puppet_id = ?').get(this.puppetId) as Row)
      .n as number;
  }

  // -- signed prekeys

  signedPreKey(keyId: number): SignedPreKeyRow | undefined {
    const r = this.q('SELECT * FROM signal_signed_prekeys WHERE puppet_id = ? AND key_id = ?').get(
      this.puppetId,
      keyId,
    ) as Row | undefined;
    return r && toSignedPreKey(r);
  }

  /** Newest first. */
  signedPreKeys(): SignedPreKeyRow[] {
    return (
      this.q(
        'SELECT * FROM signal_signed_prekeys WHERE puppet_id = ? ORDER BY created_at DESC, key_id DESC',
      ).all(this.puppetId) as Row[]
    ).map(toSignedPreKey);
  }

  putSignedPreKey(k: SignedPreKeyRow): void {
    this.q(
      `INSERT INTO signal_signed_prekeys (puppet_id, key_id, public_key, private_key, signature, created_at)
       VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (puppet_id, key_id) DO UPDATE SET public_key = excluded.public_key,
         private_key = excluded.private_key, signature = excluded.signature, created_at = excluded.created_at`,
    ).run(this.puppetId, k.keyId, blob(k.publicKey), blob(k.privateKey), blob(k.signature), k.createdAt);
  }

  removeSignedPreKey(keyId: number): void {
    this.q('DELETE FROM signal_signed_prekeys WHERE puppet_id = ? AND key_id = ?').run(this.puppetId, keyId);
  }

  // -- remote identities

  remoteIdentity(address: string): IdentityRow | undefined {
    const r = this.q('SELECT * FROM signal_identities WHERE puppet_id = ? AND remote_user = ?').get(
      this.puppetId,
      address,
    ) as Row | undefined;
    return (
      r && {
        address: r.remote_user as string,
        identityKey: bytes(r.identity_key),
        trust: r.trust as IdentityTrust,
        firstSeen: r.first_seen as number,
        changedAt: r.changed_at as number,
      }
    );
  }

  putRemoteIdentity(i: IdentityRow): void {
    this.q(
      `INSERT INTO signal_identities (puppet_id, remote_user, identity_key, trust, first_seen, changed_at)
       VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (puppet_id, remote_user) DO UPDATE SET identity_key = excluded.identity_key,
         trust = excluded.trust, first_seen = excluded.first_seen, changed_at = excluded.changed_at`,
    ).run(this.puppetId, i.address, blob(i.identityKey), i.trust, i.firstSeen, i.changedAt);
  }
}

const toPreKey = (r: Row): PreKeyRow => ({
  keyId: r.key_id as number,
  publicKey: bytes(r.public_key),
  privateKey: bytes(r.private_key),
  uploaded: (r.uploaded as number) !== 0,
});

const toSignedPreKey = (r: Row): SignedPreKeyRow => ({
  keyId: r.key_id as number,
  publicKey: bytes(r.public_key),
  privateKey: bytes(r.private_key),
  signature: bytes(r.signature),
  createdAt: r.created_at as number,
});
