/**
 * The Matrix crypto store (adapters/matrix/crypto/): an IndexedDB whose data lives, sealed, in the
 * bridge's database, on SQLite and on a real PostgreSQL. Raw IndexedDB round trips in this process;
 * the OlmMachines (matrix-sdk-crypto-wasm) in child processes (test/support/olm-child.ts), so that a
 * reopened store is read by a process that never saw it, and a SIGKILL is a real one.
 */
import { randomBytes } from 'node:crypto';
import { serialize } from 'node:v8';
import path from 'node:path';
import { IDBKeyRange } from 'fake-indexeddb';
import { bridgeMigrations } from '../../app/migrations.js';
import type { CryptoJournal, JournalChange } from '../../adapters/matrix/crypto/crypto-journal.js';
import { PostgresCryptoJournal } from '../../adapters/matrix/crypto/crypto-store-postgres.js';
import { SqliteCryptoJournal } from '../../adapters/matrix/crypto/crypto-store-sqlite.js';
import { CryptoStoreError } from '../../adapters/matrix/crypto/errors.js';
import { PersistentIndexedDb } from '../../adapters/matrix/crypto/idb-persistence.js';
import { openDatabase, type Db } from '../../src/store/database.js';
import { PgDatabase } from '../../src/store/postgres-database.js';
import { PayloadVault } from '../../src/util/payload-vault.js';
import type { OlmChildConfig } from '../support/olm-child.js';
import { OlmDevice } from '../support/olm-device.js';
import { startPostgres, type PostgresServer } from '../support/postgres.js';
import { tempDir, type TempDir } from '../support/tmp.js';

// ---- The bridge's database, on either backend ----

interface Backend {
  readonly name: 'sqlite' | 'postgres';
  setUp(): Promise<void>;
  tearDown(): Promise<void>;
  /** A new empty database with the whole migration sequence. */
  fresh(): Promise<void>;
  /** A journal on the current database; closed by `closeAll`. */
  journal(): Promise<CryptoJournal>;
  closeAll(): Promise<void>;
  /** Where a child process finds the current database. */
  location(): NonNullable<OlmChildConfig['database']>;
  /** Every column of every row of the crypto tables, as bytes. */
  cryptoColumns(): Promise<Buffer[]>;
}

function sqlite(): Backend {
  let tmp: TempDir | undefined;
  let file = '';
  const open: Db[] = [];
  const closeAll = () => {
    for (const db of open.splice(0)) db.close();
    return Promise.resolve();
  };
  return {
    name: 'sqlite',
    setUp: () => Promise.resolve(),
    async tearDown() {
      await closeAll();
      tmp?.cleanup();
    },
    async fresh() {
      await closeAll();
      tmp?.cleanup();
      tmp = tempDir();
      file = path.join(tmp.dir, 'bridge.db');
      openDatabase(file, { migrations: bridgeMigrations('sqlite') }).close();
    },
    journal() {
      const db = openDatabase(file, { migrations: bridgeMigrations('sqlite') });
      open.push(db);
      return Promise.resolve(new SqliteCryptoJournal(db));
    },
    closeAll,
    location: () => ({ kind: 'sqlite', file }),
    cryptoColumns() {
      const db = openDatabase(file, { migrations: bridgeMigrations('sqlite') });
      const rows = [
        ...(db.prepare('SELECT * FROM matrix_crypto_idb').all() as Record<string, unknown>[]),
        ...(db.prepare('SELECT * FROM matrix_crypto_idb_schema').all() as Record<string, unknown>[]),
      ];
      db.close();
      return Promise.resolve(rows.flatMap((r) => Object.values(r).map(asBytes)));
    },
  };
}

function postgres(): Backend {
  let server: PostgresServer | undefined;
  let url = '';
  const open: PgDatabase[] = [];
  const closeAll = async () => {
    for (const db of open.splice(0)) await db.close();
  };
  return {
    name: 'postgres',
    async setUp() {
      server = await startPostgres();
    },
    async tearDown() {
      await closeAll();
      await server?.stop();
    },
    async fresh() {
      await closeAll();
      url = await server!.createDatabase();
      await (await PgDatabase.open({ url, migrations: bridgeMigrations('postgres') })).close();
    },
    async journal() {
      const db = await PgDatabase.open({ url, migrations: false });
      open.push(db);
      return new PostgresCryptoJournal(db);
    },
    closeAll,
    location: () => ({ kind: 'postgres', url }),
    async cryptoColumns() {
      const db = await PgDatabase.open({ url, migrations: false });
      const rows = [
        ...(await db.query('SELECT * FROM matrix_crypto_idb')),
        ...(await db.query('SELECT * FROM matrix_crypto_idb_schema')),
      ];
      await db.close();
      return rows.flatMap((r) => Object.values(r).map(asBytes));
    },
  };
}

const asBytes = (v: unknown): Buffer => (Buffer.isBuffer(v) ? v : Buffer.from(String(v), 'utf8'));

// ---- IndexedDB, as promises ----

interface Req {
  result: unknown;
  error: unknown;
  onsuccess: (() => void) | null;
  onerror: (() => void) | null;
}
interface OpenReq extends Req {
  onupgradeneeded: (() => void) | null;
}
interface Store {
  put(value: unknown, key?: unknown): Req;
  get(key: unknown): Req;
  getAll(query?: unknown): Req;
  getAllKeys(query?: unknown): Req;
  delete(query: unknown): Req;
  clear(): Req;
  openCursor(query?: unknown, direction?: string): Req;
  index(name: string): { get(key: unknown): Req; getAll(key?: unknown): Req };
  createIndex(name: string, keyPath: string, options?: { unique?: boolean }): unknown;
}
interface Tx {
  objectStore(name: string): Store;
  oncomplete: (() => void) | null;
  onabort: (() => void) | null;
  error: { name: string } | null;
}
interface Conn {
  transaction(stores: string | string[], mode: 'readonly' | 'readwrite'): Tx;
  createObjectStore(name: string, options?: { keyPath?: string; autoIncrement?: boolean }): Store;
  close(): void;
}
interface Factory {
  open(name: string, version?: number): OpenReq;
}

const done = <T>(r: Req): Promise<T> =>
  new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result as T);
    r.onerror = () => reject(r.error as Error);
  });

/** Runs `work` in one readwrite transaction; resolves at `complete`, rejects at `abort`. */
function write(db: Conn, stores: string[], work: (tx: Tx) => void): Promise<void> {
  const tx = db.transaction(stores, 'readwrite');
  work(tx);
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(new Error(`aborted: ${tx.error?.name}`));
  });
}

function openIdb(
  idb: PersistentIndexedDb,
  name: string,
  version: number,
  upgrade: (db: Conn) => void = () => undefined,
): Promise<Conn> {
  const request = (idb.factory as unknown as Factory).open(name, version);
  request.onupgradeneeded = () => upgrade(request.result as Conn);
  return done<Conn>(request);
}

/** The sample database of the round trip: keys of every kind, values of every kind. */
async function sampleDatabase(idb: PersistentIndexedDb): Promise<Conn> {
  const db = await openIdb(idb, 'ghost-7::sample', 3, (conn) => {
    conn.createObjectStore('plain');
    const sessions = conn.createObjectStore('sessions', { keyPath: 'id' });
    sessions.createIndex('room', 'room');
    conn.createObjectStore('log', { autoIncrement: true });
  });
  await write(db, ['plain', 'sessions', 'log'], (tx) => {
    const plain = tx.objectStore('plain');
    plain.put({ secret: 'PLAINTEXT-MARKER-1', bytes: new Uint8Array([1, 2, 3]) }, 'b');
    plain.put(new Map([['k', new Uint8Array([9])]]), 'a');
    plain.put('three', 3);
    plain.put('array key', ['x', 2]);
    plain.put('binary key', new Uint8Array([0xff, 0]));
    plain.put('doomed', 'z');
    plain.put('range 1', 'r1');
    plain.put('range 2', 'r2');
    const sessions = tx.objectStore('sessions');
    for (const [id, room] of [
      ['s1', '!a'],
      ['s2', '!b'],
      ['s3', '!a'],
    ])
      sessions.put({ id, room, pickle: `pickle ${id}` });
    const log = tx.objectStore('log');
    for (const line of ['one', 'two', 'three']) log.put(line);
  });
  await write(db, ['plain', 'sessions', 'log'], (tx) => {
    tx.objectStore('plain').delete('z');
    tx.objectStore('plain').delete(IDBKeyRange.bound('r1', 'r2'));
    const cursor = tx.objectStore('sessions').openCursor();
    cursor.onsuccess = () => {
      const c = cursor.result as {
        value: { id: string };
        update(v: unknown): Req;
        delete(): Req;
        continue(): void;
      } | null;
      if (!c) return;
      if (c.value.id === 's2') c.delete();
      else c.update({ ...c.value, pickle: `${c.value.id} updated` });
      c.continue();
    };
    tx.objectStore('log').delete(3); // the highest key: the generator must not reuse it
  });
  return db;
}

/** What a reader of the sample database sees. */
async function readSample(db: Conn) {
  const tx = db.transaction(['plain', 'sessions', 'log'], 'readonly');
  const plain = tx.objectStore('plain');
  const keys = await done<unknown[]>(plain.getAllKeys());
  const b = await done<{ secret: string; bytes: Uint8Array }>(plain.get('b'));
  const a = await done<Map<string, Uint8Array>>(plain.get('a'));
  const byCursorDescending: unknown[] = [];
  await new Promise<void>((resolve) => {
    const cursor = plain.openCursor(undefined, 'prev');
    cursor.onsuccess = () => {
      const c = cursor.result as { key: unknown; continue(): void } | null;
      if (!c) return resolve();
      byCursorDescending.push(c.key);
      c.continue();
    };
  });
  const inRoomA = await done<{ id: string; pickle: string }[]>(
    tx.objectStore('sessions').index('room').getAll('!a'),
  );
  const inRoomB = await done<unknown[]>(tx.objectStore('sessions').index('room').getAll('!b'));
  const log = await done<unknown[]>(tx.objectStore('log').getAllKeys());
  return {
    keys: keys.map(showKey),
    byCursorDescending: byCursorDescending.map(showKey),
    b: {
      secret: b.secret,
      bytes: b.bytes,
      isUint8Array: tag(b.bytes) === 'Uint8Array',
      offset: b.bytes.byteOffset,
    },
    a: { isMap: tag(a) === 'Map', k: a.get('k') },
    inRoomA: inRoomA.map((s) => [s.id, s.pickle]),
    inRoomB,
    log,
  };
}

/** The built-in type (values come from Node's realm, not Jest's: `instanceof` would not do). */
const tag = (v: unknown): string => Object.prototype.toString.call(v).slice(8, -1);

const showKey = (k: unknown): unknown =>
  k instanceof ArrayBuffer
    ? `bytes:${Buffer.from(k).toString('hex')}`
    : Array.isArray(k)
      ? k.map(showKey)
      : k;

const EXPECTED_SAMPLE = {
  // IndexedDB's order: numbers, then strings, then binary, then arrays.
  keys: [3, 'a', 'b', 'bytes:ff00', ['x', 2]],
  byCursorDescending: [['x', 2], 'bytes:ff00', 'b', 'a', 3],
  b: { secret: 'PLAINTEXT-MARKER-1', bytes: new Uint8Array([1, 2, 3]), isUint8Array: true, offset: 0 },
  a: { isMap: true, k: new Uint8Array([9]) },
  inRoomA: [
    ['s1', 's1 updated'],
    ['s3', 's3 updated'],
  ],
  inRoomB: [],
  log: [1, 2],
};

const vaultOf = (key: Uint8Array) => new PayloadVault(key);
/** `{"user_id":"` in base64: how the Rust store without a passphrase writes the Olm account. */
const ACCOUNT_JSON_BASE64 = Buffer.from('{"user_id":"').toString('base64').slice(0, 16);

/** Every key and value of every object store of a database, as the crypto machine would read them. */
async function everyValue(idb: PersistentIndexedDb, name: string): Promise<unknown[]> {
  const request = (idb.factory as unknown as Factory).open(name);
  const db = (await done(request)) as Conn & { objectStoreNames: Iterable<string> };
  const stores = [...db.objectStoreNames];
  const tx = db.transaction(stores, 'readonly');
  const values = await Promise.all(stores.map((s) => done<unknown[]>(tx.objectStore(s).getAll())));
  const keys = await Promise.all(stores.map((s) => done<unknown[]>(tx.objectStore(s).getAllKeys())));
  db.close();
  return [...keys.flat(), ...values.flat()];
}

describe.each([sqlite(), postgres()])('the Matrix crypto store on $name', (backend) => {
  let atRestKey: Buffer;
  beforeAll(() => backend.setUp(), 60_000);
  afterAll(() => backend.tearDown());
  beforeEach(async () => {
    atRestKey = randomBytes(32);
    await backend.fresh();
  });
  afterEach(() => backend.closeAll());

  const persistentConfig = (over: Partial<OlmChildConfig> = {}): OlmChildConfig => ({
    mode: 'persistent',
    user: '@ghost_alice:example.test',
    device: 'GHOSTDEV',
    database: backend.location(),
    atRestKey: atRestKey.toString('base64'),
    storeName: 'ghost-1',
    passphrase: 'store passphrase',
    ...over,
  });

  it('keeps IndexedDB records, key order, indexes and key generators across a close and a reopen', async () => {
    const first = await PersistentIndexedDb.open(await backend.journal(), vaultOf(atRestKey));
    const db = await sampleDatabase(first);
    expect(await readSample(db)).toEqual(EXPECTED_SAMPLE);
    await first.flush();
    db.close();
    await backend.closeAll();

    const again = await PersistentIndexedDb.open(await backend.journal(), vaultOf(atRestKey));
    const reopened = await openIdb(again, 'ghost-7::sample', 3, () => {
      throw new Error('the version was not kept: an upgrade ran');
    });
    expect(await readSample(reopened)).toEqual(EXPECTED_SAMPLE);
    // The generator goes on after the highest key ever used (3, deleted), not after the highest left.
    await write(reopened, ['log'], (tx) => void tx.objectStore('log').put('four'));
    expect(await done(reopened.transaction('log', 'readonly').objectStore('log').getAllKeys())).toEqual([
      1, 2, 4,
    ]);
    // A cleared store stays cleared.
    await write(reopened, ['sessions'], (tx) => void tx.objectStore('sessions').clear());
    await again.flush();
    reopened.close();
    await backend.closeAll();
    const third = await PersistentIndexedDb.open(await backend.journal(), vaultOf(atRestKey));
    const cleared = await openIdb(third, 'ghost-7::sample', 3);
    expect(await done(cleared.transaction('sessions', 'readonly').objectStore('sessions').getAll())).toEqual(
      [],
    );
    expect(await done(cleared.transaction('log', 'readonly').objectStore('log').getAll())).toEqual([
      'one',
      'two',
      'four',
    ]);
    cleared.close();
  });

  it('gives an OlmMachine the same identity keys in a new process', async () => {
    const first = await OlmDevice.start(persistentConfig());
    await first.stop();
    const second = await OlmDevice.start(persistentConfig());
    expect(second.identity).toEqual(first.identity);
    await second.stop();
  }, 60_000);

  it('loses no Olm session and no Megolm session when the device is killed with SIGKILL mid-conversation', async () => {
    const room = '!portal:example.test';
    const alice = persistentConfig();
    const bob = await OlmDevice.start({ mode: 'memory', user: '@bob:example.test', device: 'BOBDEV' });
    let ghost = await OlmDevice.start(alice);
    const keys = await ghost.call<{ deviceKeys: object; oneTimeKeys: object }>('uploadKeys');
    await bob.call('learnDevice', { user: alice.user, device: alice.device, ...keys });
    const roomKey = await bob.call<object[]>('shareRoomKey', {
      room,
      users: [alice.user, '@bob:example.test'],
    });
    const first = await bob.call('encrypt', { room, body: 'SECRET-ROOM-MESSAGE-1' });

    const received = await ghost.call<{ event: { type: string } }[]>('receive', { events: roomKey });
    expect(received.map((r) => r.event.type)).toContain('m.room_key');
    expect(await ghost.call('decrypt', { event: first })).toMatchObject({ body: 'SECRET-ROOM-MESSAGE-1' });
    await ghost.kill(); // right after its answers: nothing was closed or flushed beyond what it does per call

    const second = await bob.call('encrypt', { room, body: 'SECRET-ROOM-MESSAGE-2' });
    const olm = await bob.call('encryptToDevice', {
      user: alice.user,
      device: alice.device,
      type: 'org.example.marker',
      content: { marker: 'SECRET-OLM-MARKER' },
    });
    ghost = await OlmDevice.start(alice);
    const afterRestart = await ghost.call<{ event: { type: string; content: unknown } }[]>('receive', {
      events: [olm],
    });
    expect(afterRestart.map((r) => r.event)).toContainEqual(
      expect.objectContaining({ type: 'org.example.marker', content: { marker: 'SECRET-OLM-MARKER' } }),
    );
    expect(await ghost.call('decrypt', { event: second })).toMatchObject({ body: 'SECRET-ROOM-MESSAGE-2' });
    await ghost.stop();
    await bob.stop();

    // Nothing of it is readable in the database: no message, no marker, no identity key.
    const columns = Buffer.concat(await backend.cryptoColumns());
    expect(columns.length).toBeGreaterThan(1000);
    for (const secret of [
      'SECRET-ROOM-MESSAGE',
      'SECRET-OLM-MARKER',
      ghost.identity.curve25519,
      ghost.identity.ed25519,
      'ghost_alice',
      'GHOSTDEV',
    ]) {
      expect(columns.includes(secret)).toBe(false);
    }
  }, 120_000);

  it('holds nothing readable, even from a store opened without a passphrase, and refuses another at-rest key', async () => {
    const device = await OlmDevice.start(persistentConfig({ passphrase: undefined, storeName: 'ghost-2' }));
    await device.call('uploadKeys');
    await device.stop();
    const raw = await PersistentIndexedDb.open(await backend.journal(), vaultOf(atRestKey));
    await sampleDatabase(raw).then((db) => db.close());
    await raw.flush();
    await backend.closeAll();

    // The control: opened with the key, the same rows hold the device's ids as IndexedDB keys and
    // its account (private keys included) as base64 JSON, since no passphrase encrypted them.
    const withKey = await PersistentIndexedDb.open(await backend.journal(), vaultOf(atRestKey));
    const opened = serialize(await everyValue(withKey, 'ghost-2::matrix-sdk-crypto'));
    for (const clear of ['GHOSTDEV', 'ghost_alice', ACCOUNT_JSON_BASE64])
      expect(opened.includes(clear)).toBe(true);
    await backend.closeAll();

    const columns = Buffer.concat(await backend.cryptoColumns());
    for (const secret of [
      'PLAINTEXT-MARKER-1',
      'pickle s1',
      ACCOUNT_JSON_BASE64,
      device.identity.curve25519,
      device.identity.ed25519,
      'ghost_alice',
      'GHOSTDEV',
      'curve25519',
    ]) {
      expect(columns.includes(secret)).toBe(false);
    }

    const refusal = PersistentIndexedDb.open(await backend.journal(), vaultOf(randomBytes(32)));
    await expect(refusal).rejects.toBeInstanceOf(CryptoStoreError);
    await expect(refusal).rejects.toMatchObject({ code: 'matrix_crypto_store_unreadable' });
    await expect(
      OlmDevice.start(persistentConfig({ atRestKey: randomBytes(32).toString('base64') })),
    ).rejects.toMatchObject({
      code: 'matrix_crypto_store_unreadable',
    });
  }, 60_000);

  it('turns a write the database refuses into an aborted IndexedDB transaction, rolled back in memory', async () => {
    if (backend.name === 'postgres') return; // queued writes fail at flush: the next test
    const journal = await backend.journal();
    let refuse = false;
    const flaky: CryptoJournal = {
      durability: journal.durability,
      load: () => journal.load(),
      flush: () => journal.flush(),
      write(changes: readonly JournalChange[]) {
        if (refuse) throw new Error('disk full');
        journal.write(changes);
      },
    };
    const refusals: CryptoStoreError[] = [];
    const idb = await PersistentIndexedDb.open(flaky, vaultOf(atRestKey), {
      onWriteRefused: (e) => refusals.push(e),
    });
    const db = await openIdb(idb, 'ghost-3', 1, (conn) => void conn.createObjectStore('plain'));
    await write(db, ['plain'], (tx) => void tx.objectStore('plain').put('kept', 'k'));
    refuse = true;
    await expect(write(db, ['plain'], (tx) => void tx.objectStore('plain').put('lost', 'k'))).rejects.toThrow(
      'aborted: UnknownError',
    );
    refuse = false;
    expect(refusals.map((e) => [e.code, e.message])).toEqual([
      ['matrix_crypto_store_write_failed', expect.stringContaining('disk full')],
    ]);
    expect(await done(db.transaction('plain', 'readonly').objectStore('plain').get('k'))).toBe('kept');
    await write(db, ['plain'], (tx) => void tx.objectStore('plain').put('later', 'l'));
    db.close();
  });

  it('makes flush reject, and later transactions abort, once a queued write has failed', async () => {
    if (backend.name === 'sqlite') return; // synchronous writes abort at once: the previous test
    const journal = await backend.journal();
    const idb = await PersistentIndexedDb.open(journal, vaultOf(atRestKey));
    const db = await openIdb(idb, 'ghost-4', 1, (conn) => void conn.createObjectStore('plain'));
    await idb.flush();
    await backend.closeAll(); // the database goes away under the store
    await write(db, ['plain'], (tx) => void tx.objectStore('plain').put('queued', 'k')).catch(
      () => undefined,
    );
    await expect(idb.flush()).rejects.toMatchObject({ code: 'matrix_crypto_store_write_failed' });
    await expect(write(db, ['plain'], (tx) => void tx.objectStore('plain').put('next', 'n'))).rejects.toThrow(
      'aborted',
    );
    db.close();
  });
});
