/**
 * The core's repositories on PostgreSQL (postgres-database.ts): the same contract as
 * sqlite-store.ts, the same SQL in PostgreSQL's dialect. Reads go to the pool; every write goes
 * through the database's one ordered writer; an atomic unit is collected synchronously (its writes
 * and the Signal state's writes made in it) and sent as one transaction.
 */
import { PgDatabase, sql, type PgOpenOptions, type Row, type Sql } from './postgres-database.js';
import { asFenced } from './fencing.js';
import {
  queuedSkip,
  toGroup,
  toInbox,
  toMapping,
  toOutbox,
  toOwedReceipt,
  toPortal,
  toPuppet,
} from './rows.js';
import type {
  GroupRepository,
  InboxRepository,
  MessageMapping,
  MessageMapRepository,
  NewInboxEntry,
  NewOutboxEntry,
  NewPuppet,
  OutboxEntry,
  OutboxRepository,
  Portal,
  PortalRepository,
  PuppetRepository,
  Store,
  StoreWrites,
} from './repositories.js';

const bin = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
const EMPTY = Buffer.alloc(0);

const one = async <T>(rows: Promise<Row[]>, map: (r: Row) => T): Promise<T | undefined> => {
  const r = (await rows)[0];
  return r && map(r);
};

function puppetRepository(db: PgDatabase, now: () => number): PuppetRepository {
  return {
    async create(p: NewPuppet) {
      const t = now();
      const r = await db.exec(
        sql(
          `INSERT INTO puppets (local_id, network, account_id, device_id, registration_id, identity_public,
             identity_private, noise_public, noise_private, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *`,
          p.localId,
          p.network,
          p.accountId,
          p.deviceId,
          p.registrationId,
          bin(p.identityPublic),
          bin(p.identityPrivate),
          bin(p.noisePublic),
          bin(p.noisePrivate),
          t,
          t,
        ),
      );
      return toPuppet(r.rows[0] as Row);
    },
    byId: (id) => one(db.query('SELECT * FROM puppets WHERE id = $1', [id]), toPuppet),
    byLocalId: (localId) => one(db.query('SELECT * FROM puppets WHERE local_id = $1', [localId]), toPuppet),
    byAccountId: (accountId) =>
      one(db.query('SELECT * FROM puppets WHERE account_id = $1', [accountId]), toPuppet),
    list: async () => (await db.query('SELECT * FROM puppets ORDER BY id')).map(toPuppet),
    count: async () => (await db.queryOne('SELECT count(*) AS n FROM puppets'))!.n as number,
    async setState(id, state) {
      await db.exec(sql('UPDATE puppets SET state = $1, updated_at = $2 WHERE id = $3', state, now(), id));
    },
    async setGatewayStatic(id, key) {
      await db.exec(
        sql('UPDATE puppets SET gateway_static = $1, updated_at = $2 WHERE id = $3', bin(key), now(), id),
      );
    },
    async delete(id) {
      await db.exec(sql('DELETE FROM puppets WHERE id = $1', id));
    },
  };
}

function portalRepository(db: PgDatabase, now: () => number): PortalRepository {
  const byRemote = (puppetId: number, remoteJid: string) =>
    one(
      db.query('SELECT * FROM portals WHERE puppet_id = $1 AND remote_jid = $2', [puppetId, remoteJid]),
      toPortal,
    );
  return {
    async ensure(puppetId, remoteJid) {
      const known = await byRemote(puppetId, remoteJid);
      if (known) return known;
      await db.exec(
        sql(
          'INSERT INTO portals (puppet_id, remote_jid, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
          puppetId,
          remoteJid,
          now(),
        ),
      );
      return (await byRemote(puppetId, remoteJid)) as Portal;
    },
    byId: (id) => one(db.query('SELECT * FROM portals WHERE id = $1', [id]), toPortal),
    byRemote,
    byLocalChat: (puppetId, localChat) =>
      one(
        db.query('SELECT * FROM portals WHERE puppet_id = $1 AND local_chat = $2', [puppetId, localChat]),
        toPortal,
      ),
    async setLocalChat(id, localChat) {
      await db.exec(sql('UPDATE portals SET local_chat = $1 WHERE id = $2', localChat, id));
    },
    async setName(id, name) {
      await db.exec(sql('UPDATE portals SET name = $1 WHERE id = $2', name, id));
    },
    listForPuppet: async (puppetId) =>
      (await db.query('SELECT * FROM portals WHERE puppet_id = $1 ORDER BY id', [puppetId])).map(toPortal),
  };
}

function groupRepository(db: PgDatabase, now: () => number): GroupRepository {
  return {
    get: (puppetId, groupJid) =>
      one(
        db.query('SELECT * FROM groups WHERE puppet_id = $1 AND group_jid = $2', [puppetId, groupJid]),
        toGroup,
      ),
    async put(g) {
      await db.exec(
        sql(
          `INSERT INTO groups (puppet_id, group_jid, version, info, active, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (puppet_id, group_jid) DO UPDATE SET version = excluded.version, info = excluded.info,
             active = excluded.active, updated_at = excluded.updated_at`,
          g.puppetId,
          g.groupJid,
          g.version,
          g.info,
          g.active ? 1 : 0,
          now(),
        ),
      );
    },
    listForPuppet: async (puppetId, all = false) =>
      (
        await db.query(
          all
            ? 'SELECT * FROM groups WHERE puppet_id = $1 ORDER BY group_jid'
            : 'SELECT * FROM groups WHERE puppet_id = $1 AND active = 1 ORDER BY group_jid',
          [puppetId],
        )
      ).map(toGroup),
    keyHolders: async (puppetId, groupJid) =>
      new Set(
        (
          await db.query('SELECT device_jid FROM group_key_holders WHERE puppet_id = $1 AND group_jid = $2', [
            puppetId,
            groupJid,
          ])
        ).map((r) => r.device_jid as string),
      ),
    async addKeyHolders(puppetId, groupJid, devices) {
      if (devices.length === 0) return;
      // The whole list in one statement: one round trip, not one per device.
      await db.exec(
        sql(
          `INSERT INTO group_key_holders (puppet_id, group_jid, device_jid)
           SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING`,
          puppetId,
          groupJid,
          devices,
        ),
      );
    },
    async clearKeyHolders(puppetId, groupJid) {
      await db.exec(
        sql('DELETE FROM group_key_holders WHERE puppet_id = $1 AND group_jid = $2', puppetId, groupJid),
      );
    },
  };
}

/** Appends an outbox row at the end of its portal's order; a known id is left as it is. */
function insertOutbox(now: () => number, e: NewOutboxEntry): Sql {
  const t = now();
  return sql(
    `INSERT INTO outbox (id, puppet_id, portal_id, seq, kind, payload, local_id, created_at, updated_at)
     VALUES ($1, $2, $3, (SELECT coalesce(max(seq), 0) + 1 FROM outbox WHERE portal_id = $3), $4, $5, $6, $7, $8)
     ON CONFLICT (id) DO NOTHING`,
    e.id,
    e.puppetId,
    e.portalId,
    e.kind,
    bin(e.payload),
    e.localId ?? null,
    t,
    t,
  );
}

const ADVANCE_FROM = {
  sent: ['queued'],
  delivered: ['queued', 'sent'],
  read: ['queued', 'sent', 'delivered'],
} as const;

function outboxRepository(db: PgDatabase, now: () => number): OutboxRepository {
  const get = (id: string) => one(db.query('SELECT * FROM outbox WHERE id = $1', [id]), toOutbox);
  return {
    async enqueue(e) {
      await db.exec(insertOutbox(now, e));
      return (await get(e.id)) as OutboxEntry;
    },
    get,
    queued: async (puppetId, limit = 1000, after) => {
      const skip = queuedSkip(after, (i) => `$${i + 3}`);
      return (
        await db.query(
          `SELECT * FROM outbox WHERE puppet_id = $1 AND state = 'queued'${skip.sql} ORDER BY portal_id, seq LIMIT $2`,
          [puppetId, limit, ...skip.params],
        )
      ).map(toOutbox);
    },
    queuedIn: async (puppetId, portalId, afterSeq, limit = 1000) =>
      (
        await db.query(
          "SELECT * FROM outbox WHERE puppet_id = $1 AND portal_id = $2 AND state = 'queued' AND seq > $3 ORDER BY seq LIMIT $4",
          [puppetId, portalId, afterSeq, limit],
        )
      ).map(toOutbox),
    queuedBefore: async (puppetId, before, limit = 1000) =>
      (
        await db.query(
          "SELECT * FROM outbox WHERE puppet_id = $1 AND state = 'queued' AND created_at < $2 ORDER BY created_at LIMIT $3",
          [puppetId, before, limit],
        )
      ).map(toOutbox),
    async countQueued(puppetId) {
      const r =
        puppetId !== undefined
          ? await db.queryOne("SELECT count(*) AS n FROM outbox WHERE puppet_id = $1 AND state = 'queued'", [
              puppetId,
            ])
          : await db.queryOne("SELECT count(*) AS n FROM outbox WHERE state = 'queued'");
      return r!.n as number;
    },
    puppetsWithQueued: async () =>
      (
        await db.query(
          "SELECT DISTINCT puppet_id FROM outbox WHERE state = 'queued' UNION SELECT DISTINCT puppet_id FROM inbox WHERE receipt IS NOT NULL",
        )
      ).map((r) => r.puppet_id as number),
    async oldestQueuedAt() {
      const r = await db.queryOne("SELECT min(created_at) AS t FROM outbox WHERE state = 'queued'");
      return r?.t === null || r?.t === undefined ? undefined : Number(r.t);
    },
    async recordAttempt(id) {
      await db.exec(
        sql('UPDATE outbox SET attempts = attempts + 1, updated_at = $1 WHERE id = $2', now(), id),
      );
    },
    async advance(id, state) {
      const r = await db.exec(
        sql(
          `UPDATE outbox SET state = $1, payload = $2, updated_at = $3 WHERE id = $4 AND state = ANY($5)`,
          state,
          EMPTY,
          now(),
          id,
          ADVANCE_FROM[state],
        ),
      );
      return (r.rowCount ?? 0) > 0;
    },
    async advanceAll(moves) {
      const t = now();
      await db.commit(
        (['delivered', 'read'] as const)
          .map((state) => [state, moves.filter(([, s]) => s === state).map(([id]) => id)] as const)
          .filter(([, ids]) => ids.length > 0)
          .map(([state, ids]) =>
            sql(
              'UPDATE outbox SET state = $1, payload = $2, updated_at = $3 WHERE id = ANY($4) AND state = ANY($5)',
              state,
              EMPTY,
              t,
              ids,
              ADVANCE_FROM[state],
            ),
          ),
      );
    },
    async advanceAllSent(ids) {
      if (ids.length === 0) return;
      await db.exec(
        sql(
          "UPDATE outbox SET state = 'sent', payload = $1, updated_at = $2 WHERE id = ANY($3) AND state = 'queued'",
          EMPTY,
          now(),
          [...ids],
        ),
      );
    },
    async fail(id, reason) {
      await db.exec(
        sql(
          "UPDATE outbox SET state = 'failed', payload = $1, error = $2, updated_at = $3 WHERE id = $4 AND state = 'queued'",
          EMPTY,
          reason,
          now(),
          id,
        ),
      );
    },
  };
}

const recordInbox = (now: () => number, e: NewInboxEntry): Sql =>
  sql(
    `INSERT INTO inbox (puppet_id, sender, message_id, portal_id, payload, received_at)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
    e.puppetId,
    e.sender,
    e.messageId,
    e.portalId,
    bin(e.payload),
    now(),
  );

const markDelivered = (puppetId: number, sender: string, messageId: string, receipt?: string): Sql =>
  sql(
    "UPDATE inbox SET state = 'delivered', payload = $1, receipt = $2 WHERE puppet_id = $3 AND sender = $4 AND message_id = $5",
    EMPTY,
    receipt ?? null,
    puppetId,
    sender,
    messageId,
  );

function inboxRepository(db: PgDatabase, now: () => number): InboxRepository {
  return {
    record: async (e) => ((await db.exec(recordInbox(now, e))).rowCount ?? 0) > 0,
    has: async (puppetId, sender, messageId) =>
      (
        await db.query('SELECT 1 FROM inbox WHERE puppet_id = $1 AND sender = $2 AND message_id = $3', [
          puppetId,
          sender,
          messageId,
        ])
      ).length > 0,
    pending: async (puppetId, limit = 1000) =>
      (
        await db.query(
          "SELECT * FROM inbox WHERE puppet_id = $1 AND state = 'pending' ORDER BY seq LIMIT $2",
          [puppetId, limit],
        )
      ).map(toInbox),
    async markDelivered(puppetId, sender, messageId, receipt) {
      await db.exec(markDelivered(puppetId, sender, messageId, receipt));
    },
    receiptsOwed: async (puppetId, afterSeq, limit) =>
      (
        await db.query(
          'SELECT seq, message_id, receipt FROM inbox WHERE puppet_id = $1 AND receipt IS NOT NULL AND seq > $2 ORDER BY seq LIMIT $3',
          [puppetId, afterSeq, limit],
        )
      ).map(toOwedReceipt),
    async receiptsSent(seqs) {
      if (seqs.length > 0) await db.exec(sql('UPDATE inbox SET receipt = NULL WHERE seq = ANY($1)', seqs));
    },
    countPending: async (puppetId) =>
      (puppetId !== undefined
        ? await db.queryOne("SELECT count(*) AS n FROM inbox WHERE puppet_id = $1 AND state = 'pending'", [
            puppetId,
          ])
        : await db.queryOne("SELECT count(*) AS n FROM inbox WHERE state = 'pending'"))!.n as number,
    puppetsWithPending: async () =>
      (await db.query("SELECT DISTINCT puppet_id FROM inbox WHERE state = 'pending'")).map(
        (r) => r.puppet_id as number,
      ),
  };
}

const putMessage = (now: () => number, m: MessageMapping): Sql =>
  sql(
    `INSERT INTO message_map (portal_id, remote_id, local_id, sender, created_at) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT DO NOTHING`,
    m.portalId,
    m.remoteId,
    m.localId,
    m.sender,
    now(),
  );

function messageMapRepository(db: PgDatabase, now: () => number): MessageMapRepository {
  return {
    async put(m) {
      await db.exec(putMessage(now, m));
    },
    byRemote: (portalId, remoteId) =>
      one(
        db.query('SELECT * FROM message_map WHERE portal_id = $1 AND remote_id = $2', [portalId, remoteId]),
        toMapping,
      ),
    byLocal: (portalId, localId) =>
      one(
        db.query('SELECT * FROM message_map WHERE portal_id = $1 AND local_id = $2', [portalId, localId]),
        toMapping,
      ),
    unreadUpTo: async (portalId, localId, reader, limit) =>
      // message_map_order: (portal_id, seq), read from the portal's mark to the message read.
      (
        await db.query(
          `SELECT m.* FROM message_map m JOIN portals p ON p.id = m.portal_id
            WHERE p.id = $1 AND m.seq > p.read_up_to
              AND m.seq <= (SELECT seq FROM message_map WHERE portal_id = $1 AND local_id = $2)
              AND m.sender <> $3
            ORDER BY m.seq LIMIT $4`,
          [portalId, localId, reader, limit],
        )
      ).map(toMapping),
  };
}

const markRead = (portalId: number, localId: string): Sql =>
  sql(
    `UPDATE portals SET read_up_to = greatest(read_up_to,
       (SELECT seq FROM message_map WHERE portal_id = $1 AND local_id = $2))
     WHERE id = $1`,
    portalId,
    localId,
  );

/** The PostgreSQL store, with its database for the Signal state (`PostgresSignalBackend`). */
export interface PostgresStore extends Store {
  readonly pg: PgDatabase;
}

/** Connects, applies pending migrations, and offers the core's repositories. */
export async function openPostgresStore(
  options: PgOpenOptions & { now?: () => number },
): Promise<PostgresStore> {
  const db = await PgDatabase.open(options);
  const now = options.now ?? Date.now;
  const writes: StoreWrites = {
    enqueueOutbox: (e) => {
      db.write(insertOutbox(now, e));
      return undefined;
    },
    putMessage: (m) => db.write(putMessage(now, m)),
    markRead: (portalId, localId) => db.write(markRead(portalId, localId)),
    recordInbox: (e) => {
      db.write(recordInbox(now, e));
      return undefined;
    },
    markInboxDelivered: (puppetId, sender, messageId, receipt) =>
      db.write(markDelivered(puppetId, sender, messageId, receipt)),
    // One statement in the unit's transaction (migration 009): it raises unless the fence is current.
    requireLease: (name, fence) => db.write(sql('SELECT interop_require_lease($1, $2)', name, fence)),
  };
  return {
    pg: db,
    puppets: puppetRepository(db, now),
    portals: portalRepository(db, now),
    outbox: outboxRepository(db, now),
    inbox: inboxRepository(db, now),
    messages: messageMapRepository(db, now),
    groups: groupRepository(db, now),
    atomically: (work) => {
      let statements: Sql[];
      try {
        // Synchronous: the Signal state's writes made in `work` (on this database) join the unit.
        statements = db.collect(() => work(writes));
      } catch (err) {
        return Promise.reject(err);
      }
      return db.commit(statements).catch((err: unknown) => {
        throw asFenced(err) ?? err;
      });
    },
    schemaVersion: () => db.schemaVersion(),
    // Nothing lingers in files of ours: PostgreSQL's own VACUUM reclaims what was cleared.
    scrub: () => Promise.resolve(),
    close: () => db.close(),
  };
}
