/**
 * The Matrix adapter's store on PostgreSQL (the tables of migrations/pg, the same as SQLite's):
 * reads go to the database's pool, writes through its one ordered writer, so a read made after an
 * awaited write sees it; what must be atomic (a transaction's events with its id, a room replacing
 * another, read receipts) is one PostgreSQL transaction or one statement.
 */
import { sql, type PgDatabase, type Row } from '../../src/store/sql.js';
import { PostgresCryptoJournal } from './crypto/crypto-store-postgres.js';
import type { CryptoJournal } from './crypto/crypto-journal.js';
import { toGhost, toGhostAvatar, toInbound, toInboundState, toReaction, toRoom } from './rows.js';
import type {
  Ghost,
  GhostAvatar,
  InboundRow,
  InboundState,
  MatrixRoom,
  MatrixStore,
  NewInbound,
  RecordedTransaction,
} from './store.js';

const first = async <T>(rows: Promise<Row[]>, map: (r: Row) => T): Promise<T | undefined> => {
  const r = (await rows)[0];
  return r === undefined ? undefined : map(r);
};

export class PostgresMatrixStore implements MatrixStore {
  readonly #db: PgDatabase;
  readonly #now: () => number;

  constructor(db: PgDatabase, now: () => number = Date.now) {
    this.#db = db;
    this.#now = now;
  }

  async #write(text: string, ...values: unknown[]): Promise<number> {
    return (await this.#db.exec(sql(text, ...values))).rowCount ?? 0;
  }

  // ---- transactions and inbound events ----------------------------------------------------------

  async recordTransaction(
    txnId: string,
    events: readonly NewInbound[],
    handOver?: (rows: InboundRow[]) => void,
  ): Promise<RecordedTransaction> {
    const t = this.#now();
    const seqs = new Map<string, number>();
    const recorded = await this.#db.transact(async (query) => {
      // Each event once, by its key (see sqlite-store.ts): the rows inserted (returned) are the new ones.
      if (events.length > 0) {
        const inserted = await query(
          sql(
            `INSERT INTO matrix_inbound (key, room_id, kind, payload, received_at)
             SELECT e.key, e.room_id, e.kind, e.payload, $5
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
               AS e(key, room_id, kind, payload, n)
             ORDER BY e.n
             ON CONFLICT (key) DO NOTHING
             RETURNING seq, key`,
            events.map((e) => e.key),
            events.map((e) => e.roomId),
            events.map((e) => e.kind),
            events.map((e) => JSON.stringify(e.payload)),
            t,
          ),
        );
        for (const r of inserted.rows) seqs.set(r.key as string, r.seq as number);
      }
      const txn = await query(
        sql(
          'INSERT INTO appservice_transactions (txn_id, completed_at) VALUES ($1, $2) ON CONFLICT DO NOTHING',
          txnId,
          t,
        ),
      );
      return { newTransaction: (txn.rowCount ?? 0) > 0, newEvents: seqs.size };
    });
    if (!handOver) return recorded;
    // Committed: handed over at once (a read of the store may find them first; the queue keeps one).
    const fresh: InboundRow[] = [];
    for (const e of events) {
      const seq = seqs.get(e.key);
      if (seq === undefined) continue;
      seqs.delete(e.key); // the same key twice in one transaction is one row
      fresh.push({ seq, key: e.key, roomId: e.roomId, kind: e.kind, payload: e.payload, attempts: 0 });
    }
    if (fresh.length > 0) handOver(fresh);
    return recorded;
  }

  async pendingInboundRooms(): Promise<string[]> {
    return (await this.#db.query(`SELECT DISTINCT room_id FROM matrix_inbound WHERE state = 'pending'`)).map(
      (r) => r.room_id as string,
    );
  }

  async pendingInboundOf(roomId: string, limit = 500): Promise<InboundRow[]> {
    return (
      await this.#db.query(
        `SELECT seq, key, room_id, kind, payload, attempts FROM matrix_inbound
         WHERE state = 'pending' AND room_id = $1 ORDER BY seq LIMIT $2`,
        [roomId, limit],
      )
    ).map(toInbound);
  }

  async markInboundDone(seqs: readonly number[]): Promise<void> {
    await this.#write(`UPDATE matrix_inbound SET state = 'done', payload = '{}' WHERE seq = ANY($1)`, [
      ...seqs,
    ]);
  }

  async markInboundAttempt(seq: number, error: string, giveUp: boolean): Promise<void> {
    await this.#write(
      `UPDATE matrix_inbound SET attempts = attempts + 1, error = $1,
         state = CASE WHEN $2::boolean THEN 'failed' ELSE state END
       WHERE seq = $3`,
      error,
      giveUp,
      seq,
    );
  }

  inboundState(key: string): Promise<InboundState | undefined> {
    return first(
      this.#db.query('SELECT seq, state, attempts, error FROM matrix_inbound WHERE key = $1', [key]),
      toInboundState,
    );
  }

  // ---- rooms --------------------------------------------------------------------------------------

  room(roomId: string): Promise<MatrixRoom | undefined> {
    return first(this.#db.query('SELECT * FROM matrix_rooms WHERE room_id = $1', [roomId]), toRoom);
  }

  portalOf(localUser: string, remoteJid: string): Promise<MatrixRoom | undefined> {
    return first(
      this.#db.query(
        `SELECT * FROM matrix_rooms WHERE kind = 'portal' AND local_user = $1 AND remote_jid = $2`,
        [localUser, remoteJid],
      ),
      toRoom,
    );
  }

  async portalsOf(localUser: string): Promise<MatrixRoom[]> {
    return (
      await this.#db.query(
        `SELECT * FROM matrix_rooms WHERE kind = 'portal' AND local_user = $1 ORDER BY created_at`,
        [localUser],
      )
    ).map(toRoom);
  }

  async portalPage(afterRoomId: string, limit: number): Promise<MatrixRoom[]> {
    return (
      await this.#db.query(
        `SELECT * FROM matrix_rooms WHERE kind = 'portal' AND room_id > $1 ORDER BY room_id LIMIT $2`,
        [afterRoomId, limit],
      )
    ).map(toRoom);
  }

  managementRoomOf(localUser: string): Promise<MatrixRoom | undefined> {
    return first(
      this.#db.query(`SELECT * FROM matrix_rooms WHERE kind = 'management' AND local_user = $1`, [localUser]),
      toRoom,
    );
  }

  putRoom(room: {
    roomId: string;
    kind: MatrixRoom['kind'];
    localUser: string;
    remoteJid?: string;
  }): Promise<void> {
    const replaced =
      room.kind === 'portal'
        ? sql(
            `DELETE FROM matrix_rooms WHERE kind = 'portal' AND local_user = $1 AND remote_jid = $2`,
            room.localUser,
            room.remoteJid ?? null,
          )
        : sql(`DELETE FROM matrix_rooms WHERE kind = 'management' AND local_user = $1`, room.localUser);
    return this.#db.commit([
      replaced,
      sql(
        `INSERT INTO matrix_rooms (room_id, kind, local_user, remote_jid, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (room_id) DO UPDATE SET kind = excluded.kind, local_user = excluded.local_user,
           remote_jid = excluded.remote_jid`,
        room.roomId,
        room.kind,
        room.localUser,
        room.remoteJid ?? null,
        this.#now(),
      ),
    ]);
  }

  async forgetRoom(roomId: string): Promise<void> {
    await this.#write('DELETE FROM matrix_rooms WHERE room_id = $1', roomId);
  }

  async markEncryptionTold(roomId: string): Promise<boolean> {
    return (
      (await this.#write(
        'UPDATE matrix_rooms SET encryption_told = 1 WHERE room_id = $1 AND encryption_told = 0',
        roomId,
      )) === 1
    );
  }

  // ---- ghosts -------------------------------------------------------------------------------------

  ghost(userId: string): Promise<Ghost | undefined> {
    return first(this.#db.query('SELECT * FROM matrix_ghosts WHERE user_id = $1', [userId]), toGhost);
  }

  async putGhost(userId: string, jid: string): Promise<void> {
    await this.#write(
      'INSERT INTO matrix_ghosts (user_id, jid) VALUES ($1, $2) ON CONFLICT (user_id) DO UPDATE SET jid = excluded.jid',
      userId,
      jid,
    );
  }

  async markGhostRegistered(userId: string, displayname: string): Promise<void> {
    await this.#write(
      'UPDATE matrix_ghosts SET registered = 1, displayname = $1 WHERE user_id = $2',
      displayname,
      userId,
    );
  }

  async setGhostDisplayname(userId: string, displayname: string): Promise<void> {
    await this.#write('UPDATE matrix_ghosts SET displayname = $1 WHERE user_id = $2', displayname, userId);
  }

  ghostAvatar(userId: string): Promise<GhostAvatar | undefined> {
    return first(
      this.#db.query('SELECT avatar_picture_id, avatar_url FROM matrix_ghosts WHERE user_id = $1', [userId]),
      toGhostAvatar,
    );
  }

  async setGhostAvatar(userId: string, avatar: GhostAvatar | undefined): Promise<void> {
    await this.#write(
      'UPDATE matrix_ghosts SET avatar_picture_id = $1, avatar_url = $2 WHERE user_id = $3',
      avatar?.pictureId ?? null,
      avatar?.url ?? null,
      userId,
    );
  }

  // ---- the local users' reactions -------------------------------------------------------------------

  async putReaction(roomId: string, eventId: string, target: string, emoji: string): Promise<void> {
    await this.#write(
      `INSERT INTO matrix_reactions (event_id, room_id, target, emoji, created_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT DO NOTHING`,
      eventId,
      roomId,
      target,
      emoji,
      this.#now(),
    );
  }

  reaction(eventId: string): Promise<{ target: string; emoji: string } | undefined> {
    return first(
      this.#db.query('SELECT target, emoji FROM matrix_reactions WHERE event_id = $1', [eventId]),
      toReaction,
    );
  }

  // ---- double puppeting ---------------------------------------------------------------------------

  async doublePuppet(userId: string): Promise<boolean> {
    return (
      (await this.#db.query('SELECT 1 FROM matrix_double_puppets WHERE user_id = $1', [userId])).length > 0
    );
  }

  async setDoublePuppet(userId: string, enabled: boolean): Promise<void> {
    if (enabled) {
      await this.#write(
        'INSERT INTO matrix_double_puppets (user_id, enabled_at) VALUES ($1, $2) ON CONFLICT DO NOTHING',
        userId,
        this.#now(),
      );
    } else {
      await this.#write('DELETE FROM matrix_double_puppets WHERE user_id = $1', userId);
    }
  }

  cryptoJournal(): CryptoJournal {
    return new PostgresCryptoJournal(this.#db);
  }
}
