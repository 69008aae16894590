/**
 * Makes "decrypted" and "in the inbox" one commit. Decrypting a message advances the Signal session
 * (and a pkmsg consumes a one-time prekey); if that were committed on its own and the process died
 * before the inbox row was written, the gateway's redelivery could no longer be decrypted (its
 * message key is spent): only a retry receipt brings it back, after the messages that followed it,
 * so the conversation's order is broken (the crash test finds this).
 *
 * The gate wraps a puppet's `SignalBackend`. While a hold is open (the incoming handler opens one
 * around each decryption; it handles one message at a time), the Signal state's writes are kept in
 * memory, readable at once, and `commit(extra)` writes them together with `extra` (the inbox row)
 * in one transaction. Writes by other operations during the hold (an encryption for the outbox) are
 * kept and committed with it too: never dropped, so the state the session manager saw is the state
 * that lands. A ciphertext made from kept state must not leave before that commit: the outbox
 * waits for `flushed()` before it writes a message.
 */
import type { RemoteIdentity, SignalBackend, StoredPreKey } from '../signal/index.js';
import type { LiveSessionRecord } from '../signal/record.js';
import type { SenderKeyAddress, SenderKeyBackend } from '../signal/sender-key-store.js';
import type { Store, StoreWrites } from '../store/repositories.js';
import { LazyMap, LazySet } from '../util/lazy-map.js';

type Write =
  | { kind: 'session'; address: string; record: LiveSessionRecord | undefined }
  | { kind: 'prekey'; keyId: number }
  | { kind: 'identity'; identity: RemoteIdentity }
  | {
      kind: 'senderKey';
      to: SenderKeyBackend;
      distributionId: string;
      sender: SenderKeyAddress;
      /** null: deleted. */
      record: Uint8Array | null;
    };

const senderKeyOf = (distributionId: string, sender: SenderKeyAddress): string =>
  `${distributionId} ${sender.name}.${sender.deviceId}`;

export class SessionWriteGate implements SignalBackend {
  private held: Write[] | undefined;
  private readonly sessions = new LazyMap<string, LiveSessionRecord | undefined>();
  private readonly removedPreKeys = new LazySet<number>();
  private readonly identities = new LazyMap<string, RemoteIdentity>();
  /** Sender keys a group decryption moved on while held (kept with the rest, committed with it). */
  private readonly senderKeyRecords = new LazyMap<string, Uint8Array | null>();
  private waiting: (() => void)[] = [];

  /**
   * @param lease With several workers (src/cluster/), the puppet's lease and the fence this process
   *   holds it at: every commit is fenced with it (`requireLease`), so a process that lost the
   *   puppet cannot write its Signal state or inbox any more. Undefined: one process, no fencing.
   */
  constructor(
    private readonly inner: SignalBackend,
    private readonly store: Pick<Store, 'atomically'>,
    private readonly lease?: () => { name: string; fence: number } | undefined,
  ) {}

  /** Starts keeping writes in memory until `commit`. One hold at a time. */
  hold(): void {
    if (this.held) throw new Error('a Signal write hold is already open');
    this.held = [];
  }

  /**
   * Writes what the hold kept, and what `extra` records (the inbox row), in one transaction of the
   * store; then lets waiting senders go. Called on success and failure alike (kept writes are never
   * lost). The store must be on the Signal backend's database.
   */
  commit(extra?: (writes: StoreWrites) => void): Promise<void> {
    const writes = this.held ?? [];
    this.held = undefined;
    try {
      // The store's unit runs synchronously on its database, which is the Signal backend's (the
      // SQLite store): the Signal writes made in it join its transaction.
      const lease = this.lease?.();
      return this.store.atomically((unit) => {
        if (lease) unit.requireLease(lease.name, lease.fence);
        for (const w of writes) {
          if (w.kind === 'session') {
            if (w.record === undefined) this.inner.deleteSession(w.address);
            else this.inner.saveSession(w.address, w.record);
          } else if (w.kind === 'prekey') this.inner.removePreKey(w.keyId);
          else if (w.kind === 'senderKey') {
            if (w.record === null) w.to.deleteSenderKey(w.distributionId, w.sender);
            else w.to.putSenderKey(w.distributionId, w.sender, w.record);
          } else this.inner.putRemoteIdentity(w.identity);
        }
        extra?.(unit);
      });
    } finally {
      this.sessions.clear();
      this.removedPreKeys.clear();
      this.identities.clear();
      this.senderKeyRecords.clear();
      const waiting = this.waiting;
      this.waiting = [];
      for (const go of waiting) go();
    }
  }

  /**
   * A puppet's sender keys behind the same gate: a group decryption moves its sender's chain on,
   * and that must land with the inbox row too (else a crash between them leaves a redelivered
   * message that can no longer be decrypted, and its retry arrives after the messages that
   * followed it). While held, `putSenderKey` is kept, readable at once, and committed with the rest.
   * The backend must be on the store's database, as the Signal backend is.
   */
  senderKeys(inner: SenderKeyBackend): SenderKeyBackend {
    return new GatedSenderKeys(this, inner);
  }

  /** A sender key write kept while held (null: a kept deletion); undefined when none is kept. */
  keptSenderKey(distributionId: string, sender: SenderKeyAddress): Uint8Array | null | undefined {
    return this.senderKeyRecords.get(senderKeyOf(distributionId, sender));
  }

  /** Keeps a sender key write (null: a deletion) for the commit, if held; false if not held. */
  holdSenderKey(
    to: SenderKeyBackend,
    distributionId: string,
    sender: SenderKeyAddress,
    record: Uint8Array | null,
  ): boolean {
    if (!this.held) return false;
    this.senderKeyRecords.set(senderKeyOf(distributionId, sender), record);
    this.held.push({ kind: 'senderKey', to, distributionId, sender, record });
    return true;
  }

  /** Resolves once nothing is held and the backend has made every write durable. */
  async flushed(): Promise<void> {
    if (this.held) await new Promise<void>((resolve) => this.waiting.push(resolve));
    await this.inner.flush();
  }

  prepare(user?: string): Promise<void> {
    return this.inner.prepare(user);
  }

  flush(): Promise<void> {
    return this.flushed();
  }

  // -- SignalBackend: the writes a decryption makes are kept while held; everything else passes.

  loadSession(address: string): LiveSessionRecord | undefined {
    return this.sessions.has(address) ? this.sessions.get(address) : this.inner.loadSession(address);
  }

  saveSession(address: string, record: LiveSessionRecord): void {
    if (!this.held) return this.inner.saveSession(address, record);
    this.sessions.set(address, record);
    this.held.push({ kind: 'session', address, record });
  }

  deleteSession(address: string): void {
    if (!this.held) return this.inner.deleteSession(address);
    this.sessions.set(address, undefined);
    this.held.push({ kind: 'session', address, record: undefined });
  }

  sessionAddresses(user: string): string[] {
    const addresses = new Set(this.inner.sessionAddresses(user));
    for (const [address, record] of this.sessions) {
      if (!address.startsWith(`${user}.`)) continue;
      if (record === undefined) addresses.delete(address);
      else addresses.add(address);
    }
    return [...addresses];
  }

  preKey(keyId: number): StoredPreKey | undefined {
    return this.removedPreKeys.has(keyId) ? undefined : this.inner.preKey(keyId);
  }

  removePreKey(keyId: number): void {
    if (!this.held) return this.inner.removePreKey(keyId);
    this.removedPreKeys.add(keyId);
    this.held.push({ kind: 'prekey', keyId });
  }

  preKeysNotUploaded(limit: number): StoredPreKey[] {
    return this.inner
      .preKeysNotUploaded(limit + this.removedPreKeys.size)
      .filter((k) => !this.removedPreKeys.has(k.keyId))
      .slice(0, limit);
  }

  preKeyCount(): number {
    let removed = 0;
    for (const id of this.removedPreKeys) if (this.inner.preKey(id) !== undefined) removed++;
    return this.inner.preKeyCount() - removed;
  }

  remoteIdentity(address: string): RemoteIdentity | undefined {
    return this.identities.get(address) ?? this.inner.remoteIdentity(address);
  }

  putRemoteIdentity(identity: RemoteIdentity): void {
    if (!this.held) return this.inner.putRemoteIdentity(identity);
    this.identities.set(identity.address, identity);
    this.held.push({ kind: 'identity', identity });
  }

  // Plain delegation, as methods (fields of arrow functions were a closure each per puppet).
  localIdentity(): ReturnType<SignalBackend['localIdentity']> {
    return this.inner.localIdentity();
  }
  putPreKeys(keys: readonly StoredPreKey[]): void {
    this.inner.putPreKeys(keys);
  }
  markPreKeysUploaded(keyIds: readonly number[]): void {
    this.inner.markPreKeysUploaded(keyIds);
  }
  allocatePreKeyIds(count: number): ReturnType<SignalBackend['allocatePreKeyIds']> {
    return this.inner.allocatePreKeyIds(count);
  }
  allocateSignedPreKeyId(): ReturnType<SignalBackend['allocateSignedPreKeyId']> {
    return this.inner.allocateSignedPreKeyId();
  }
  signedPreKey(keyId: number): ReturnType<SignalBackend['signedPreKey']> {
    return this.inner.signedPreKey(keyId);
  }
  signedPreKeys(): ReturnType<SignalBackend['signedPreKeys']> {
    return this.inner.signedPreKeys();
  }
  putSignedPreKey(key: Parameters<SignalBackend['putSignedPreKey']>[0]): void {
    this.inner.putSignedPreKey(key);
  }
  removeSignedPreKey(keyId: number): void {
    this.inner.removeSignedPreKey(keyId);
  }
  atomically<T>(work: () => T): T {
    return this.inner.atomically(work);
  }
}

/**
 * A puppet's sender keys behind its gate (`SessionWriteGate.senderKeys`). A class, not an object
 * of closures: a puppet keeps one for its life.
 */
class GatedSenderKeys implements SenderKeyBackend {
  constructor(
    private readonly gate: SessionWriteGate,
    private readonly inner: SenderKeyBackend,
  ) {}

  prepare(distributionId: string): Promise<void> {
    return this.inner.prepare(distributionId);
  }

  // What is held is made durable by the commit, which whoever sends a ciphertext waits for
  // (`flushed()`); waiting for it here would stall the decryption that holds it.
  flush(): Promise<void> {
    return this.inner.flush();
  }

  getSenderKey(distributionId: string, sender: SenderKeyAddress): Uint8Array | undefined {
    const kept = this.gate.keptSenderKey(distributionId, sender);
    return kept === undefined ? this.inner.getSenderKey(distributionId, sender) : (kept ?? undefined);
  }

  putSenderKey(distributionId: string, sender: SenderKeyAddress, record: Uint8Array): void {
    if (!this.gate.holdSenderKey(this.inner, distributionId, sender, record))
      this.inner.putSenderKey(distributionId, sender, record);
  }

  deleteSenderKey(distributionId: string, sender: SenderKeyAddress): void {
    if (!this.gate.holdSenderKey(this.inner, distributionId, sender, null))
      this.inner.deleteSenderKey(distributionId, sender);
  }
}
