/**
 * What the Matrix adapter keeps: inbound appservice events, written before a transaction is
 * acknowledged; the rooms it manages; ghosts; and the Matrix events sent for incoming messages, so
 * a redelivery is not sent twice. Every method returns a Promise, so a backend that answers
 * asynchronously (PostgreSQL) fits the same interface; sqlite-store.ts is the SQLite one.
 */
import type { CryptoJournal } from './crypto/crypto-journal.js';

/** An appservice event (or one read receipt) waiting to be handled. */
export interface InboundRow {
  seq: number;
  key: string;
  roomId: string;
  kind: 'event' | 'receipt';
  payload: Record<string, unknown>;
  attempts: number;
}

/** An inbound event as the appservice listener records it. */
export interface NewInbound {
  key: string;
  roomId: string;
  kind: 'event' | 'receipt';
  payload: Record<string, unknown>;
}

/** A room the bridge manages: a portal (local user, contact) or a user's management room. */
export interface MatrixRoom {
  roomId: string;
  kind: 'portal' | 'management';
  localUser: string;
  remoteJid: string | null;
  encryptionTold: boolean;
}

export interface Ghost {
  userId: string;
  jid: string;
  displayname: string | null;
  registered: boolean;
}

/** A contact's picture as its ghost's avatar. */
export interface GhostAvatar {
  /** The picture's id at the gateway (it changes with the picture). */
  pictureId: string;
  /** Where it was uploaded (`mxc://...`). */
  url: string;
}

/** The state of one inbound event, for diagnostics and tests. */
export interface InboundState {
  /** Its place in the queue (events are handled in this order per room). */
  seq: number;
  state: string;
  attempts: number;
  error: string | null;
}

/** What recording a transaction found. */
export interface RecordedTransaction {
  /** The transaction id was not seen before. */
  readonly newTransaction: boolean;
  /** Events (and receipts) not recorded before. */
  readonly newEvents: number;
}

export interface MatrixStore {
  // ---- transactions and inbound events ----------------------------------------------------------

  /**
   * Records a transaction's events, each once by its key, atomically. The transaction id decides
   * nothing about the events (homeservers number transactions from 1 again after a restart); it
   * only tells a resend apart (for live-only typing). Rejects only if nothing was written.
   * `handOver` receives the new rows (with their seq) once committed, before anything else runs on
   * SQLite (the inbound queue then need not read them back).
   */
  recordTransaction(
    txnId: string,
    events: readonly NewInbound[],
    handOver?: (rows: InboundRow[]) => void,
  ): Promise<RecordedTransaction>;
  /** Rooms with pending inbound events (without reading any payload). */
  pendingInboundRooms(): Promise<string[]>;
  /** One room's pending inbound events, oldest first. */
  pendingInboundOf(roomId: string, limit?: number): Promise<InboundRow[]>;
  /** Marks inbound events handled (their payloads are dropped), in one transaction. */
  markInboundDone(seqs: readonly number[]): Promise<void>;
  /** Counts a failed attempt; with `giveUp`, the event is set aside as failed. */
  markInboundAttempt(seq: number, error: string, giveUp: boolean): Promise<void>;
  /** The state of the inbound event recorded under `key`, if any. */
  inboundState(key: string): Promise<InboundState | undefined>;

  // ---- rooms --------------------------------------------------------------------------------------

  /** The room, if the bridge manages it. */
  room(roomId: string): Promise<MatrixRoom | undefined>;
  /** The portal of (local user, contact), if there is one. */
  portalOf(localUser: string, remoteJid: string): Promise<MatrixRoom | undefined>;
  /** The local user's portals, oldest first. */
  portalsOf(localUser: string): Promise<MatrixRoom[]>;
  /** Every user's portals, a page at a time in room id order: those after `afterRoomId`. */
  portalPage(afterRoomId: string, limit: number): Promise<MatrixRoom[]>;
  /** The local user's management room (the direct chat with the bot), if there is one. */
  managementRoomOf(localUser: string): Promise<MatrixRoom | undefined>;
  /** Records a room, atomically replacing the user's older portal with the contact (or management room). */
  putRoom(room: {
    roomId: string;
    kind: MatrixRoom['kind'];
    localUser: string;
    remoteJid?: string;
  }): Promise<void>;
  /** Forgets a room: the next message makes a new one. */
  forgetRoom(roomId: string): Promise<void>;
  /** Marks that the room was told about encryption; false if it already had been. */
  markEncryptionTold(roomId: string): Promise<boolean>;

  // ---- ghosts -------------------------------------------------------------------------------------

  /** The ghost with this user id, if known. */
  ghost(userId: string): Promise<Ghost | undefined>;
  /** Records which contact a ghost stands for. */
  putGhost(userId: string, jid: string): Promise<void>;
  /** Marks a ghost's Matrix account registered, with its display name. */
  markGhostRegistered(userId: string, displayname: string): Promise<void>;
  /** Records the display name last set on a ghost (from its contact's push name). */
  setGhostDisplayname(userId: string, displayname: string): Promise<void>;
  /** The contact's picture last set as the ghost's avatar: its id at the gateway and its mxc URI. */
  ghostAvatar(userId: string): Promise<GhostAvatar | undefined>;
  /** Records the ghost's avatar (undefined: it has none). */
  setGhostAvatar(userId: string, avatar: GhostAvatar | undefined): Promise<void>;

  // ---- the local users' reactions -------------------------------------------------------------------

  /** Remembers a local user's reaction (its event id), what it reacted to and with what. */
  putReaction(roomId: string, eventId: string, target: string, emoji: string): Promise<void>;
  /** A reaction remembered by `putReaction`, if `eventId` is one. */
  reaction(eventId: string): Promise<{ target: string; emoji: string } | undefined>;

  // ---- double puppeting ---------------------------------------------------------------------------

  /** Whether the user turned double puppeting on. */
  doublePuppet(userId: string): Promise<boolean>;
  setDoublePuppet(userId: string, enabled: boolean): Promise<void>;

  // ---- end-to-end encryption ----------------------------------------------------------------------

  /** The crypto store's journal on the same database (crypto/), for encrypted rooms. */
  cryptoJournal?(): CryptoJournal;
}
