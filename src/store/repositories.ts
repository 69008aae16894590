/**
 * The core's storage contract. Callers see only these interfaces, so a PostgreSQL backend can be
 * added beside the SQLite one (sqlite-store.ts) without touching them.
 *
 * Shaped for an asynchronous backend: every read and every single write returns a Promise. What
 * must land together is an *atomic unit*: `Store.atomically(work)` hands `work` a `StoreWrites`,
 * whose methods record writes and return nothing, and commits them all or none. A unit makes no
 * reads, so it never holds a transaction open across a round trip; callers read first (awaiting),
 * then write the unit. SQLite runs the unit synchronously inside one transaction; a networked
 * backend sends it as one transaction.
 */

export type Network = 'matrix' | 'xmpp';
export type PuppetState = 'enlisting' | 'enlisted' | 'opting_out';

export interface NewPuppet {
  localId: string;
  network: Network;
  accountId: string;
  deviceId: number;
  registrationId: number;
  identityPublic: Uint8Array;
  identityPrivate: Uint8Array;
  noisePublic: Uint8Array;
  noisePrivate: Uint8Array;
}

export interface Puppet extends NewPuppet {
  id: number;
  state: PuppetState;
  gatewayStatic: Uint8Array | null;
  createdAt: number;
}

export interface PuppetRepository {
  create(puppet: NewPuppet): Promise<Puppet>;
  byId(id: number): Promise<Puppet | undefined>;
  byLocalId(localId: string): Promise<Puppet | undefined>;
  byAccountId(accountId: string): Promise<Puppet | undefined>;
  list(): Promise<Puppet[]>;
  /** How many puppets there are, in any state. */
  count(): Promise<number>;
  setState(id: number, state: PuppetState): Promise<void>;
  setGatewayStatic(id: number, key: Uint8Array): Promise<void>;
  /** Removes the puppet and, by cascade, everything it owns. */
  delete(id: number): Promise<void>;
}

export interface Portal {
  id: number;
  puppetId: number;
  remoteJid: string;
  localChat: string | null;
  name: string | null;
  createdAt: number;
}

export interface PortalRepository {
  /** The portal for (puppet, remote chat), created if missing. */
  ensure(puppetId: number, remoteJid: string): Promise<Portal>;
  byId(id: number): Promise<Portal | undefined>;
  byRemote(puppetId: number, remoteJid: string): Promise<Portal | undefined>;
  byLocalChat(puppetId: number, localChat: string): Promise<Portal | undefined>;
  setLocalChat(id: number, localChat: string): Promise<void>;
  setName(id: number, name: string): Promise<void>;
  listForPuppet(puppetId: number): Promise<Portal[]>;
}

/**
 * A group a puppet is (or was) in, as the gateway last described it (PROTOCOL.md 5.7): the group's
 * state as the `<group>` element carries it, kept as JSON (`info`), and its version.
 */
export interface StoredGroup {
  puppetId: number;
  /** `<id>@g.wa.interop`. */
  groupJid: string;
  /** The version of `info`: every w:gp2 notification raises it by one. */
  version: number;
  /** The group's state (src/protocol/stanza GroupInfo), as JSON text. */
  info: string;
  /** False once the puppet is no longer a member (removed, or left). */
  active: boolean;
  updatedAt: number;
}

export interface GroupRepository {
  get(puppetId: number, groupJid: string): Promise<StoredGroup | undefined>;
  /** Writes the group's state (insert or replace). */
  put(group: Omit<StoredGroup, 'updatedAt'>): Promise<void>;
  /** The puppet's groups, active ones only unless `all`. */
  listForPuppet(puppetId: number, all?: boolean): Promise<StoredGroup[]>;
  /**
   * The devices (device JIDs, `user:device@server`) that have the puppet's current sender key for
   * the group: they need no distribution message with the next group message.
   */
  keyHolders(puppetId: number, groupJid: string): Promise<Set<string>>;
  /** Records that these devices were sent the current sender key. */
  addKeyHolders(puppetId: number, groupJid: string, devices: readonly string[]): Promise<void>;
  /** Forgets every holder (the sender key was rotated: nobody has the new one yet). */
  clearKeyHolders(puppetId: number, groupJid: string): Promise<void>;
}

export type OutboxState = 'queued' | 'sent' | 'delivered' | 'read' | 'failed';

export interface NewOutboxEntry {
  id: string;
  puppetId: number;
  portalId: number;
  kind: string;
  /**
   * The content, as the core wrote it (sealed with the at-rest key while it waits). Cleared (empty)
   * as the entry leaves `queued`: acknowledged, receipted or failed.
   */
  payload: Uint8Array;
  /** The adapter's id of the event (none for receipts): kept after the payload is cleared. */
  localId?: string | undefined;
}

export interface OutboxEntry extends Omit<NewOutboxEntry, 'localId'> {
  localId: string | null;
  seq: number;
  state: OutboxState;
  attempts: number;
  error: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface OutboxRepository {
  /** Appends at the end of the portal's order. An id already present is returned unchanged. */
  enqueue(entry: NewOutboxEntry): Promise<OutboxEntry>;
  get(id: string): Promise<OutboxEntry | undefined>;
  /**
   * Queued entries of a puppet, oldest first within each portal. `after` leaves out, per portal id,
   * the entries up to that `seq` (the ones a sender has written already).
   */
  queued(puppetId: number, limit?: number, after?: ReadonlyMap<number, number>): Promise<OutboxEntry[]>;
  /** Queued entries of one portal of a puppet after `afterSeq`, in order (a range of the queued index). */
  queuedIn(puppetId: number, portalId: number, afterSeq: number, limit?: number): Promise<OutboxEntry[]>;
  /** Queued entries of a puppet written before `before` (ms), oldest first: too old to wait on. */
  queuedBefore(puppetId: number, before: number, limit?: number): Promise<OutboxEntry[]>;
  /** Queued entries, of one puppet when given. */
  countQueued(puppetId?: number): Promise<number>;
  /**
   * The puppets with something to send: queued entries, or delivery receipts their inbox owes
   * (from the partial indexes: no payload is read).
   */
  puppetsWithQueued(): Promise<number[]>;
  /** When the oldest queued entry (all puppets) was written (ms), or undefined when none waits. */
  oldestQueuedAt(): Promise<number | undefined>;
  /** Counts an attempt that went unanswered (written, then the connection was lost). */
  recordAttempt(id: string): Promise<void>;
  /**
   * Moves an entry forward (queued -> sent -> delivered -> read); never backwards, since receipts
   * can overtake acks. The payload is cleared with the move. Returns whether the state changed.
   */
  advance(id: string, state: 'sent' | 'delivered' | 'read'): Promise<boolean>;
  /** `advance` of many entries to `sent` in one transaction (one commit); an entry already past it is left. */
  advanceAllSent(ids: readonly string[]): Promise<void>;
  /** `advance` of many entries, each to its state, in one transaction (one commit). */
  advanceAll(moves: readonly (readonly [id: string, state: 'delivered' | 'read'])[]): Promise<void>;
  /** A queued entry fails for good; its payload is cleared. */
  fail(id: string, reason: string): Promise<void>;
}

export interface NewInboxEntry {
  puppetId: number;
  sender: string;
  messageId: string;
  portalId: number | null;
  /** The decrypted message (sealed with the at-rest key while pending); cleared once delivered. */
  payload: Uint8Array;
}

export interface InboxEntry extends NewInboxEntry {
  /** The row, in arrival order. */
  seq: number;
  state: 'pending' | 'delivered';
  receivedAt: number;
}

/** A delivery receipt owed for an incoming message, kept on its inbox row. */
export interface OwedReceipt {
  /** The inbox row. */
  seq: number;
  messageId: string;
  /** Where the receipt goes, as `StoreWrites.markInboxDelivered` was given it. */
  receipt: string;
}

export interface InboxRepository {
  /** Persists a decrypted message; false when (puppet, sender, message id) is already there. */
  record(entry: NewInboxEntry): Promise<boolean>;
  has(puppetId: number, sender: string, messageId: string): Promise<boolean>;
  pending(puppetId: number, limit?: number): Promise<InboxEntry[]>;
  /**
   * The local network took it: delivered, and its payload cleared in the same statement; with
   * `receipt`, it owes that delivery receipt (`receiptsOwed`).
   */
  markDelivered(puppetId: number, sender: string, messageId: string, receipt?: string): Promise<void>;
  /**
   * Delivery receipts the puppet owes (`StoreWrites.markInboxDelivered` with a receipt), after the
   * inbox row `afterSeq`, in arrival order; at most `limit`.
   */
  receiptsOwed(puppetId: number, afterSeq: number, limit: number): Promise<OwedReceipt[]>;
  /** The gateway acknowledged these receipts (by inbox row): none is owed any more. */
  receiptsSent(seqs: readonly number[]): Promise<void>;
  /** Entries received but not yet accepted by the local network, of one puppet when given. */
  countPending(puppetId?: number): Promise<number>;
  /** The puppets with pending entries (from the partial index: no payload is read). */
  puppetsWithPending(): Promise<number[]>;
}

export interface MessageMapping {
  portalId: number;
  remoteId: string;
  localId: string;
  sender: string;
}

export interface MessageMapRepository {
  put(mapping: MessageMapping): Promise<void>;
  byRemote(portalId: number, remoteId: string): Promise<MessageMapping | undefined>;
  byLocal(portalId: number, localId: string): Promise<MessageMapping | undefined>;
  /**
   * What a read receipt for `localId` covers: the portal's messages not sent by `reader`, mapped
   * after the last one a read receipt covered (`StoreWrites.markRead`) and up to `localId`'s, in
   * the order they were mapped; none when `localId` is not mapped. At most `limit` of them.
   */
  unreadUpTo(portalId: number, localId: string, reader: string, limit: number): Promise<MessageMapping[]>;
}

/** The writes an atomic unit can make: recorded, committed together by `Store.atomically`. */
export interface StoreWrites {
  /**
   * As `OutboxRepository.enqueue`: appended at the end of its portal's order; a known id is kept.
   * Returns the row as it will be committed when the backend knows it at once (SQLite, whose unit
   * runs now), for its writer to hand to the sender; undefined on PostgreSQL (the statement runs
   * at the commit) and when the id was already there.
   */
  enqueueOutbox(entry: NewOutboxEntry): OutboxEntry | undefined;
  /** As `MessageMapRepository.put`. */
  putMessage(mapping: MessageMapping): void;
  /**
   * A read receipt covered the portal's messages up to `localId`'s: `unreadUpTo` returns none of
   * them again. Never moves back; an unmapped `localId` changes nothing.
   */
  markRead(portalId: number, localId: string): void;
  /**
   * As `InboxRepository.record`: a (puppet, sender, message id) already there is kept. Returns the
   * new row's seq where the backend knows it at once (SQLite); undefined for a row already there,
   * or on a backend that writes the unit later (PostgreSQL).
   */
  recordInbox(entry: NewInboxEntry): number | undefined;
  /**
   * As `InboxRepository.markDelivered`; with `receipt` (where the delivery receipt goes, opaque
   * here), the row owes that receipt until `InboxRepository.receiptsSent`.
   */
  markInboxDelivered(puppetId: number, sender: string, messageId: string, receipt?: string): void;
  /**
   * Fencing (src/cluster/leases.ts): the unit commits only if the lease `name` is still at `fence`;
   * otherwise nothing of it lands and it rejects with `store_fenced`. A writer that lost its lease
   * (another process took the puppet) can no longer write the puppet's state.
   */
  requireLease(name: string, fence: number): void;
}

export interface Store {
  readonly puppets: PuppetRepository;
  readonly portals: PortalRepository;
  readonly outbox: OutboxRepository;
  readonly inbox: InboxRepository;
  readonly messages: MessageMapRepository;
  readonly groups: GroupRepository;
  /**
   * Commits the writes `work` records, all or none; rejects (with nothing written) if `work`
   * throws. `work` must not wait for anything: it only records.
   */
  atomically(work: (writes: StoreWrites) => void): Promise<void>;
  schemaVersion(): Promise<number>;
  /**
   * Pushes what was cleared out of the backend's files (SQLite: checkpoints the WAL into the
   * database and truncates it; freed content is already zeroed by secure_delete). Called now and
   * then, and by `close`.
   */
  scrub(): Promise<void>;
  close(): Promise<void>;
}
