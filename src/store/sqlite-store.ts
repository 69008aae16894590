/**
 * The core's repositories on SQLite (better-sqlite3). Each repository is written synchronously,
 * as better-sqlite3 is, and offered through the asynchronous contract of repositories.ts by
 * `promised`; an atomic unit runs synchronously inside one transaction, so nothing else can
 * interleave with it.
 */
import { checkpoint, openDatabase, schemaVersion, type Db, type OpenOptions } from './database.js';
import { keepRow, preparedStatements as statements } from './sql.js';
import { fencedError } from './fencing.js';
import type {
  GroupRepository,
  InboxRepository,
  MessageMapRepository,
  NewInboxEntry,
  NewOutboxEntry,
  NewPuppet,
  OutboxEntry,
  OutboxRepository,
  Portal,
  PortalRepository,
  Puppet,
  PuppetRepository,
  Store,
  StoreWrites,
} from './repositories.js';

/** A repository's methods as better-sqlite3 runs them: the same signatures, without the Promise. */
type Sync<R> = {
  [K in keyof R]: R[K] extends (...args: infer A) => Promise<infer T> ? (...args: A) => T : never;
};

/** Offers a synchronous repository through the asynchronous contract (a throw becomes a rejection). */
function promised<R>(sync: Sync<R>): R {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(sync as Record<string, (...args: unknown[]) => unknown>)) {
    out[name] = (...args: unknown[]) => {
      try {
        return Promise.resolve(fn(...args));
      } catch (err) {
        return Promise.reject(err);
      }
    };
  }
  return out as R;
}

import {
  queuedSkip,
  toGroup,
  toInbox,
  toMapping,
  toOutbox,
  toOwedReceipt,
  toPortal,
  toPuppet,
  type Row,
} from './rows.js';

/**
 * Puppets by local id are asked for on every message a local user sends (is this user enlisted?),
 * and change rarely: they are kept in memory, frozen, and forgotten on any change of the table
 * (this process is its only writer: the store's process lock).
 */
function puppetRepository(
  q: ReturnType<typeof statements>,
  now: () => number,
  deleted: () => void,
): Sync<PuppetRepository> {
  const byId = (id: number) => {
    const r = q('SELECT * FROM puppets WHERE id = ?').get(id) as Row | undefined;
    return r && toPuppet(r);
  };
  const known = new Map<string, Puppet>();
  return {
    create(p: NewPuppet) {
      known.clear();
      const t = now();
      const info = q(
        `INSERT INTO puppets (local_id, network, account_id, device_id, registration_id, identity_public,
           identity_private, noise_public, noise_private, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        p.localId,
        p.network,
        p.accountId,
        p.deviceId,
        p.registrationId,
        Buffer.from(p.identityPublic),
        Buffer.from(p.identityPrivate),
        Buffer.from(p.noisePublic),
        Buffer.from(p.noisePrivate),
        t,
        t,
      );
      return byId(Number(info.lastInsertRowid)) as Puppet;
    },
    byId,
    byLocalId(localId) {
      const cached = known.get(localId);
      if (cached) return cached;
      const r = q('SELECT * FROM puppets WHERE local_id = ?').get(localId) as Row | undefined;
      return r && keepRow(known, localId, toPuppet(r));
    },
    byAccountId(accountId) {
      const r = q('SELECT * FROM puppets WHERE account_id = ?').get(accountId) as Row | undefined;
      return r && toPuppet(r);
    },
    list() {
      return (q('SELECT * FROM puppets ORDER BY id').all() as Row[]).map(toPuppet);
    },
    count() {
      return (q('SELECT count(*) AS n FROM puppets').get() as { n: number }).n;
    },
    setState(id, state) {
      known.clear();
      q('UPDATE puppets SET state = ?, updated_at = ? WHERE id = ?').run(state, now(), id);
    },
    setGatewayStatic(id, key) {
      known.clear();
      q('UPDATE puppets SET gateway_static = ?, updated_at = ? WHERE id = ?').run(
        Buffer.from(key),
        now(),
        id,
      );
    },
    delete(id) {
      known.clear();
      deleted();
      q('DELETE FROM puppets WHERE id = ?').run(id);
    },
  };
}

/**
 * Portals by puppet and contact are asked for on every message, both ways, and change rarely: kept
 * in memory like the puppets, frozen, forgotten when one changes or a puppet (with its portals) goes.
 */
function portalRepository(
  q: ReturnType<typeof statements>,
  now: () => number,
  known: Map<string, Portal>,
): Sync<PortalRepository> {
  const byRemote = (puppetId: number, remoteJid: string) => {
    const key = `${puppetId}\n${remoteJid}`;
    const cached = known.get(key);
    if (cached) return cached;
    const r = q('SELECT * FROM portals WHERE puppet_id = ? AND remote_jid = ?').get(puppetId, remoteJid) as
      Row | undefined;
    return r && keepRow(known, key, toPortal(r));
  };
  return {
    ensure(puppetId, remoteJid) {
      // Read first: nearly every message is in a portal that exists, and a read is no write
      // transaction (the unit that follows is the message's one write transaction).
      const known = byRemote(puppetId, remoteJid);
      if (known) return known;
      q(
        'INSERT INTO portals (puppet_id, remote_jid, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
      ).run(puppetId, remoteJid, now());
      return byRemote(puppetId, remoteJid) as Portal;
    },
    byId(id) {
      const r = q('SELECT * FROM portals WHERE id = ?').get(id) as Row | undefined;
      return r && toPortal(r);
    },
    byRemote,
    byLocalChat(puppetId, localChat) {
      const r = q('SELECT * FROM portals WHERE puppet_id = ? AND local_chat = ?').get(puppetId, localChat) as
        Row | undefined;
      return r && toPortal(r);
    },
    setLocalChat(id, localChat) {
      known.clear();
      q('UPDATE portals SET local_chat = ? WHERE id = ?').run(localChat, id);
    },
    setName(id, name) {
      known.clear();
      q('UPDATE portals SET name = ? WHERE id = ?').run(name, id);
    },
    listForPuppet(puppetId) {
      return (q('SELECT * FROM portals WHERE puppet_id = ? ORDER BY id').all(puppetId) as Row[]).map(
        toPortal,
      );
    },
  };
}

function groupRepository(db: Db, q: ReturnType<typeof statements>, now: () => number): Sync<GroupRepository> {
  const holders = (puppetId: number, groupJid: string, devices: readonly string[]) => {
    const add = q(
      'INSERT INTO group_key_holders (puppet_id, group_jid, device_jid) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
    );
    for (const device of devices) add.run(puppetId, groupJid, device);
  };
  // The whole list in one transaction: one commit, not one per device.
  const addHolders = db.transaction(holders);
  return {
    get(puppetId, groupJid) {
      const r = q('SELECT * FROM groups WHERE puppet_id = ? AND group_jid = ?').get(puppetId, groupJid) as
        Row | undefined;
      return r && toGroup(r);
    },
    put(g) {
      q(
        `INSERT INTO groups (puppet_id, group_jid, version, info, active, updated_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (puppet_id, group_jid) DO UPDATE SET version = excluded.version, info = excluded.info,
           active = excluded.active, updated_at = excluded.updated_at`,
      ).run(g.puppetId, g.groupJid, g.version, g.info, g.active ? 1 : 0, now());
    },
    listForPuppet(puppetId, all = false) {
      const rows = all
        ? q('SELECT * FROM groups WHERE puppet_id = ? ORDER BY group_jid').all(puppetId)
        : q('SELECT * FROM groups WHERE puppet_id = ? AND active = 1 ORDER BY group_jid').all(puppetId);
      return (rows as Row[]).map(toGroup);
    },
    keyHolders(puppetId, groupJid) {
      return new Set(
        q('SELECT device_jid FROM group_key_holders WHERE puppet_id = ? AND group_jid = ?')
          .pluck()
          .all(puppetId, groupJid) as string[],
      );
    },
    addKeyHolders(puppetId, groupJid, devices) {
      if (devices.length > 0) addHolders(puppetId, groupJid, devices);
    },
    clearKeyHolders(puppetId, groupJid) {
      q('DELETE FROM group_key_holders WHERE puppet_id = ? AND group_jid = ?').run(puppetId, groupJid);
    },
  };
}

/** Appends an outbox row at the end of its portal's order; a known id is left as it is. */
function insertOutbox(
  q: ReturnType<typeof statements>,
  now: () => number,
  e: NewOutboxEntry,
): OutboxEntry | undefined {
  const t = now();
  const seq = q(
    `INSERT INTO outbox (id, puppet_id, portal_id, seq, kind, payload, local_id, created_at, updated_at)
     VALUES (?, ?, ?, (SELECT coalesce(max(seq), 0) + 1 FROM outbox WHERE portal_id = ?), ?, ?, ?, ?, ?)
     ON CONFLICT (id) DO NOTHING RETURNING seq`,
  )
    .pluck()
    .get(
      e.id,
      e.puppetId,
      e.portalId,
      e.portalId,
      e.kind,
      Buffer.from(e.payload),
      e.localId ?? null,
      t,
      t,
    ) as number | undefined;
  // The row as written, made here rather than read back (`RETURNING *` copied the payload again).
  return seq === undefined
    ? undefined
    : {
        id: e.id,
        puppetId: e.puppetId,
        portalId: e.portalId,
        seq,
        kind: e.kind,
        payload: e.payload,
        localId: e.localId ?? null,
        state: 'queued',
        attempts: 0,
        error: null,
        createdAt: t,
        updatedAt: t,
      };
}

function outboxRepository(
  db: Db,
  q: ReturnType<typeof statements>,
  now: () => number,
): Sync<OutboxRepository> {
  const get = (id: string) => {
    const r = q('SELECT * FROM outbox WHERE id = ?').get(id) as Row | undefined;
    return r && toOutbox(r);
  };
  const advance = (id: string, state: 'sent' | 'delivered' | 'read'): boolean => {
    const from = {
      sent: "('queued')",
      delivered: "('queued', 'sent')",
      read: "('queued', 'sent', 'delivered')",
    }[state];
    return (
      q(`UPDATE outbox SET state = ?, payload = X'', updated_at = ? WHERE id = ? AND state IN ${from}`).run(
        state,
        now(),
        id,
      ).changes > 0
    );
  };
  const allSent = db.transaction((ids: readonly string[]) => {
    const update = q(
      "UPDATE outbox SET state = 'sent', payload = X'', updated_at = ? WHERE id = ? AND state = 'queued'",
    );
    const t = now();
    for (const id of ids) update.run(t, id);
  });
  const allMoved = db.transaction((moves: readonly (readonly [string, 'delivered' | 'read'])[]) => {
    for (const [id, state] of moves) advance(id, state);
  });
  return {
    enqueue(e: NewOutboxEntry) {
      return insertOutbox(q, now, e) ?? (get(e.id) as OutboxEntry);
    },
    get,
    queued(puppetId, limit = 1000, after) {
      const skip = queuedSkip(after, () => '?');
      const rows = q(
        `SELECT * FROM outbox WHERE puppet_id = ? AND state = 'queued'${skip.sql} ORDER BY portal_id, seq LIMIT ?`,
      ).all(puppetId, ...skip.params, limit) as Row[];
      return rows.map(toOutbox);
    },
    queuedIn(puppetId, portalId, afterSeq, limit = 1000) {
      const rows = q(
        "SELECT * FROM outbox WHERE puppet_id = ? AND portal_id = ? AND state = 'queued' AND seq > ? ORDER BY seq LIMIT ?",
      ).all(puppetId, portalId, afterSeq, limit) as Row[];
      return rows.map(toOutbox);
    },
    queuedBefore(puppetId, before, limit = 1000) {
      const rows = q(
        "SELECT * FROM outbox WHERE puppet_id = ? AND state = 'queued' AND created_at < ? ORDER BY created_at LIMIT ?",
      ).all(puppetId, before, limit) as Row[];
      return rows.map(toOutbox);
    },
    countQueued(puppetId) {
      if (puppetId !== undefined) {
        return (
          q("SELECT count(*) AS n FROM outbox WHERE puppet_id = ? AND state = 'queued'").get(puppetId) as {
            n: number;
          }
        ).n;
      }
      return (q("SELECT count(*) AS n FROM outbox WHERE state = 'queued'").get() as { n: number }).n;
    },
    puppetsWithQueued() {
      return (
        q(
          "SELECT DISTINCT puppet_id FROM outbox WHERE state = 'queued' UNION SELECT DISTINCT puppet_id FROM inbox WHERE receipt IS NOT NULL",
        ).all() as Row[]
      ).map((r) => r.puppet_id as number);
    },
    oldestQueuedAt() {
      const r = q("SELECT min(created_at) AS t FROM outbox WHERE state = 'queued'").get() as {
        t: number | null;
      };
      return r.t ?? undefined;
    },
    recordAttempt(id) {
      q('UPDATE outbox SET attempts = attempts + 1, updated_at = ? WHERE id = ?').run(now(), id);
    },
    advance,
    advanceAllSent(ids) {
      allSent(ids);
    },
    advanceAll(moves) {
      allMoved(moves);
    },
    fail(id, reason) {
      q(
        "UPDATE outbox SET state = 'failed', payload = X'', error = ?, updated_at = ? WHERE id = ? AND state = 'queued'",
      ).run(reason, now(), id);
    },
  };
}

/** Records an inbox row (a known one is kept): the new row's seq, or undefined when it was known. */
function recordInboxRow(q: ReturnType<typeof statements>, now: () => number, e: NewInboxEntry) {
  const info = q(
    `INSERT INTO inbox (puppet_id, sender, message_id, portal_id, payload, received_at)
     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
  ).run(e.puppetId, e.sender, e.messageId, e.portalId, Buffer.from(e.payload), now());
  return info.changes > 0 ? Number(info.lastInsertRowid) : undefined;
}

function inboxRepository(db: Db, q: ReturnType<typeof statements>, now: () => number): Sync<InboxRepository> {
  return {
    record(e: NewInboxEntry) {
      return recordInboxRow(q, now, e) !== undefined;
    },
    has(puppetId, sender, messageId) {
      return (
        q('SELECT 1 FROM inbox WHERE puppet_id = ? AND sender = ? AND message_id = ?').get(
          puppetId,
          sender,
          messageId,
        ) !== undefined
      );
    },
    pending(puppetId, limit = 1000) {
      const rows = q(
        "SELECT * FROM inbox WHERE puppet_id = ? AND state = 'pending' ORDER BY seq LIMIT ?",
      ).all(puppetId, limit) as Row[];
      return rows.map(toInbox);
    },
    markDelivered(puppetId, sender, messageId, receipt) {
      q(
        "UPDATE inbox SET state = 'delivered', payload = X'', receipt = ? WHERE puppet_id = ? AND sender = ? AND message_id = ?",
      ).run(receipt ?? null, puppetId, sender, messageId);
    },
    receiptsOwed(puppetId, afterSeq, limit) {
      return (
        q(
          'SELECT seq, message_id, receipt FROM inbox WHERE puppet_id = ? AND receipt IS NOT NULL AND seq > ? ORDER BY seq LIMIT ?',
        ).all(puppetId, afterSeq, limit) as Row[]
      ).map(toOwedReceipt);
    },
    receiptsSent(seqs) {
      const clear = q('UPDATE inbox SET receipt = NULL WHERE seq = ?');
      db.transaction(() => seqs.forEach((seq) => clear.run(seq)))();
    },
    countPending(puppetId) {
      if (puppetId !== undefined) {
        return (
          q("SELECT count(*) AS n FROM inbox WHERE puppet_id = ? AND state = 'pending'").get(puppetId) as {
            n: number;
          }
        ).n;
      }
      return (q("SELECT count(*) AS n FROM inbox WHERE state = 'pending'").get() as { n: number }).n;
    },
    puppetsWithPending() {
      return (q("SELECT DISTINCT puppet_id FROM inbox WHERE state = 'pending'").all() as Row[]).map(
        (r) => r.puppet_id as number,
      );
    },
  };
}

function messageMapRepository(
  q: ReturnType<typeof statements>,
  now: () => number,
): Sync<MessageMapRepository> {
  return {
    put(m) {
      q(
        `INSERT INTO message_map (portal_id, remote_id, local_id, sender, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT DO NOTHING`,
      ).run(m.portalId, m.remoteId, m.localId, m.sender, now());
    },
    byRemote(portalId, remoteId) {
      const r = q('SELECT * FROM message_map WHERE portal_id = ? AND remote_id = ?').get(
        portalId,
        remoteId,
      ) as Row | undefined;
      return r && toMapping(r);
    },
    byLocal(portalId, localId) {
      const r = q('SELECT * FROM message_map WHERE portal_id = ? AND local_id = ?').get(portalId, localId) as
        Row | undefined;
      return r && toMapping(r);
    },
    unreadUpTo(portalId, localId, reader, limit) {
      // message_map_order: (portal_id, rowid), read from the portal's mark to the message read.
      const rows = q(
        `SELECT m.* FROM message_map m, portals p
          WHERE p.id = ? AND m.portal_id = p.id AND m.rowid > p.read_up_to
            AND m.rowid <= (SELECT rowid FROM message_map WHERE portal_id = p.id AND local_id = ?)
            AND m.sender <> ?
          ORDER BY m.rowid LIMIT ?`,
      ).all(portalId, localId, reader, limit) as Row[];
      return rows.map(toMapping);
    },
  };
}

function markRead(q: ReturnType<typeof statements>, portalId: number, localId: string): void {
  q(
    `UPDATE portals SET read_up_to = max(read_up_to,
       coalesce((SELECT rowid FROM message_map WHERE portal_id = ? AND local_id = ?), 0))
     WHERE id = ?`,
  ).run(portalId, localId, portalId);
}

/**
 * The SQLite store, with its database handle for the layers that keep their own tables in the same
 * file (the Signal state, each adapter's tables).
 */
export interface SqliteStore extends Store {
  readonly db: Db;
}

/** The SQLite-backed store: one file, one process. */
export function openSqliteStore(
  file: string,
  options: OpenOptions & { now?: () => number } = {},
): SqliteStore {
  const db = openDatabase(file, options);
  const q = statements(db);
  const now = options.now ?? Date.now;
  // Portals kept in memory, forgotten with a puppet too (its portals go with it).
  const knownPortals = new Map<string, Portal>();
  const puppets = puppetRepository(q, now, () => knownPortals.clear());
  const portals = portalRepository(q, now, knownPortals);
  const outbox = outboxRepository(db, q, now);
  const inbox = inboxRepository(db, q, now);
  const messages = messageMapRepository(q, now);
  const groups = groupRepository(db, q, now);
  const writes: StoreWrites = {
    enqueueOutbox: (e) => insertOutbox(q, now, e),
    putMessage: (m) => messages.put(m),
    markRead: (portalId, localId) => markRead(q, portalId, localId),
    recordInbox: (e) => recordInboxRow(q, now, e),
    markInboxDelivered: (puppetId, sender, messageId, receipt) =>
      inbox.markDelivered(puppetId, sender, messageId, receipt),
    requireLease: (name, fence) => {
      // One process per SQLite database (the lock file): the table stays empty in practice; the
      // check is the same as PostgreSQL's all the same.
      const current = db.prepare('SELECT fence FROM leases WHERE name = ?').pluck().get(name);
      if (current !== fence) throw fencedError(name, current as number | undefined, fence);
    },
  };
  // Synchronous inside one transaction: the work runs before this returns, so Signal writes made
  // in it (the same database) join the transaction, and nothing else can run in between.
  const unit = db.transaction((work: (w: StoreWrites) => void) => work(writes));
  return {
    db,
    puppets: promised(puppets),
    portals: promised(portals),
    outbox: promised(outbox),
    inbox: promised(inbox),
    messages: promised(messages),
    groups: promised(groups),
    atomically: (work) => {
      try {
        unit(work);
        return Promise.resolve();
      } catch (err) {
        return Promise.reject(err);
      }
    },
    schemaVersion: () => Promise.resolve(schemaVersion(db)),
    scrub: () => {
      try {
        checkpoint(db);
        return Promise.resolve();
      } catch (err) {
        return Promise.reject(err);
      }
    },
    close: () => {
      if (db.open) {
        // The last connection's close checkpoints and removes the WAL too; done first explicitly
        // so a close that cannot remove it (another reader) still leaves no old content in it.
        try {
          checkpoint(db);
        } catch {
          // busy: the close below does what it can
        }
        db.close();
      }
      return Promise.resolve();
    },
  };
}
