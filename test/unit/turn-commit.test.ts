import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDatabase } from '../../src/store/database.js';
import type { NewPuppet } from '../../src/store/repositories.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite-store.js';
import { joinTurns, TurnCommit } from '../../src/store/turn-commit.js';
import { SqliteSignalBackend } from '../../src/signal/sqlite-store.js';
import { LiveSessionRecord } from '../../src/signal/record.js';
import { tempDir, type TempDir } from '../support/tmp.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const puppet: NewPuppet = {
  localId: '@alice:example.org',
  network: 'matrix',
  accountId: 'acct-1',
  deviceId: 1,
  registrationId: 1001,
  identityPublic: new Uint8Array(33).fill(1),
  identityPrivate: new Uint8Array(32).fill(1),
  noisePublic: new Uint8Array(32).fill(2),
  noisePrivate: new Uint8Array(32).fill(3),
};

const entry = (id: string, puppetId: number, portalId: number) => ({
  id,
  puppetId,
  portalId,
  kind: 'text',
  payload: new Uint8Array([1]),
});

describe('group commit on SQLite: the writes of one turn in one transaction', () => {
  let tmp: TempDir;
  let file: string;
  let store: SqliteStore;
  /** Another connection: what a crash would leave, as committed. */
  let other: Database.Database;
  const committedIds = () =>
    other.prepare('SELECT id FROM outbox ORDER BY seq').pluck().all() as string[];

  beforeEach(() => {
    tmp = tempDir();
    file = path.join(tmp.dir, 'bridge.db');
    store = openSqliteStore(file);
    other = new Database(file, { readonly: true });
  });
  afterEach(async () => {
    other.close();
    await store.close();
    tmp.cleanup();
  });

  it("commits a turn's units and single writes once, and each promise resolves only after that commit", async () => {
    const p = await store.puppets.create(puppet);
    const portal = await store.portals.ensure(p.id, 'bob@wa.interop');
    const turn = TurnCommit.of(store.db)!;
    const before = turn.commits;
    const seen: string[][] = [];
    const writes = [
      store.outbox.enqueue(entry('m1', p.id, portal.id)).then(() => seen.push(committedIds())),
      store
        .atomically((w) => {
          w.enqueueOutbox(entry('m2', p.id, portal.id));
          w.putMessage({ portalId: portal.id, remoteId: 'r2', localId: '$e2', sender: 'bob@wa.interop' });
        })
        .then(() => seen.push(committedIds())),
      store.outbox.enqueue(entry('m3', p.id, portal.id)).then(() => seen.push(committedIds())),
    ];
    // Written on this connection, readable on it, not yet committed.
    expect(store.db.prepare('SELECT count(*) FROM outbox').pluck().get()).toBe(3);
    expect(committedIds()).toEqual([]);
    await Promise.all(writes);
    expect(turn.commits - before).toBe(1);
    expect(seen).toEqual([
      ['m1', 'm2', 'm3'],
      ['m1', 'm2', 'm3'],
      ['m1', 'm2', 'm3'],
    ]);
  });

  it('a unit that throws leaves nothing, and the rest of its turn commits', async () => {
    const p = await store.puppets.create(puppet);
    const portal = await store.portals.ensure(p.id, 'bob@wa.interop');
    const failing = store.atomically((w) => {
      w.enqueueOutbox(entry('lost', p.id, portal.id));
      throw new Error('refused');
    });
    const kept = store.atomically((w) => void w.enqueueOutbox(entry('kept', p.id, portal.id)));
    await expect(failing).rejects.toThrow('refused');
    await kept;
    expect(committedIds()).toEqual(['kept']);
  });

  it("the senders' reads resolve after the commit of what they saw", async () => {
    const p = await store.puppets.create(puppet);
    const portal = await store.portals.ensure(p.id, 'bob@wa.interop');
    void store.outbox.enqueue(entry('m1', p.id, portal.id));
    const queued = await store.outbox.queuedIn(p.id, portal.id, 0);
    expect(queued.map((e) => e.id)).toEqual(['m1']);
    expect(committedIds()).toEqual(['m1']);
    // A plain read neither opens a turn nor waits.
    expect(await store.puppets.byId(p.id)).toBeDefined();
    expect(TurnCommit.of(store.db)!.open).toBe(false);
  });

  it("the Signal state's writes join the turn and its flush() waits for the commit", async () => {
    const p = await store.puppets.create(puppet);
    const signal = new SqliteSignalBackend(store.db, p.id);
    signal.saveSession('bob.1', new LiveSessionRecord());
    const count = () => other.prepare('SELECT count(*) FROM signal_sessions').pluck().get();
    expect(count()).toBe(0);
    await signal.flush();
    expect(count()).toBe(1);
  });

  it('an adapter store joins through joinTurns: writes resolve after the commit, named reads do not join', async () => {
    class Notes {
      constructor(private readonly db: Database.Database) {
        joinTurns(this, db, ['read']);
      }
      async write(text: string): Promise<void> {
        this.db.prepare('INSERT INTO notes (text) VALUES (?)').run(text);
      }
      async read(): Promise<string[]> {
        return this.db.prepare('SELECT text FROM notes').pluck().all() as string[];
      }
    }
    store.db.exec('CREATE TABLE notes (text TEXT)');
    const notes = new Notes(store.db);
    const committed = () => other.prepare('SELECT count(*) FROM notes').pluck().get();
    const written = notes.write('one');
    expect(committed()).toBe(0);
    await written;
    expect(committed()).toBe(1);
    expect(await notes.read()).toEqual(['one']);
    expect(TurnCommit.of(store.db)!.open).toBe(false);
    expect(() => joinTurns(notes, store.db, ['reed'])).toThrow('Notes has no method reed');
  });

  it('a database without group commit writes at once, as before', async () => {
    const plain = openSqliteStore(path.join(tmp.dir, 'plain.db'), { groupCommit: false });
    try {
      expect(TurnCommit.of(plain.db)).toBeUndefined();
      await plain.puppets.create(puppet);
      expect(plain.db.inTransaction).toBe(false);
    } finally {
      await plain.close();
    }
  });
});

describe('group commit across a SIGKILL', () => {
  let tmp: TempDir;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  it('keeps every write that was waited for, and loses only the turn still open', () => {
    const file = path.join(tmp.dir, 'bridge.db');
    const child = `
      import { openSqliteStore } from './dist/src/store/sqlite-store.js';
      const store = openSqliteStore(${JSON.stringify(file)});
      const key = (n) => new Uint8Array(n);
      const p = await store.puppets.create({ localId: '@alice:example.org', network: 'matrix',
        accountId: 'acct-1', deviceId: 1, registrationId: 1001, identityPublic: key(33),
        identityPrivate: key(32), noisePublic: key(32), noisePrivate: key(32) });
      const portal = await store.portals.ensure(p.id, 'bob@wa.interop');
      await store.outbox.enqueue({ id: 'acked', puppetId: p.id, portalId: portal.id, kind: 'text', payload: new Uint8Array([1]) });
      void store.outbox.enqueue({ id: 'in-flight', puppetId: p.id, portalId: portal.id, kind: 'text', payload: new Uint8Array([1]) });
      process.kill(process.pid, 'SIGKILL');
    `;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', child], { cwd: root });
    expect(run.signal).toBe('SIGKILL');
    const db = openDatabase(file);
    try {
      expect(db.prepare('SELECT id FROM outbox').pluck().all()).toEqual(['acked']);
    } finally {
      db.close();
    }
  });
});
