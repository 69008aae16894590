/**
 * A puppet's Signal state on PostgreSQL. The synchronous reads of a ratchet step are answered from
 * a working set that `prepare` loads: the puppet's own keys (identity, prekeys, signed prekeys, key
 * counters) once, and each remote user's sessions and identities the first time that user is
 * prepared. Writes change the working set at once and are loose writes of the database: inside the
 * store's atomic unit (the session gate's commit) they join its transaction, otherwise they go out
 * in order on the next turn, and `flush` resolves once they are durable.
 *
 * One process owns a database (the process lock), so what was loaded stays true: nothing is read
 * twice. A read of something not prepared throws `signal_not_prepared` instead of answering
 * "nothing there" from a working set that does not have it.
 *
 * Not yet: the working set is never shrunk (a puppet keeps every remote user it prepared, as
 * decoded sessions); an LRU of users that waits for their writes before dropping them is next.
 */
import { sql, type PgDatabase } from '../store/postgres-database.js';
import { fenced, PgSignalTables, type LeaseOf } from '../store/signal-store-postgres.js';
import { SignalError } from './errors.js';
import { decodeRecord, encodeRecord, type LiveSessionRecord } from './record.js';
import { senderKeyId, type SenderKeyAddress, type SenderKeyBackend } from './sender-key-store.js';
import {
  keyIdAt,
  type LocalIdentity,
  type RemoteIdentity,
  type SignalBackend,
  type StoredPreKey,
  type StoredSignedPreKey,
} from './store.js';

interface OwnKeys {
  identity: LocalIdentity | undefined;
  preKeys: Map<number, StoredPreKey>;
  signed: Map<number, StoredSignedPreKey>;
  lastPreKeyId: number;
  lastSignedPreKeyId: number;
}

const userOf = (address: string): string => {
  const dot = address.lastIndexOf('.');
  return dot < 0 ? address : address.slice(0, dot);
};

export class PostgresSignalBackend implements SignalBackend {
  private readonly tables: PgSignalTables;
  private own: OwnKeys | undefined;
  private loadingOwn: Promise<void> | undefined;
  /** Sessions and identities by address; null: known to be absent. */
  private readonly sessions = new Map<string, LiveSessionRecord | null>();
  private readonly identities = new Map<string, RemoteIdentity | null>();
  private readonly users = new Set<string>();
  private readonly loadingUsers = new Map<string, Promise<void>>();

  constructor(
    private readonly db: PgDatabase,
    puppetId: number,
    options: { now?: () => number; lease?: LeaseOf | undefined } = {},
  ) {
    this.tables = new PgSignalTables(db, puppetId, options.now, options.lease);
  }

  async prepare(user?: string): Promise<void> {
    if (!this.own) await (this.loadingOwn ??= this.loadOwn());
    if (user !== undefined && !this.users.has(user)) {
      let loading = this.loadingUsers.get(user);
      if (!loading) {
        loading = this.loadUser(user).finally(() => this.loadingUsers.delete(user));
        this.loadingUsers.set(user, loading);
      }
      await loading;
    }
  }

  flush(): Promise<void> {
    return this.db.settled();
  }

  private async loadOwn(): Promise<void> {
    try {
      const rows = await this.tables.loadOwn();
      this.own = {
        identity: rows.identity && {
          registrationId: rows.identity.registrationId,
          publicKey: rows.identity.identityPublic,
          privateKey: rows.identity.identityPrivate,
        },
        preKeys: new Map(rows.preKeys.map((k) => [k.keyId, k])),
        signed: new Map(rows.signedPreKeys.map((k) => [k.keyId, k])),
        lastPreKeyId: rows.lastPreKeyId,
        lastSignedPreKeyId: rows.lastSignedPreKeyId,
      };
    } finally {
      this.loadingOwn = undefined;
    }
  }

  private async loadUser(user: string): Promise<void> {
    const rows = await this.tables.loadUser(user);
    // What was written while the load was in flight is newer than what it read: kept.
    for (const [address, bytes] of rows.sessions) {
      if (this.sessions.has(address)) continue;
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
      this.sessions.set(address, record);
    }
    for (const identity of rows.identities) {
      if (!this.identities.has(identity.address)) this.identities.set(identity.address, identity);
    }
    this.users.add(user);
  }

  private ownKeys(): OwnKeys {
    if (!this.own) {
      throw new SignalError('signal_not_prepared', "the puppet's own Signal keys were read before prepare()");
    }
    return this.own;
  }

  private needUser(address: string): void {
    const user = userOf(address);
    if (!this.users.has(user)) {
      throw new SignalError(
        'signal_not_prepared',
        `the Signal state of ${user} was read before prepare(${user})`,
      );
    }
  }

  localIdentity(): LocalIdentity | undefined {
    return this.ownKeys().identity;
  }

  loadSession(address: string): LiveSessionRecord | undefined {
    const hit = this.sessions.get(address);
    if (hit !== undefined) return hit ?? undefined;
    this.needUser(address);
    return undefined;
  }

  saveSession(address: string, record: LiveSessionRecord): void {
    this.tables.putSession(address, Buffer.from(encodeRecord(record), 'utf8'));
    this.sessions.set(address, record);
  }

  deleteSession(address: string): void {
    this.tables.deleteSession(address);
    this.sessions.set(address, null);
  }

  sessionAddresses(user: string): string[] {
    if (!this.users.has(user)) this.needUser(`${user}.0`);
    const prefix = `${user}.`;
    return [...this.sessions]
      .filter(([a, r]) => r !== null && a.startsWith(prefix))
      .map(([a]) => a)
      .sort();
  }

  preKey(keyId: number): StoredPreKey | undefined {
    return this.ownKeys().preKeys.get(keyId);
  }
  putPreKeys(keys: readonly StoredPreKey[]): void {
    const own = this.ownKeys();
    this.atomically(() => {
      for (const k of keys) {
        this.tables.putPreKey(k);
        own.preKeys.set(k.keyId, k);
      }
    });
  }
  removePreKey(keyId: number): void {
    this.tables.removePreKey(keyId);
    this.ownKeys().preKeys.delete(keyId);
  }
  preKeysNotUploaded(limit: number): StoredPreKey[] {
    return [...this.ownKeys().preKeys.values()]
      .filter((k) => !k.uploaded)
      .sort((a, b) => a.keyId - b.keyId)
      .slice(0, limit);
  }
  markPreKeysUploaded(keyIds: readonly number[]): void {
    const own = this.ownKeys();
    this.tables.markPreKeysUploaded(keyIds);
    for (const id of keyIds) {
      const k = own.preKeys.get(id);
      if (k) own.preKeys.set(id, { ...k, uploaded: true });
    }
  }
  allocatePreKeyIds(count: number): number[] {
    const own = this.ownKeys();
    const before = own.lastPreKeyId;
    own.lastPreKeyId += count;
    this.tables.setCounters(own.lastPreKeyId, own.lastSignedPreKeyId);
    return Array.from({ length: count }, (_, i) => keyIdAt(before + i));
  }
  preKeyCount(): number {
    return this.ownKeys().preKeys.size;
  }

  allocateSignedPreKeyId(): number {
    const own = this.ownKeys();
    const before = own.lastSignedPreKeyId++;
    this.tables.setCounters(own.lastPreKeyId, own.lastSignedPreKeyId);
    return keyIdAt(before);
  }
  signedPreKey(keyId: number): StoredSignedPreKey | undefined {
    return this.ownKeys().signed.get(keyId);
  }
  signedPreKeys(): StoredSignedPreKey[] {
    return [...this.ownKeys().signed.values()].sort((a, b) => b.createdAt - a.createdAt || b.keyId - a.keyId);
  }
  putSignedPreKey(key: StoredSignedPreKey): void {
    this.tables.putSignedPreKey(key);
    this.ownKeys().signed.set(key.keyId, key);
  }
  removeSignedPreKey(keyId: number): void {
    this.tables.removeSignedPreKey(keyId);
    this.ownKeys().signed.delete(keyId);
  }

  remoteIdentity(address: string): RemoteIdentity | undefined {
    const hit = this.identities.get(address);
    if (hit !== undefined) return hit ?? undefined;
    this.needUser(address);
    return undefined;
  }
  putRemoteIdentity(identity: RemoteIdentity): void {
    this.tables.putRemoteIdentity(identity);
    this.identities.set(identity.address, identity);
  }

  /**
   * The writes `work` makes as one transaction (inside the store's unit: part of it). The working
   * set changes at once; if `work` throws, nothing is written, but what it changed in the working
   * set stays changed (as in memory): callers only throw here on a bug.
   */
  atomically<T>(work: () => T): T {
    if (this.db.inUnit) return work();
    let result: T | undefined;
    const statements = this.db.collect(() => {
      result = work();
    });
    this.db.commitLoose(statements); // a failure surfaces at the next flush()
    return result as T;
  }
}

/**
 * A puppet's sender keys (group chains, sender-keys.ts) on PostgreSQL, in the signal_sender_keys
 * table of migration 011. As `PostgresSignalBackend`: `prepare(distributionId)` loads every
 * record of one distribution into a working set the synchronous reads answer from; writes change
 * the working set at once and are loose writes of the database, which `flush` waits for. With a
 * lease (several workers), every write lands only while the puppet's lease is at this process's
 * fence, as the other Signal writes (signal-store-postgres.ts): nothing once another worker has
 * taken the puppet over.
 */
export class PostgresSenderKeyBackend implements SenderKeyBackend {
  /** Records by senderKeyId; null: known to be absent. */
  private readonly records = new Map<string, Uint8Array | null>();
  private readonly loaded = new Set<string>();
  private readonly loading = new Map<string, Promise<void>>();
  private readonly now: () => number;
  private readonly lease: LeaseOf | undefined;

  constructor(
    private readonly db: PgDatabase,
    private readonly puppetId: number,
    options: { now?: () => number; lease?: LeaseOf | undefined } = {},
  ) {
    this.now = options.now ?? Date.now;
    this.lease = options.lease;
  }

  async prepare(distributionId: string): Promise<void> {
    if (this.loaded.has(distributionId)) return;
    let loading = this.loading.get(distributionId);
    if (!loading) {
      loading = this.load(distributionId).finally(() => this.loading.delete(distributionId));
      this.loading.set(distributionId, loading);
    }
    await loading;
  }

  flush(): Promise<void> {
    return this.db.settled();
  }

  private async load(distributionId: string): Promise<void> {
    await this.db.settled();
    const rows = await this.db.query(
      'SELECT sender, device, record FROM signal_sender_keys WHERE puppet_id = $1 AND distribution_id = $2',
      [this.puppetId, distributionId],
    );
    for (const r of rows) {
      const id = senderKeyId(distributionId, { name: r.sender as string, deviceId: r.device as number });
      // What was written while the load was in flight is newer than what it read: kept.
      if (!this.records.has(id)) this.records.set(id, new Uint8Array(r.record as Buffer));
    }
    this.loaded.add(distributionId);
  }

  getSenderKey(distributionId: string, sender: SenderKeyAddress): Uint8Array | undefined {
    const hit = this.records.get(senderKeyId(distributionId, sender));
    if (hit !== undefined) return hit ?? undefined;
    if (!this.loaded.has(distributionId)) {
      throw new SignalError(
        'signal_not_prepared',
        `the sender keys of distribution ${distributionId} were read before prepare(${distributionId})`,
      );
    }
    return undefined;
  }

  putSenderKey(distributionId: string, sender: SenderKeyAddress, record: Uint8Array): void {
    this.write(
      (cond) =>
        `INSERT INTO signal_sender_keys (puppet_id, distribution_id, sender, device, record, updated_at)
         SELECT $1::integer, $2::text, $3::text, $4::bigint, $5::bytea, $6::bigint WHERE ${cond}
         ON CONFLICT (puppet_id, distribution_id, sender, device)
         DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at`,
      this.puppetId,
      distributionId,
      sender.name,
      sender.deviceId,
      Buffer.from(record.buffer, record.byteOffset, record.byteLength),
      this.now(),
    );
    this.records.set(senderKeyId(distributionId, sender), record);
  }

  deleteSenderKey(distributionId: string, sender: SenderKeyAddress): void {
    this.write(
      (cond) =>
        `DELETE FROM signal_sender_keys
         WHERE puppet_id = $1 AND distribution_id = $2 AND sender = $3 AND device = $4 AND ${cond}`,
      this.puppetId,
      distributionId,
      sender.name,
      sender.deviceId,
    );
    this.records.set(senderKeyId(distributionId, sender), null);
  }

  /**
   * One loose write; with a lease, conditional on the lease still being at this process's fence
   * (its row share-locked until the write commits), the condition signal-store-postgres.ts uses.
   */
  private write(statement: (cond: string) => string, ...values: unknown[]): void {
    const lease = this.lease?.();
    if (!lease) {
      this.db.write(sql(statement('TRUE'), ...values));
      return;
    }
    this.db.write(sql(statement(fenced(values.length + 1)), ...values, lease.name, lease.fence));
  }
}
