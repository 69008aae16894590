/**
 * A puppet's Signal state in the project's SQLite database, with decoded session records cached in
 * front (write-through): a message costs one UPDATE of the record's JSON, never a SELECT and a parse.
 * Remote identities are cached too, since the session manager checks one on every encrypt.
 */
import type { Db } from '../store/database.js';
import { SignalTables } from '../store/signal-store-sqlite.js';
import { preparedStatements, type Prepared } from '../store/sql.js';
import { SignalError } from './errors.js';
import { decodeRecord, encodeRecord, type LiveSessionRecord } from './record.js';
import type { SenderKeyAddress, SenderKeyBackend } from './sender-key-store.js';
import {
  keyIdAt,
  type LocalIdentity,
  type RemoteIdentity,
  type SignalBackend,
  type StoredPreKey,
  type StoredSignedPreKey,
} from './store.js';
import { LazyMap } from '../util/lazy-map.js';

export interface SqliteSignalBackendOptions {
  /** Decoded session records kept per puppet (least recently used dropped first). Default 512. */
  sessionCacheSize?: number;
  now?: () => number;
}

export class SqliteSignalBackend implements SignalBackend {
  private readonly tables: SignalTables;
  private readonly sessions = new LazyMap<string, LiveSessionRecord>();
  private readonly identities = new LazyMap<string, RemoteIdentity | null>();
  private readonly cacheSize: number;
  private identity: LocalIdentity | undefined;

  constructor(db: Db, puppetId: number, options: SqliteSignalBackendOptions = {}) {
    this.tables = new SignalTables(db, puppetId, options.now);
    this.cacheSize = options.sessionCacheSize ?? 512;
  }
  /** Everything is readable at once: SQLite is read synchronously (behind the session cache). */
  prepare(): Promise<void> {
    return Promise.resolve();
  }

  /** Every write is durable when it returns (a SQLite transaction of its own, or the caller's). */
  flush(): Promise<void> {
    return Promise.resolve();
  }

  localIdentity(): LocalIdentity | undefined {
    if (this.identity === undefined) {
      const row = this.tables.identity();
      if (row) {
        this.identity = {
          registrationId: row.registrationId,
          publicKey: row.identityPublic,
          privateKey: row.identityPrivate,
        };
      }
    }
    return this.identity;
  }

  loadSession(address: string): LiveSessionRecord | undefined {
    const hit = this.sessions.get(address);
    if (hit !== undefined) {
      this.sessions.delete(address);
      this.sessions.set(address, hit);
      return hit;
    }
    const bytes = this.tables.session(address);
    if (bytes === undefined) return undefined;
    let record: LiveSessionRecord;
    try {
      record = decodeRecord(Buffer.from(bytes).toString('utf8'));
    } catch (cause) {
      throw new SignalError(
        'signal_session_corrupt',
        `the stored session with ${address} cannot be read: delete it (deleteSession) and fetch the device's prekey bundle again`,
        { cause },
      );
    }
    this.remember(address, record);
    return record;
  }

  saveSession(address: string, record: LiveSessionRecord): void {
    this.tables.putSession(address, Buffer.from(encodeRecord(record), 'utf8'));
    this.remember(address, record);
  }

  private remember(address: string, record: LiveSessionRecord): void {
    this.sessions.delete(address);
    if (this.sessions.size >= this.cacheSize) {
      const oldest = this.sessions.keys().next();
      if (!oldest.done) this.sessions.delete(oldest.value);
    }
    this.sessions.set(address, record);
  }

  deleteSession(address: string): void {
    this.tables.deleteSession(address);
    this.sessions.delete(address);
  }

  sessionAddresses(user: string): string[] {
    return this.tables.sessionAddresses(user);
  }

  preKey(keyId: number): StoredPreKey | undefined {
    return this.tables.preKey(keyId);
  }
  putPreKeys(keys: readonly StoredPreKey[]): void {
    this.tables.putPreKeys(keys);
  }
  removePreKey(keyId: number): void {
    this.tables.removePreKey(keyId);
  }
  preKeysNotUploaded(limit: number): StoredPreKey[] {
    return this.tables.preKeysNotUploaded(limit);
  }
  markPreKeysUploaded(keyIds: readonly number[]): void {
    this.tables.markPreKeysUploaded(keyIds);
  }
  allocatePreKeyIds(count: number): number[] {
    const before = this.tables.advanceCounter('last_prekey_id', count);
    return Array.from({ length: count }, (_, i) => keyIdAt(before + i));
  }
  preKeyCount(): number {
    return this.tables.preKeyCount();
  }

  allocateSignedPreKeyId(): number {
    return keyIdAt(this.tables.advanceCounter('last_signed_prekey_id', 1));
  }
  signedPreKey(keyId: number): StoredSignedPreKey | undefined {
    return this.tables.signedPreKey(keyId);
  }
  signedPreKeys(): StoredSignedPreKey[] {
    return this.tables.signedPreKeys();
  }
  putSignedPreKey(key: StoredSignedPreKey): void {
    this.tables.putSignedPreKey(key);
  }
  removeSignedPreKey(keyId: number): void {
    this.tables.removeSignedPreKey(keyId);
  }

  remoteIdentity(address: string): RemoteIdentity | undefined {
    let hit = this.identities.get(address);
    if (hit === undefined) {
      hit = this.tables.remoteIdentity(address) ?? null;
      if (this.identities.size >= this.cacheSize) this.identities.clear();
      this.identities.set(address, hit);
    }
    return hit ?? undefined;
  }
  putRemoteIdentity(identity: RemoteIdentity): void {
    this.tables.putRemoteIdentity(identity);
    this.identities.set(identity.address, identity);
  }

  atomically<T>(work: () => T): T {
    return this.tables.atomically(work);
  }
}

/**
 * A puppet's sender keys (group chains, sender-keys.ts) in the signal_sender_keys table of
 * migration 011: one row per distribution and sender device, the record as libsignal's protobuf.
 * No cache: a group message reads and writes one small row.
 */
export class SqliteSenderKeyBackend implements SenderKeyBackend {
  private readonly q: Prepared;

  constructor(
    db: Db,
    private readonly puppetId: number,
    private readonly now: () => number = Date.now,
  ) {
    this.q = preparedStatements(db);
  }

  /** Everything is readable at once. */
  prepare(): Promise<void> {
    return Promise.resolve();
  }

  /** Every write is durable when it returns. */
  flush(): Promise<void> {
    return Promise.resolve();
  }

  getSenderKey(distributionId: string, sender: SenderKeyAddress): Uint8Array | undefined {
    const row = this.q(
      `SELECT record FROM signal_sender_keys
       WHERE puppet_id = ? AND distribution_id = ? AND sender = ? AND device = ?`,
    ).get(this.puppetId, distributionId, sender.name, sender.deviceId) as { record: Buffer } | undefined;
    return row && new Uint8Array(row.record);
  }

  putSenderKey(distributionId: string, sender: SenderKeyAddress, record: Uint8Array): void {
    this.q(
      `INSERT INTO signal_sender_keys (puppet_id, distribution_id, sender, device, record, updated_at)
       VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (puppet_id, distribution_id, sender, device)
       DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at`,
    ).run(
      this.puppetId,
      distributionId,
      sender.name,
      sender.deviceId,
      Buffer.from(record.buffer, record.byteOffset, record.byteLength),
      this.now(),
    );
  }

  deleteSenderKey(distributionId: string, sender: SenderKeyAddress): void {
    this.q(
      'DELETE FROM signal_sender_keys WHERE puppet_id = ? AND distribution_id = ? AND sender = ? AND device = ?',
    ).run(this.puppetId, distributionId, sender.name, sender.deviceId);
  }
}
