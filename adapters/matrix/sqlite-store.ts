/**
 * The Matrix adapter's store on SQLite (the tables of migration 003_matrix.sql). better-sqlite3 is
 * synchronous: each method does its work at once and returns a settled Promise; what must be atomic
 * (a transaction's events with its id, a room replacing another, read receipts) runs in one SQLite
 * transaction.
 */
import { keepRow, preparedStatements, type Db, type Prepared, type Row } from '../../src/store/sql.js';
import { SqliteCryptoJournal } from './crypto/crypto-store-sqlite.js';
import type { CryptoJournal } from './crypto/crypto-journal.js';
import { toGhost, toGhostAvatar, toInbound, toInboundState, toReaction, toRoom } from './rows.js';
import type {
  RecordedTransaction,
  Ghost,
  GhostAvatar,
  InboundRow,
  InboundState,
  MatrixRoom,
  MatrixStore,
  NewInbound,
} from './store.js';

export { matrixMigrations } from './rows.js';

export class SqliteMatrixStore implements MatrixStore {
  readonly #db: Db;
  readonly #q: Prepared;
  readonly #now: () => number;
  /**
   * Rooms as read, by room id and by portal (`localUser\nremoteJid`), frozen: every event and every
   * message asks for its room, and this process is the table's only writer (the store's process
   * lock), so each write forgets them all.
   */
  readonly #rooms = new Map<string, MatrixRoom>();
  readonly #portals = new Map<string, MatrixRoom>();

  constructor(db: Db, now: () => number = Date.now) {
    this.#db = db;
    this.#q = preparedStatements(db);
    this.#now = now;
  }

  // ---- transactions and inbound events ----------------------------------------------------------

  async recordTransaction(
    txnId: string,
    events: readonly NewInbound[],
    handOver?: (rows: InboundRow[]) => void,
  ): Promise<RecordedTransaction> {
    const fresh: InboundRow[] = [];
    const recorded = this.#db.transaction(() => {
      // Each event once, by its key: that, not the transaction id, makes a resent transaction
      // harmless. Synapse numbers transactions from 1 again after a restart with nothing unsent,
      // so a known id can carry new events.
      const insert = this.#q(
        `INSERT INTO matrix_inbound (key, room_id, kind, payload, received_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (key) DO NOTHING`,
      );
      const t = this.#now();
      for (const e of events) {
        const info = insert.run(e.key, e.roomId, e.kind, JSON.stringify(e.payload), t);
        if (info.changes > 0) {
          const seq = Number(info.lastInsertRowid);
          fresh.push({ seq, key: e.key, roomId: e.roomId, kind: e.kind, payload: e.payload, attempts: 0 });
        }
      }
      const newTransaction =
        this.#q(
          'INSERT INTO appservice_transactions (txn_id, completed_at) VALUES (?, ?) ON CONFLICT DO NOTHING',
        ).run(txnId, t).changes > 0;
      return { newTransaction, newEvents: fresh.length };
    })();
    // In the commit's synchronous step: nothing can read these rows back before they are handed.
    if (fresh.length > 0) handOver?.(fresh);
    return recorded;
  }

  async pendingInboundRooms(): Promise<string[]> {
    // Answered from the partial index: no payload is read.
    return (
      this.#q(`SELECT DISTINCT room_id FROM matrix_inbound WHERE state = 'pending'`).all() as Row[]
    ).map((r) => r.room_id as string);
  }

  async pendingInboundOf(roomId: string, limit = 500): Promise<InboundRow[]> {
    return (
      this.#q(
        `SELECT seq, key, room_id, kind, payload, attempts FROM matrix_inbound
         WHERE state = 'pending' AND room_id = ? ORDER BY seq LIMIT ?`,
      ).all(roomId, limit) as Row[]
    ).map(toInbound);
  }

  async markInboundDone(seqs: readonly number[]): Promise<void> {
    const done = this.#q(`UPDATE matrix_inbound SET state = 'done', payload = '{}' WHERE seq = ?`);
    if (seqs.length === 1) done.run(seqs[0]);
    else this.#db.transaction(() => seqs.forEach((seq) => done.run(seq)))();
  }

  async markInboundAttempt(seq: number, error: string, giveUp: boolean): Promise<void> {
    this.#q(
      `UPDATE matrix_inbound SET attempts = attempts + 1, error = ?, state = CASE WHEN ? THEN 'failed' ELSE state END
       WHERE seq = ?`,
    ).run(error, giveUp ? 1 : 0, seq);
  }

  async inboundState(key: string): Promise<InboundState | undefined> {
    const r = this.#q('SELECT seq, state, attempts, error FROM matrix_inbound WHERE key = ?').get(key) as
      Row | undefined;
    return r === undefined ? undefined : toInboundState(r);
  }

  // ---- rooms --------------------------------------------------------------------------------------

  async room(roomId: string): Promise<MatrixRoom | undefined> {
    const known = this.#rooms.get(roomId);
    if (known) return known;
    const r = this.#q('SELECT * FROM matrix_rooms WHERE room_id = ?').get(roomId) as Row | undefined;
    return r === undefined ? undefined : keepRow(this.#rooms, roomId, toRoom(r));
  }

  async portalOf(localUser: string, remoteJid: string): Promise<MatrixRoom | undefined> {
    const key = `${localUser}\n${remoteJid}`;
    const known = this.#portals.get(key);
    if (known) return known;
    const r = this.#q(
      `SELECT * FROM matrix_rooms WHERE kind = 'portal' AND local_user = ? AND remote_jid = ?`,
    ).get(localUser, remoteJid) as Row | undefined;
    return r === undefined ? undefined : keepRow(this.#portals, key, toRoom(r));
  }

  /** The table changed: what was read of it is forgotten. */
  #roomsChanged(): void {
    this.#rooms.clear();
    this.#portals.clear();
  }

  async portalsOf(localUser: string): Promise<MatrixRoom[]> {
    return (
      this.#q(`SELECT * FROM matrix_rooms WHERE kind = 'portal' AND local_user = ? ORDER BY created_at`).all(
        localUser,
      ) as Row[]
    ).map(toRoom);
  }

  async portalPage(afterRoomId: string, limit: number): Promise<MatrixRoom[]> {
    return (
      this.#q(
        `SELECT * FROM matrix_rooms WHERE kind = 'portal' AND room_id > ? ORDER BY room_id LIMIT ?`,
      ).all(afterRoomId, limit) as Row[]
    ).map(toRoom);
  }

  async managementRoomOf(localUser: string): Promise<MatrixRoom | undefined> {
    const r = this.#q(`SELECT * FROM matrix_rooms WHERE kind = 'management' AND local_user = ?`).get(
      localUser,
    ) as Row | undefined;
    return r === undefined ? undefined : toRoom(r);
  }

  async putRoom(room: {
    roomId: string;
    kind: MatrixRoom['kind'];
    localUser: string;
    remoteJid?: string;
  }): Promise<void> {
    this.#roomsChanged();
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

  async forgetRoom(roomId: string): Promise<void> {
    this.#roomsChanged();
    this.#q('DELETE FROM matrix_rooms WHERE room_id = ?').run(roomId);
  }

  async markEncryptionTold(roomId: string): Promise<boolean> {
    const told =
      this.#q('UPDATE matrix_rooms SET encryption_told = 1 WHERE room_id = ? AND encryption_told = 0').run(
        roomId,
      ).changes === 1;
    if (told) this.#roomsChanged();
    return told;
  }

  // ---- ghosts -------------------------------------------------------------------------------------

  async ghost(userId: string): Promise<Ghost | undefined> {
    const r = this.#q('SELECT * FROM matrix_ghosts WHERE user_id = ?').get(userId) as Row | undefined;
    return r === undefined ? undefined : toGhost(r);
  }

  async putGhost(userId: string, jid: string): Promise<void> {
    this.#q(
      'INSERT INTO matrix_ghosts (user_id, jid) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET jid = excluded.jid',
    ).run(userId, jid);
  }

  async markGhostRegistered(userId: string, displayname: string): Promise<void> {
    this.#q('UPDATE matrix_ghosts SET registered = 1, displayname = ? WHERE user_id = ?').run(
      displayname,
      userId,
    );
  }

  async setGhostDisplayname(userId: string, displayname: string): Promise<void> {
    this.#q('UPDATE matrix_ghosts SET displayname = ? WHERE user_id = ?').run(displayname, userId);
  }

  async ghostAvatar(userId: string): Promise<GhostAvatar | undefined> {
    const r = this.#q('SELECT avatar_picture_id, avatar_url FROM matrix_ghosts WHERE user_id = ?').get(
      userId,
    ) as Row | undefined;
    return r === undefined ? undefined : toGhostAvatar(r);
  }

  async setGhostAvatar(userId: string, avatar: GhostAvatar | undefined): Promise<void> {
    this.#q('UPDATE matrix_ghosts SET avatar_picture_id = ?, avatar_url = ? WHERE user_id = ?').run(
      avatar?.pictureId ?? null,
      avatar?.url ?? null,
      userId,
    );
  }

  async putReaction(roomId: string, eventId: string, target: string, emoji: string): Promise<void> {
    this.#q(
      `INSERT INTO matrix_reactions (event_id, room_id, target, emoji, created_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT DO NOTHING`,
    ).run(eventId, roomId, target, emoji, this.#now());
  }

  async reaction(eventId: string): Promise<{ target: string; emoji: string } | undefined> {
    const r = this.#q('SELECT target, emoji FROM matrix_reactions WHERE event_id = ?').get(eventId) as
      Row | undefined;
    return r === undefined ? undefined : toReaction(r);
  }

  async doublePuppet(userId: string): Promise<boolean> {
    return this.#q('SELECT 1 FROM matrix_double_puppets WHERE user_id = ?').get(userId) !== undefined;
  }

  async setDoublePuppet(userId: string, enabled: boolean): Promise<void> {
    if (enabled) {
      this.#q(
        'INSERT INTO matrix_double_puppets (user_id, enabled_at) VALUES (?, ?) ON CONFLICT DO NOTHING',
      ).run(userId, this.#now());
    } else {
      this.#q('DELETE FROM matrix_double_puppets WHERE user_id = ?').run(userId);
    }
  }

  cryptoJournal(): CryptoJournal {
    return new SqliteCryptoJournal(this.#db);
  }
}
