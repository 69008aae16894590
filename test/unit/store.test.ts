import Database from 'better-sqlite3';
import { chmodSync, statSync } from 'node:fs';
import path from 'node:path';
import { openDatabase, readMigrations } from '../../src/store/database.js';
import type { NewPuppet, Store } from '../../src/store/repositories.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { StoreError } from '../../src/errors.js';
import { tempDir } from '../support/tmp.js';

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

describe('embedded store', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: Store | undefined;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => {
    store?.close();
    store = undefined;
    tmp.cleanup();
  });

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
        { version: rest.length + 2, name: 'extra', sql: 'CREATE TABLE extra (x)' },
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

  it('keeps puppets and removes everything a puppet owns when it opts out', () => {
    store = openSqliteStore(path.join(tmp.dir, 'bridge.db'));
    const p = store.puppets.create(puppet(1));
    expect(store.puppets.byLocalId('@user1:example.org')).toMatchObject({
      accountId: 'acct-1',
      state: 'enlisting',
    });
    const portal = store.portals.ensure(p.id, '4915112345678@wa.interop');
    expect(store.portals.ensure(p.id, '4915112345678@wa.interop').id).toBe(portal.id);
    store.sessions.storeSession(p.id, '4915112345678.1', new Uint8Array([1, 2, 3]));
    store.outbox.enqueue({
      id: 'm1',
      puppetId: p.id,
      portalId: portal.id,
      kind: 'text',
      payload: new Uint8Array([9]),
    });

    store.puppets.delete(p.id);
    expect(store.portals.byId(portal.id)).toBeUndefined();
    expect(store.sessions.loadSession(p.id, '4915112345678.1')).toBeUndefined();
    expect(store.outbox.get('m1')).toBeUndefined();
  });

  it('orders the outbox per portal, deduplicates by message id and survives a reopen', () => {
    const file = path.join(tmp.dir, 'bridge.db');
    store = openSqliteStore(file);
    const p = store.puppets.create(puppet(1));
    const a = store.portals.ensure(p.id, 'a@wa.interop');
    const b = store.portals.ensure(p.id, 'b@wa.interop');
    const put = (id: string, portalId: number) =>
      store!.outbox.enqueue({
        id,
        puppetId: p.id,
        portalId,
        kind: 'text',
        payload: new TextEncoder().encode(id),
      });
    put('a1', a.id);
    put('b1', b.id);
    put('a2', a.id);
    expect(put('a1', a.id).seq).toBe(1);
    store.close();

    store = openSqliteStore(file);
    expect(store.outbox.queued(p.id).map((e) => [e.id, e.seq])).toEqual([
      ['a1', 1],
      ['a2', 2],
      ['b1', 1],
    ]);
  });

  it('moves outbox entries forward only, since receipts can overtake acks', () => {
    store = openSqliteStore(path.join(tmp.dir, 'bridge.db'));
    const p = store.puppets.create(puppet(1));
    const portal = store.portals.ensure(p.id, 'a@wa.interop');
    store.outbox.enqueue({
      id: 'm1',
      puppetId: p.id,
      portalId: portal.id,
      kind: 'text',
      payload: new Uint8Array(),
    });
    expect(store.outbox.advance('m1', 'read')).toBe(true);
    expect(store.outbox.advance('m1', 'sent')).toBe(false);
    expect(store.outbox.advance('m1', 'delivered')).toBe(false);
    expect(store.outbox.get('m1')!.state).toBe('read');
    expect(store.outbox.countQueued()).toBe(0);
  });

  it('records an incoming message once, however often it is redelivered', () => {
    store = openSqliteStore(path.join(tmp.dir, 'bridge.db'));
    const p = store.puppets.create(puppet(1));
    const entry = {
      puppetId: p.id,
      sender: 'a@wa.interop',
      messageId: 'X1',
      portalId: null,
      payload: new Uint8Array([1]),
    };
    expect(store.inbox.record(entry)).toBe(true);
    expect(store.inbox.record(entry)).toBe(false);
    expect(store.inbox.pending(p.id)).toHaveLength(1);
    store.inbox.markDelivered(p.id, 'a@wa.interop', 'X1');
    expect(store.inbox.pending(p.id)).toHaveLength(0);
    expect(store.inbox.has(p.id, 'a@wa.interop', 'X1')).toBe(true);
  });

  it('maps message ids both ways and remembers appservice transactions', () => {
    store = openSqliteStore(path.join(tmp.dir, 'bridge.db'));
    const p = store.puppets.create(puppet(1));
    const portal = store.portals.ensure(p.id, 'a@wa.interop');
    store.messages.put({ portalId: portal.id, remoteId: 'R1', localId: '$event1', sender: 'a@wa.interop' });
    expect(store.messages.byLocal(portal.id, '$event1')?.remoteId).toBe('R1');
    expect(store.messages.byRemote(portal.id, 'R1')?.localId).toBe('$event1');
    expect(store.transactions.isDone('txn1')).toBe(false);
    store.transactions.markDone('txn1');
    expect(store.transactions.isDone('txn1')).toBe(true);
  });

  it('rolls back every write of a failed atomic unit', () => {
    store = openSqliteStore(path.join(tmp.dir, 'bridge.db'));
    expect(() =>
      store!.atomically(() => {
        store!.puppets.create(puppet(1));
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(store.puppets.list()).toEqual([]);
  });

  it('lists the sessions of one remote user only', () => {
    store = openSqliteStore(path.join(tmp.dir, 'bridge.db'));
    const p = store.puppets.create(puppet(1));
    for (const a of ['491.1', '491.2', '4910.1', '49.1'])
      store.sessions.storeSession(p.id, a, new Uint8Array([1]));
    expect(store.sessions.sessionAddresses(p.id, '491')).toEqual(['491.1', '491.2']);
  });
});
