/**
 * The store's contract with the rest of the bridge. Callers see only these interfaces, so a
 * PostgreSQL backend can be added beside the SQLite one without touching them. All methods are
 * synchronous (better-sqlite3); a networked backend would wrap them in a unit-of-work queue.
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
  create(puppet: NewPuppet): Puppet;
  byId(id: number): Puppet | undefined;
  byLocalId(localId: string): Puppet | undefined;
  byAccountId(accountId: string): Puppet | undefined;
  list(): Puppet[];
  setState(id: number, state: PuppetState): void;
  setGatewayStatic(id: number, key: Uint8Array): void;
  /** Removes the puppet and, by cascade, everything it owns. */
  delete(id: number): void;
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
  ensure(puppetId: number, remoteJid: string): Portal;
  byId(id: number): Portal | undefined;
  byRemote(puppetId: number, remoteJid: string): Portal | undefined;
  byLocalChat(puppetId: number, localChat: string): Portal | undefined;
  setLocalChat(id: number, localChat: string): void;
  setName(id: number, name: string): void;
  listForPuppet(puppetId: number): Portal[];
}

export interface SignalSessionRepository {
  loadSession(puppetId: number, address: string): Uint8Array | undefined;
  storeSession(puppetId: number, address: string, record: Uint8Array): void;
  deleteSession(puppetId: number, address: string): void;
  /** Every device session of one remote user (address prefix "user."). */
  sessionAddresses(puppetId: number, remoteUser: string): string[];
}

export type OutboxState = 'queued' | 'sent' | 'delivered' | 'read' | 'failed';

export interface NewOutboxEntry {
  id: string;
  puppetId: number;
  portalId: number;
  kind: string;
  payload: Uint8Array;
}

export interface OutboxEntry extends NewOutboxEntry {
  seq: number;
  state: OutboxState;
  attempts: number;
  error: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface OutboxRepository {
  /** Appends at the end of the portal's order. An id already present is returned unchanged. */
  enqueue(entry: NewOutboxEntry): OutboxEntry;
  get(id: string): OutboxEntry | undefined;
  /** Queued entries of a puppet, oldest first within each portal. */
  queued(puppetId: number, limit?: number): OutboxEntry[];
  /** Queued entries, of one puppet when given. */
  countQueued(puppetId?: number): number;
  recordAttempt(id: string): void;
  /**
   * Moves an entry forward (queued -> sent -> delivered -> read); never backwards, since receipts
   * can overtake acks. Returns whether the state changed.
   */
  advance(id: string, state: 'sent' | 'delivered' | 'read'): boolean;
  fail(id: string, reason: string): void;
}

export interface NewInboxEntry {
  puppetId: number;
  sender: string;
  messageId: string;
  portalId: number | null;
  payload: Uint8Array;
}

export interface InboxEntry extends NewInboxEntry {
  state: 'pending' | 'delivered';
  receivedAt: number;
}

export interface InboxRepository {
  /** Persists a decrypted message; false when (puppet, sender, message id) is already there. */
  record(entry: NewInboxEntry): boolean;
  has(puppetId: number, sender: string, messageId: string): boolean;
  pending(puppetId: number, limit?: number): InboxEntry[];
  markDelivered(puppetId: number, sender: string, messageId: string): void;
  /** Entries received but not yet accepted by the local network (all puppets). */
  countPending(): number;
}

export interface MessageMapping {
  portalId: number;
  remoteId: string;
  localId: string;
  sender: string;
}

export interface MessageMapRepository {
  put(mapping: MessageMapping): void;
  byRemote(portalId: number, remoteId: string): MessageMapping | undefined;
  byLocal(portalId: number, localId: string): MessageMapping | undefined;
}

export interface AppserviceTransactionRepository {
  isDone(txnId: string): boolean;
  markDone(txnId: string): void;
}

export interface Store {
  readonly puppets: PuppetRepository;
  readonly portals: PortalRepository;
  readonly sessions: SignalSessionRepository;
  readonly outbox: OutboxRepository;
  readonly inbox: InboxRepository;
  readonly messages: MessageMapRepository;
  readonly transactions: AppserviceTransactionRepository;
  /** Runs `work` atomically: all of its writes land, or none. */
  atomically<T>(work: () => T): T;
  schemaVersion(): number;
  close(): void;
}
