/**
 * The Matrix adapter's own tables (migration 003_matrix.sql): inbound appservice events, written
 * before a transaction is acknowledged; the rooms it manages; ghosts; and the Matrix events sent
 * for incoming messages, so a redelivery is not sent twice.
 */
import type { Statement } from 'better-sqlite3';
import type { Db } from '../../src/store/sql.js';

export interface InboundRow {
  seq: number;
  key: string;
  roomId: string;
  kind: 'event' | 'receipt';
  payload: Record<string, unknown>;
  attempts: number;
}

export interface NewInbound {
  key: string;
  roomId: string;
  kind: 'event' | 'receipt';
  payload: Record<string, unknown>;
}

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

export interface SentEvent {
  roomId: string;
  eventId: string;
}

type Row = Record<string, unknown>;

const toRoom = (r: Row): MatrixRoom => ({
  roomId: r.room_id as string,
  kind: r.kind as MatrixRoom['kind'],
  localUser: r.local_user as string,
  remoteJid: (r.remote_jid as string | null) ?? null,
  encryptionTold: r.encryption_told === 1,
});

const toGhost = (r: Row): Ghost => ({
  userId: r.user_id as string,
  jid: r.jid as string,
  displayname: (r.displayname as string | null) ?? null,
  registered: r.registered === 1,
});

export class MatrixStore {
  readonly #db: Db;
  readonly #cache = new Map<string, Statement>();
  readonly #now: () => number;

  constructor(db: Db, now: () => number = Date.now) {
    this.#db = db;
    this.#now = now;
  }

  #q(sql: string): Statement {
    let s = this.#cache.get(sql);
    if (!s) {
      s = this.#db.prepare(sql);
      this.#cache.set(sql, s);
    }
    return s;
  }

  // ---- transactions and inbound events ----------------------------------------------------------

  /**
   * Records a transaction's events and marks it done, in one SQLite transaction. Returns false
   * when the transaction was already done (a resend): nothing is recorded again.
   */
  recordTransaction(txnId: string, events: readonly NewInbound[]): boolean {
    return this.#db.transaction(() => {
      if (this.#q('SELECT 1 FROM appservice_transactions WHERE txn_id = ?').get(txnId) !== undefined) {
        return false;
      }
      const insert = this.#q(
        `INSERT INTO matrix_inbound (key, room_id, kind, payload, received_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (key) DO NOTHING`,
      );
      const t = this.#now();
      for (const e of events) insert.run(e.key, e.roomId, e.kind, JSON.stringify(e.payload), t);
      this.#q(
        'INSERT INTO appservice_transactions (txn_id, completed_at) VALUES (?, ?) ON CONFLICT DO NOTHING',
      ).run(txnId, t);
      return true;
    })();
  }

  /** Pending inbound events, oldest first. */
  pendingInbound(limit = 500): InboundRow[] {
    return (
      this.#q(
        `SELECT seq, key, room_id, kind, payload, attempts FROM matrix_inbound
         WHERE state = 'pending' ORDER BY seq LIMIT ?`,
      ).all(limit) as Row[]
    ).map((r) => ({
      seq: r.seq as number,
      key: r.key as string,
      roomId: r.room_id as string,
      kind: r.kind as InboundRow['kind'],
      payload: JSON.parse(r.payload as string) as Record<string, unknown>,
      attempts: r.attempts as number,
    }));
  }

  /** Rooms with pending inbound events (answered from the partial index, no payload read). */
  pendingInboundRooms(): string[] {
    return (
      this.#q(`SELECT DISTINCT room_id FROM matrix_inbound WHERE state = 'pending'`).all() as Row[]
    ).map((r) => r.room_id as string);
  }

  /** One room's pending inbound events, oldest first. */
  pendingInboundOf(roomId: string, limit = 500): InboundRow[] {
    return (
      this.#q(
        `SELECT seq, key, room_id, kind, payload, attempts FROM matrix_inbound
         WHERE state = 'pending' AND room_id = ? ORDER BY seq LIMIT ?`,
      ).all(roomId, limit) as Row[]
    ).map((r) => ({
      seq: r.seq as number,
      key: r.key as string,
      roomId: r.room_id as string,
      kind: r.kind as InboundRow['kind'],
      payload: JSON.parse(r.payload as string) as Record<string, unknown>,
      attempts: r.attempts as number,
    }));
  }

  markInboundDone(seq: number): void {
    this.#q(`UPDATE matrix_inbound SET state = 'done', payload = '{}' WHERE seq = ?`).run(seq);
  }

  /** Counts a failed attempt; with `give_up`, the event is set aside as failed. */
  markInboundAttempt(seq: number, error: string, giveUp: boolean): void {
    this.#q(
      `UPDATE matrix_inbound SET attempts = attempts + 1, error = ?, state = CASE WHEN ? THEN 'failed' ELSE state END
       WHERE seq = ?`,
    ).run(error, giveUp ? 1 : 0, seq);
  }

  inboundState(key: string): { state: string; attempts: number; error: string | null } | undefined {
    const r = this.#q('SELECT state, attempts, error FROM matrix_inbound WHERE key = ?').get(key) as
      Row | undefined;
    return r === undefined
      ? undefined
      : {
          state: r.state as string,
          attempts: r.attempts as number,
          error: (r.error as string | null) ?? null,
        };
  }

  // ---- rooms --------------------------------------------------------------------------------------

  room(roomId: string): MatrixRoom | undefined {
    const r = this.#q('SELECT * FROM matrix_rooms WHERE room_id = ?').get(roomId) as Row | undefined;
    return r === undefined ? undefined : toRoom(r);
  }

  portalOf(localUser: string, remoteJid: string): MatrixRoom | undefined {
    const r = this.#q(
      `SELECT * FROM matrix_rooms WHERE kind = 'portal' AND local_user = ? AND remote_jid = ?`,
    ).get(localUser, remoteJid) as Row | undefined;
    return r === undefined ? undefined : toRoom(r);
  }

  portalsOf(localUser: string): MatrixRoom[] {
    return (
      this.#q(`SELECT * FROM matrix_rooms WHERE kind = 'portal' AND local_user = ? ORDER BY created_at`).all(
        localUser,
      ) as Row[]
    ).map(toRoom);
  }

  managementRoomOf(localUser: string): MatrixRoom | undefined {
    const r = this.#q(`SELECT * FROM matrix_rooms WHERE kind = 'management' AND local_user = ?`).get(
      localUser,
    ) as Row | undefined;
    return r === undefined ? undefined : toRoom(r);
  }

  /** Records a room; a portal replaces an older one of the same (user, contact). */
  putRoom(room: { roomId: string; kind: MatrixRoom['kind']; localUser: string; remoteJid?: string }): void {
    this.#db.transaction(() => {
      if (room.kind === 'portal') {
        this.#q(`DELETE FROM matrix_rooms WHERE kind = 'portal' AND local_user = ? AND remote_jid = ?`).run(
          room.localUser,
          room.remoteJid ?? null,
        );
      } else {
        this.#q(`DELETE FROM matrix_rooms WHERE kind = 'management' AND local_user = ?`).run(room.localUser);
      }
      this.#q(
        `INSERT INTO matrix_rooms (room_id, kind, local_user, remote_jid, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (room_id) DO UPDATE SET kind = excluded.kind, local_user = excluded.local_user,
           remote_jid = excluded.remote_jid`,
      ).run(room.roomId, room.kind, room.localUser, room.remoteJid ?? null, this.#now());
    })();
  }

  forgetRoom(roomId: string): void {
    this.#q('DELETE FROM matrix_rooms WHERE room_id = ?').run(roomId);
  }

  /** Marks that the room was told about encryption; false if it already had been. */
  markEncryptionTold(roomId: string): boolean {
    return (
      this.#q('UPDATE matrix_rooms SET encryption_told = 1 WHERE room_id = ? AND encryption_told = 0').run(
        roomId,
      ).changes === 1
    );
  }

  // ---- ghosts -------------------------------------------------------------------------------------

  ghost(userId: string): Ghost | undefined {
    const r = this.#q('SELECT * FROM matrix_ghosts WHERE user_id = ?').get(userId) as Row | undefined;
    return r === undefined ? undefined : toGhost(r);
  }

  putGhost(userId: string, jid: string): void {
    this.#q(
      'INSERT INTO matrix_ghosts (user_id, jid) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET jid = excluded.jid',
    ).run(userId, jid);
  }

  markGhostRegistered(userId: string, displayname: string): void {
    this.#q('UPDATE matrix_ghosts SET registered = 1, displayname = ? WHERE user_id = ?').run(
      displayname,
      userId,
    );
  }

  // ---- sent events --------------------------------------------------------------------------------

  sent(localUser: string, remoteJid: string, remoteId: string): SentEvent | undefined {
    const r = this.#q(
      'SELECT room_id, event_id FROM matrix_sent WHERE local_user = ? AND remote_jid = ? AND remote_id = ?',
    ).get(localUser, remoteJid, remoteId) as Row | undefined;
    return r === undefined ? undefined : { roomId: r.room_id as string, eventId: r.event_id as string };
  }

  putSent(localUser: string, remoteJid: string, remoteId: string, sent: SentEvent): void {
    this.#q(
      `INSERT INTO matrix_sent (local_user, remote_jid, remote_id, room_id, event_id, created_at)
       VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    ).run(localUser, remoteJid, remoteId, sent.roomId, sent.eventId, this.#now());
  }

  /**
   * The contact's events in the room up to and including `eventId` that the local user had not
   * read yet (a Matrix read receipt covers everything before it), now marked read.
   */
  markReadUpTo(roomId: string, eventId: string): string[] {
    return this.#db.transaction(() => {
      const at = this.#q('SELECT rowid AS r FROM matrix_sent WHERE room_id = ? AND event_id = ?').get(
        roomId,
        eventId,
      ) as Row | undefined;
      if (at === undefined) return [];
      const rows = this.#q(
        'SELECT rowid AS r, event_id FROM matrix_sent WHERE room_id = ? AND read = 0 AND rowid <= ? ORDER BY rowid',
      ).all(roomId, at.r) as Row[];
      const mark = this.#q('UPDATE matrix_sent SET read = 1 WHERE rowid = ?');
      for (const r of rows) mark.run(r.r);
      return rows.map((r) => r.event_id as string);
    })();
  }

  /** Whether the bridge sent this event (a ghost's message), so a receipt for it goes to the contact. */
  isSentByBridge(roomId: string, eventId: string): boolean {
    return (
      this.#q('SELECT 1 FROM matrix_sent WHERE room_id = ? AND event_id = ?').get(roomId, eventId) !==
      undefined
    );
  }
}
