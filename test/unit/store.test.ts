import Database from 'better-sqlite3';
import { chmodSync, statSync } from 'node:fs';
import path from 'node:path';
import { mergeMigrations, openDatabase, readMigrations } from '../../src/store/database.js';
import { bridgeMigrations } from '../../app/migrations.js';
import type { NewPuppet, Store } from '../../src/store/repositories.js';
import { LiveSessionRecord } from '../../src/signal/record.js';
import { StoreError } from '../../src/errors.js';
import { storeBackends } from '../support/store-backends.js';
import { tempDir } from '../support/tmp.js';

/** A queued text entry with a one-byte payload (its content does not matter here). */
const textEntry = (store: Store, puppetId: number, portalId: number, id: string) =>
  store.outbox.enqueue({ id, puppetId, portalId, kind: 'text', payload: new Uint8Array([1]) });

const puppet = (n: number): NewPuppet => ({
  localId: `@user${n}:example.org`,
  network: 'matrix',
  accountId: `acct-${n}`,
  deviceId: 1,
  registrationId: 1000 + n,
  identityPublic: new Uint8Array(33).fill(n),
  identityPrivate: new Uint8Array(32).fill(n),
  noisePublic: new Uint8Array(32).fill(n + 1),
  noisePrivate: new Uint8Array(32).fill(n + 2),
});

describe('the SQLite database (files, WAL, migrations)', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  it('creates the database from empty with every migration applied, WAL and foreign keys on, mode 0600', () => {
    const file = path.join(tmp.dir, 'nested', 'bridge.db');
    const db = openDatabase(file);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    const versions = db.prepare('SELECT version FROM schema_version ORDER BY version').pluck().all();
    expect(versions).toEqual(readMigrations().map((m) => m.version));
    db.close();
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
  });

  it("merges every owner's migrations into one sequence and refuses a gap or a duplicate", () => {
    const all = bridgeMigrations();
    expect(all.map((m) => m.version)).toEqual(all.map((_, i) => i + 1));
    expect(all.map((m) => m.name)).toEqual(expect.arrayContaining(['initial', 'matrix', 'xmpp']));
    const core = readMigrations();
    const extra = { version: all.length + 2, name: 'gap', sql: '' };
    expect(() => mergeMigrations(all, [extra])).toThrow(/migration \d+_gap out of sequence/);
    expect(() => mergeMigrations(core, core.slice(-1))).toThrow(StoreError);
    const db = openDatabase(path.join(tmp.dir, 'all.db'), { migrations: all });
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all();
    expect(tables).toEqual(expect.arrayContaining(['puppets', 'outbox', 'matrix_inbound', 'xmpp_contacts']));
    db.close();
  });

  it('narrows a restored database file that others could read', () => {
    const file = path.join(tmp.dir, 'bridge.db');
    openDatabase(file).close();
    chmodSync(file, 0o644);
    openDatabase(file).close();
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('applies only the pending migrations when reopened', () => {
    const file = path.join(tmp.dir, 'bridge.db');
    const [first, ...rest] = readMigrations();
    openDatabase(file, { migrations: [first!] }).close();
    const db = openDatabase(file, {
      migrations: [
        first!,
        ...rest,
        { version: rest.at(-1)!.version + 1, name: 'extra', sql: 'CREATE TABLE extra (x)' },
      ],
    });
    expect(db.prepare('SELECT count(*) FROM schema_version').pluck().get()).toBe(rest.length + 2);
    db.close();
  });

  it('refuses a database written by a newer version, saying what to do', () => {
    const file = path.join(tmp.dir, 'bridge.db');
    openDatabase(file).close();
    const raw = new Database(file);
    raw.prepare('INSERT INTO schema_version (version, name, applied_at) VALUES (99, ?, 0)').run('future');
    raw.close();
    expect(() => openDatabase(file)).toThrow(StoreError);
    expect(() => openDatabase(file)).toThrow(
      /written by a newer interop-bridge \(schema version 99; this version knows up to \d+\): upgrade interop-bridge/,
    );
  });
});

describe.each(storeBackends())('the store contract on $name', (backend) => {
  beforeAll(() => backend.setUp());
  afterAll(() => backend.tearDown());
  beforeEach(() => backend.fresh());
  afterEach(() => backend.closeAll());

  it("applies the core's migrations, numbered and named as SQLite's", async () => {
    const store = await backend.open();
    const sqlite = readMigrations().map((m) => [m.version, m.name]);
    expect(backend.migrations().map((m) => [m.version, m.name])).toEqual(sqlite);
    expect(await store.schemaVersion()).toBe(sqlite.at(-1)![0]);
    await store.close();
    expect(await (await backend.open()).schemaVersion()).toBe(sqlite.at(-1)![0]);
  });

  it('commits the Signal writes made inside a unit with it, and drops them with a failed one', async () => {
    const store = await backend.open();
    const p = await store.puppets.create(puppet(1));
    const signal = backend.signal(store, p.id);
    await signal.prepare('491');
    const inbox = (messageId: string) => ({
      puppetId: p.id,
      sender: '491@wa.interop',
      messageId,
      portalId: null,
      payload: new Uint8Array([1]),
    });
    await expect(
      store.atomically((w) => {
        signal.saveSession('491.1', new LiveSessionRecord());
        w.recordInbox(inbox('X1'));
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    await store.atomically((w) => {
      signal.saveSession('491.2', new LiveSessionRecord());
      w.recordInbox(inbox('X2'));
    });
    await signal.flush();
    const fresh = backend.signal(store, p.id);
    await fresh.prepare('491');
    expect(fresh.sessionAddresses('491')).toEqual(['491.2']);
    expect(await store.inbox.has(p.id, '491@wa.interop', 'X1')).toBe(false);
    expect(await store.inbox.has(p.id, '491@wa.interop', 'X2')).toBe(true);
  });

  it('keeps puppets and removes everything a puppet owns when it opts out', async () => {
    const s = await backend.open();
    const p = await s.puppets.create(puppet(1));
    expect(await s.puppets.byLocalId('@user1:example.org')).toMatchObject({
      accountId: 'acct-1',
      state: 'enlisting',
    });
    const portal = await s.portals.ensure(p.id, '4915112345678@wa.interop');
    expect((await s.portals.ensure(p.id, '4915112345678@wa.interop')).id).toBe(portal.id);
    const signal = backend.signal(s, p.id);
    await signal.prepare('4915112345678');
    signal.saveSession('4915112345678.1', new LiveSessionRecord());
    await signal.flush();
    await s.outbox.enqueue({
      id: 'm1',
      puppetId: p.id,
      portalId: portal.id,
      kind: 'text',
      payload: new Uint8Array([9]),
    });

    await s.puppets.delete(p.id);
    expect(await s.portals.byId(portal.id)).toBeUndefined();
    expect(await s.portals.byRemote(p.id, '4915112345678@wa.interop')).toBeUndefined();
    const after = backend.signal(s, p.id);
    await after.prepare('4915112345678');
    expect(after.loadSession('4915112345678.1')).toBeUndefined();
    expect(await s.outbox.get('m1')).toBeUndefined();
  });

  it('reads a portal by its contact as it is now, after each change of its chat or name', async () => {
    const s = await backend.open();
    const p = await s.puppets.create(puppet(1));
    const portal = await s.portals.ensure(p.id, 'a@wa.interop');
    expect(await s.portals.byRemote(p.id, 'a@wa.interop')).toMatchObject({ localChat: null, name: null });
    await s.portals.setLocalChat(portal.id, '!room:example.org');
    expect((await s.portals.ensure(p.id, 'a@wa.interop')).localChat).toBe('!room:example.org');
    await s.portals.setName(portal.id, 'Anna');
    expect((await s.portals.byRemote(p.id, 'a@wa.interop'))?.name).toBe('Anna');
    expect(await s.portals.byRemote(p.id, 'b@wa.interop')).toBeUndefined();
    expect((await s.portals.ensure(p.id, 'b@wa.interop')).id).not.toBe(portal.id);
  });

  it('reads a puppet by its local user as it is now, after each change of its state or keys', async () => {
    const s = await backend.open();
    const p = await s.puppets.create(puppet(1));
    expect((await s.puppets.byLocalId('@user1:example.org'))?.state).toBe('enlisting');
    await s.puppets.setState(p.id, 'enlisted');
    expect((await s.puppets.byLocalId('@user1:example.org'))?.state).toBe('enlisted');
    expect((await s.puppets.byLocalId('@user1:example.org'))?.gatewayStatic).toBeNull();
    await s.puppets.setGatewayStatic(p.id, new Uint8Array(32).fill(7));
    expect((await s.puppets.byLocalId('@user1:example.org'))?.gatewayStatic).toEqual(
      new Uint8Array(32).fill(7),
    );
    await s.puppets.delete(p.id);
    expect(await s.puppets.byLocalId('@user1:example.org')).toBeUndefined();
    const again = await s.puppets.create(puppet(1));
    expect((await s.puppets.byLocalId('@user1:example.org'))?.id).toBe(again.id);
  });

  it('orders the outbox per portal, deduplicates by message id and survives a reopen', async () => {
    let store = await backend.open();
    const p = await store.puppets.create(puppet(1));
    const a = await store.portals.ensure(p.id, 'a@wa.interop');
    const b = await store.portals.ensure(p.id, 'b@wa.interop');
    const put = (id: string, portalId: number) =>
      store.outbox.enqueue({
        id,
        puppetId: p.id,
        portalId,
        kind: 'text',
        payload: new TextEncoder().encode(id),
      });
    await put('a1', a.id);
    await put('b1', b.id);
    await put('a2', a.id);
    expect((await put('a1', a.id)).seq).toBe(1);
    await store.close();

    store = await backend.open();
    expect((await store.outbox.queued(p.id)).map((e) => [e.id, e.seq])).toEqual([
      ['a1', 1],
      ['a2', 2],
      ['b1', 1],
    ]);
  });

  it('leaves out of the queued entries, per portal, what a sender has written up to a seq', async () => {
    const store = await backend.open();
    const p = await store.puppets.create(puppet(1));
    const a = await store.portals.ensure(p.id, 'a@wa.interop');
    const b = await store.portals.ensure(p.id, 'b@wa.interop');
    for (const [id, portalId] of [
      ['a1', a.id],
      ['a2', a.id],
      ['b1', b.id],
      ['a3', a.id],
      ['b2', b.id],
    ] as const) {
      await store.outbox.enqueue({
        id,
        puppetId: p.id,
        portalId,
        kind: 'text',
        payload: new Uint8Array([1]),
      });
    }
    const ids = async (after: Map<number, number>) =>
      (await store.outbox.queued(p.id, 10, after)).map((e) => e.id);
    expect(await ids(new Map([[a.id, 2]]))).toEqual(['a3', 'b1', 'b2']);
    expect(
      await ids(
        new Map([
          [a.id, 3],
          [b.id, 1],
        ]),
      ),
    ).toEqual(['b2']);
    // Twenty portals named: the first sixteen are left out by the query, the rest read again.
    const many = new Map<number, number>(Array.from({ length: 19 }, (_, i) => [1000 + i, 1]));
    many.set(b.id, 2);
    expect(await ids(many)).toEqual(['a1', 'a2', 'a3', 'b1', 'b2']);
    expect(await ids(new Map())).toEqual(['a1', 'a2', 'a3', 'b1', 'b2']);
  });

  it('says when the oldest queued outbox entry was written, and nothing once none is queued', async () => {
    const store = await backend.open();
    expect(await store.outbox.oldestQueuedAt()).toBeUndefined();
    const p = await store.puppets.create(puppet(1));
    const portal = await store.portals.ensure(p.id, 'a@wa.interop');
    const before = Date.now();
    const first = await store.outbox.enqueue({
      id: 'm1',
      puppetId: p.id,
      portalId: portal.id,
      kind: 'text',
      payload: new Uint8Array([1]),
    });
    await new Promise((r) => setTimeout(r, 5));
    await store.outbox.enqueue({
      id: 'm2',
      puppetId: p.id,
      portalId: portal.id,
      kind: 'text',
      payload: new Uint8Array([2]),
    });
    const oldest = await store.outbox.oldestQueuedAt();
    expect(oldest).toBe(first.createdAt);
    expect(oldest).toBeGreaterThanOrEqual(before);
    await store.outbox.advance('m1', 'sent');
    expect(await store.outbox.oldestQueuedAt()).toBeGreaterThan(first.createdAt);
    await store.outbox.fail('m2', 'test');
    expect(await store.outbox.oldestQueuedAt()).toBeUndefined();
  });

  it('moves outbox entries forward only, since receipts can overtake acks', async () => {
    const store = await backend.open();
    const p = await store.puppets.create(puppet(1));
    const portal = await store.portals.ensure(p.id, 'a@wa.interop');
    await store.outbox.enqueue({
      id: 'm1',
      puppetId: p.id,
      portalId: portal.id,
      kind: 'text',
      payload: new Uint8Array(),
    });
    expect(await store.outbox.advance('m1', 'read')).toBe(true);
    expect(await store.outbox.advance('m1', 'sent')).toBe(false);
    expect(await store.outbox.advance('m1', 'delivered')).toBe(false);
    expect((await store.outbox.get('m1'))!.state).toBe('read');
    expect(await store.outbox.countQueued()).toBe(0);
    // Many at once (the receipts of a moment): each to its state, forward only.
    for (const id of ['m2', 'm3', 'm4']) {
      await store.outbox.enqueue({
        id,
        puppetId: p.id,
        portalId: portal.id,
        kind: 'text',
        payload: new Uint8Array([7]),
      });
    }
    await store.outbox.advance('m4', 'read');
    await store.outbox.advanceAll([
      ['m1', 'delivered'],
      ['m2', 'delivered'],
      ['m3', 'read'],
      ['m4', 'delivered'],
    ]);
    const after = await Promise.all(['m1', 'm2', 'm3', 'm4'].map((id) => store.outbox.get(id)));
    expect(after.map((e) => e!.state)).toEqual(['read', 'delivered', 'read', 'read']);
    expect(after.map((e) => e!.payload.length)).toEqual([0, 0, 0, 0]);
  });

  it("reads one portal's queued entries after a seq, in order, leaving other portals and other states out", async () => {
    const store = await backend.open();
    const p = await store.puppets.create(puppet(1));
    const a = await store.portals.ensure(p.id, 'a@wa.interop');
    const b = await store.portals.ensure(p.id, 'b@wa.interop');
    for (const [id, portal] of [
      ['a1', a],
      ['b1', b],
      ['a2', a],
      ['a3', a],
      ['a4', a],
    ] as const)
      await textEntry(store, p.id, portal.id, id);
    await store.outbox.advance('a3', 'sent');
    const after1 = await store.outbox.queuedIn(p.id, a.id, 1);
    expect(after1.map((e) => [e.id, e.seq])).toEqual([
      ['a2', 2],
      ['a4', 4],
    ]);
    expect((await store.outbox.queuedIn(p.id, a.id, 0, 1)).map((e) => e.id)).toEqual(['a1']);
    expect((await store.outbox.queuedIn(p.id, b.id, 0)).map((e) => e.id)).toEqual(['b1']);
    expect(await store.outbox.queuedIn(p.id + 1, a.id, 0)).toEqual([]);
  });

  it("gives a unit's new outbox row back as committed where it can (SQLite), and nothing for a known id", async () => {
    const store = await backend.open();
    const p = await store.puppets.create(puppet(1));
    const portal = await store.portals.ensure(p.id, 'a@wa.interop');
    await textEntry(store, p.id, portal.id, 'r1');
    const given: unknown[] = [];
    const entry = {
      id: 'r2',
      puppetId: p.id,
      portalId: portal.id,
      kind: 'text',
      payload: new Uint8Array([7, 8]),
      localId: '$e2',
    };
    await store.atomically((w) => {
      given.push(w.enqueueOutbox(entry), w.enqueueOutbox(entry));
    });
    const stored = await store.outbox.get('r2');
    expect(stored).toMatchObject({ seq: 2, state: 'queued', localId: '$e2' });
    if (backend.name === 'postgres') {
      expect(given).toEqual([undefined, undefined]); // its statements run at the commit
    } else {
      expect({
        ...(given[0] as object),
        payload: [...(given[0] as { payload: Uint8Array }).payload],
      }).toEqual({
        ...stored,
        payload: [7, 8],
      });
      expect(given[1]).toBeUndefined();
    }
  });

  it('writes many sent states in one call, clearing their payloads, and never moves an entry back', async () => {
    const store = await backend.open();
    const p = await store.puppets.create(puppet(1));
    const portal = await store.portals.ensure(p.id, 'a@wa.interop');
    for (const id of ['s1', 's2', 's3', 's4']) await textEntry(store, p.id, portal.id, id);
    await store.outbox.advance('s2', 'delivered');
    await store.outbox.advanceAllSent(['s1', 's2', 's3', 'unknown']);
    await store.outbox.advanceAllSent([]);
    const states = await Promise.all(['s1', 's2', 's3', 's4'].map((id) => store.outbox.get(id)));
    expect(states.map((e) => [e!.state, e!.payload.length])).toEqual([
      ['sent', 0],
      ['delivered', 0],
      ['sent', 0],
      ['queued', 1],
    ]);
  });

  it('records an incoming message once, however often it is redelivered', async () => {
    const store = await backend.open();
    const p = await store.puppets.create(puppet(1));
    const entry = {
      puppetId: p.id,
      sender: 'a@wa.interop',
      messageId: 'X1',
      portalId: null,
      payload: new Uint8Array([1]),
    };
    expect(await store.inbox.record(entry)).toBe(true);
    expect(await store.inbox.record(entry)).toBe(false);
    expect(await store.inbox.pending(p.id)).toHaveLength(1);
    await store.inbox.markDelivered(p.id, 'a@wa.interop', 'X1');
    expect(await store.inbox.pending(p.id)).toHaveLength(0);
    expect(await store.inbox.has(p.id, 'a@wa.interop', 'X1')).toBe(true);
  });

  it('keeps the delivery receipt a delivered message owes on its row until it is sent', async () => {
    const store = await backend.open();
    const p = await store.puppets.create(puppet(1));
    const other = await store.puppets.create(puppet(2));
    const record = (puppetId: number, messageId: string) =>
      store.inbox.record({
        puppetId,
        sender: 'a@wa.interop',
        messageId,
        portalId: null,
        payload: new Uint8Array([1]),
      });
    for (const id of ['X1', 'X2', 'X3']) await record(p.id, id);
    await record(other.id, 'Y1');
    const [x1, x2, x3] = await store.inbox.pending(p.id);
    // Delivered out of arrival order; X2 owes nothing (the user's own message from another device).
    await store.atomically((w) =>
      w.markInboxDelivered(p.id, 'a@wa.interop', 'X3', '{"to":"a:1@wa.interop"}'),
    );
    await store.atomically((w) => w.markInboxDelivered(p.id, 'a@wa.interop', 'X2'));
    await store.atomically((w) =>
      w.markInboxDelivered(p.id, 'a@wa.interop', 'X1', '{"to":"a:2@wa.interop"}'),
    );
    await store.atomically((w) =>
      w.markInboxDelivered(other.id, 'a@wa.interop', 'Y1', '{"to":"a:1@wa.interop"}'),
    );
    expect(await store.inbox.pending(p.id)).toEqual([]);
    const owed = await store.inbox.receiptsOwed(p.id, 0, 10);
    expect(owed.map((r) => [r.seq, r.messageId, r.receipt])).toEqual([
      [x1!.seq, 'X1', '{"to":"a:2@wa.interop"}'],
      [x3!.seq, 'X3', '{"to":"a:1@wa.interop"}'],
    ]);
    expect(x2!.seq).toBeGreaterThan(x1!.seq);
    expect((await store.inbox.receiptsOwed(p.id, x1!.seq, 10)).map((r) => r.messageId)).toEqual(['X3']);
    expect((await store.inbox.receiptsOwed(p.id, 0, 1)).map((r) => r.messageId)).toEqual(['X1']);
    expect(await store.outbox.puppetsWithQueued()).toEqual(expect.arrayContaining([p.id, other.id]));

    await store.inbox.receiptsSent([x1!.seq, x3!.seq]);
    expect(await store.inbox.receiptsOwed(p.id, 0, 10)).toEqual([]);
    expect((await store.inbox.receiptsOwed(other.id, 0, 10)).map((r) => r.messageId)).toEqual(['Y1']);
    expect(await store.outbox.puppetsWithQueued()).toEqual([other.id]);
  });

  it('maps message ids both ways', async () => {
    const store = await backend.open();
    const p = await store.puppets.create(puppet(1));
    const portal = await store.portals.ensure(p.id, 'a@wa.interop');
    await store.messages.put({
      portalId: portal.id,
      remoteId: 'R1',
      localId: '$event1',
      sender: 'a@wa.interop',
    });
    expect((await store.messages.byLocal(portal.id, '$event1'))?.remoteId).toBe('R1');
    expect((await store.messages.byRemote(portal.id, 'R1'))?.localId).toBe('$event1');
  });

  it("reads up to a message: the contact's messages since the last read, in order, each once", async () => {
    const store = await backend.open();
    const p = await store.puppets.create(puppet(1));
    const portal = await store.portals.ensure(p.id, 'a@wa.interop');
    const other = await store.portals.ensure(p.id, 'b@wa.interop');
    const me = 'me@s.wa.interop';
    // Mapped in this order; remote ids sort the other way, so the order is the mapping's.
    const mapped: [number, string, string][] = [
      [portal.id, 'R9', 'a@wa.interop'],
      [portal.id, 'R8', me], // the user's own message: never receipted
      [other.id, 'R7', 'b@wa.interop'],
      [portal.id, 'R6', 'a@wa.interop'],
      [portal.id, 'R5', 'a@wa.interop'],
    ];
    for (const [portalId, remoteId, sender] of mapped) {
      await store.messages.put({ portalId, remoteId, localId: `$${remoteId}`, sender });
    }
    const read = async (localId: string) => {
      const got = await store.messages.unreadUpTo(portal.id, localId, me, 100);
      await store.atomically((w) => w.markRead(portal.id, localId));
      return got.map((m) => m.remoteId);
    };
    expect(await store.messages.unreadUpTo(portal.id, '$R6', me, 1)).toMatchObject([{ remoteId: 'R9' }]);
    expect(await read('$R8')).toEqual(['R9']); // up to the user's own message
    expect(await read('$R8')).toEqual([]);
    expect(await read('$R9')).toEqual([]); // behind the mark: the mark does not move back
    expect(await read('$unknown')).toEqual([]);
    expect(await read('$R7')).toEqual([]); // another chat's message
    expect(await read('$R5')).toEqual(['R6', 'R5']);
    expect(await store.messages.unreadUpTo(other.id, '$R7', me, 100)).toMatchObject([{ remoteId: 'R7' }]);
    // More than a receipt takes (submit's limit): the mark moves past what it covered, and the
    // next receipt covers the rest.
    for (const n of [1, 2, 3]) {
      await store.messages.put({
        portalId: other.id,
        remoteId: `C${n}`,
        localId: `$C${n}`,
        sender: 'b@wa.interop',
      });
    }
    const first = await store.messages.unreadUpTo(other.id, '$C3', me, 2);
    expect(first.map((m) => m.remoteId)).toEqual(['R7', 'C1']);
    await store.atomically((w) => w.markRead(other.id, first.at(-1)!.localId));
    expect((await store.messages.unreadUpTo(other.id, '$C3', me, 2)).map((m) => m.remoteId)).toEqual([
      'C2',
      'C3',
    ]);
  });

  it('rolls back every write of a failed atomic unit', async () => {
    const store = await backend.open();
    const p = await store.puppets.create(puppet(1));
    const portal = await store.portals.ensure(p.id, 'a@wa.interop');
    await expect(
      store.atomically((w) => {
        w.enqueueOutbox({
          id: 'm1',
          puppetId: p.id,
          portalId: portal.id,
          kind: 'text',
          payload: new Uint8Array(),
        });
        w.putMessage({ portalId: portal.id, remoteId: 'm1', localId: '$e1', sender: 'me' });
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await store.outbox.get('m1')).toBeUndefined();
    expect(await store.messages.byLocal(portal.id, '$e1')).toBeUndefined();
  });

  it('commits every write of an atomic unit together', async () => {
    const store = await backend.open();
    const p = await store.puppets.create(puppet(1));
    const portal = await store.portals.ensure(p.id, 'a@wa.interop');
    await store.atomically((w) => {
      w.recordInbox({
        puppetId: p.id,
        sender: 'a@wa.interop',
        messageId: 'X1',
        portalId: portal.id,
        payload: new Uint8Array([1]),
      });
      w.markInboxDelivered(p.id, 'a@wa.interop', 'X1');
      w.enqueueOutbox({
        id: 'r1',
        puppetId: p.id,
        portalId: portal.id,
        kind: 'receipt',
        payload: new Uint8Array(),
      });
    });
    expect(await store.inbox.pending(p.id)).toHaveLength(0);
    expect(await store.inbox.has(p.id, 'a@wa.interop', 'X1')).toBe(true);
    expect((await store.outbox.get('r1'))?.seq).toBe(1);
  });

  describe('groups', () => {
    const group = (puppetId: number, groupJid: string, version = 1, active = true) => ({
      puppetId,
      groupJid,
      version,
      info: JSON.stringify({ subject: `subject ${version}` }),
      active,
    });

    it('reads back the group it wrote, with the time it was written', async () => {
      const store = await backend.open({ now: () => 1234 });
      const p = await store.puppets.create(puppet(1));
      await store.groups.put(group(p.id, '120363001@g.wa.interop'));
      expect(await store.groups.get(p.id, '120363001@g.wa.interop')).toEqual({
        ...group(p.id, '120363001@g.wa.interop'),
        updatedAt: 1234,
      });
      expect(await store.groups.get(p.id, '120363999@g.wa.interop')).toBeUndefined();
    });

    it("replaces a group's version, state and active flag when written again", async () => {
      const store = await backend.open();
      const p = await store.puppets.create(puppet(1));
      await store.groups.put(group(p.id, '120363001@g.wa.interop', 1));
      await store.groups.put(group(p.id, '120363001@g.wa.interop', 2, false));
      expect(await store.groups.get(p.id, '120363001@g.wa.interop')).toMatchObject({
        version: 2,
        info: '{"subject":"subject 2"}',
        active: false,
      });
    });

    it("lists a puppet's active groups, and with `all` the ones it left too", async () => {
      const store = await backend.open();
      const [p, other] = [await store.puppets.create(puppet(1)), await store.puppets.create(puppet(2))];
      await store.groups.put(group(p.id, '2@g.wa.interop'));
      await store.groups.put(group(p.id, '1@g.wa.interop', 3, false));
      await store.groups.put(group(p.id, '3@g.wa.interop'));
      await store.groups.put(group(other.id, '4@g.wa.interop'));
      const jids = async (all?: boolean) =>
        (await store.groups.listForPuppet(p.id, all)).map((g) => g.groupJid);
      expect(await jids()).toEqual(['2@g.wa.interop', '3@g.wa.interop']);
      expect(await jids(true)).toEqual(['1@g.wa.interop', '2@g.wa.interop', '3@g.wa.interop']);
    });

    it('records the holders of the sender key once each, per group, until they are cleared', async () => {
      const store = await backend.open();
      const p = await store.puppets.create(puppet(1));
      const g = '120363001@g.wa.interop';
      await store.groups.addKeyHolders(p.id, g, ['491:1@s.wa.interop', '491:2@s.wa.interop']);
      await store.groups.addKeyHolders(p.id, g, ['491:2@s.wa.interop', '492:1@s.wa.interop']);
      await store.groups.addKeyHolders(p.id, g, []);
      await store.groups.addKeyHolders(p.id, 'other@g.wa.interop', ['493:1@s.wa.interop']);
      expect(await store.groups.keyHolders(p.id, g)).toEqual(
        new Set(['491:1@s.wa.interop', '491:2@s.wa.interop', '492:1@s.wa.interop']),
      );
      await store.groups.clearKeyHolders(p.id, g);
      expect(await store.groups.keyHolders(p.id, g)).toEqual(new Set());
      expect(await store.groups.keyHolders(p.id, 'other@g.wa.interop')).toEqual(
        new Set(['493:1@s.wa.interop']),
      );
    });

    it("removes a puppet's groups and key holders with the puppet", async () => {
      const store = await backend.open();
      const p = await store.puppets.create(puppet(1));
      await store.groups.put(group(p.id, '120363001@g.wa.interop'));
      await store.groups.addKeyHolders(p.id, '120363001@g.wa.interop', ['491:1@s.wa.interop']);
      await store.puppets.delete(p.id);
      expect(await store.groups.get(p.id, '120363001@g.wa.interop')).toBeUndefined();
      expect(await store.groups.listForPuppet(p.id, true)).toEqual([]);
      expect(await store.groups.keyHolders(p.id, '120363001@g.wa.interop')).toEqual(new Set());
    });
  });

  it('lists the sessions of one remote user only', async () => {
    const s = await backend.open();
    const p = await s.puppets.create(puppet(1));
    const signal = backend.signal(s, p.id);
    for (const a of ['491.1', '491.2', '4910.1', '49.1']) signal.saveSession(a, new LiveSessionRecord());
    await signal.flush();
    const reopened = backend.signal(s, p.id);
    await reopened.prepare('491');
    expect(reopened.sessionAddresses('491')).toEqual(['491.1', '491.2']);
  });
});
