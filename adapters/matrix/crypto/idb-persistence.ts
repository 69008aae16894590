/**
 * An IndexedDB for Node whose data lives in the bridge's database: the crypto machines
 * (matrix-sdk-crypto-wasm's `StoreHandle.open` / `OlmMachine.initFromStore`) keep their Olm account,
 * sessions and room keys in IndexedDB, and Node has none. This is fake-indexeddb (all data in
 * memory, so reads, key order and ranges are fake-indexeddb's own) with write-through persistence:
 *
 * - `open` reads every persisted database, opens each sealed row, and rebuilds the databases in
 *   fake-indexeddb (version, object stores, indexes, records, key generators) before any crypto
 *   machine opens them.
 * - Each committed transaction is journaled as ONE transaction of the bridge's database
 *   (crypto-journal.ts). A `readwrite` transaction writes the final state of the records it touched
 *   (put, add, delete, clear, cursor update and delete); a `versionchange` transaction (creation,
 *   Rust store migrations) writes the whole database again, schema included.
 *
 * The durability contract, which the bridge must keep:
 * - SQLite (`durability: 'sync'`): the journal commits inside the IndexedDB commit, before the
 *   transaction's `complete` event reaches the crypto machine; once a machine's call has returned,
 *   a SIGKILL loses none of its effects. If the database refuses the write, the IndexedDB
 *   transaction is aborted instead (its changes rolled back in memory) and the machine's call fails.
 * - PostgreSQL (`durability: 'queued'`): the journal writes are queued in commit order and
 *   `flush()` is the barrier. The bridge awaits `flush()` after a machine's calls and BEFORE it
 *   acknowledges anything that depends on them: the appservice transaction carrying to-device
 *   messages (else the homeserver drops them, and a lost Olm message cannot be sent again), a
 *   request marked as sent, an encrypted event sent out. A failed write makes `flush` reject and
 *   every later transaction abort: the bridge must restart (reloading what is durable).
 *
 * The crypto machine only uses `globalThis.indexedDB` (the wasm package takes no factory), so
 * `install()` makes this factory the process's global IndexedDB: one per process, shared by every
 * ghost's and the bot's machine, each under its own database name. Names must be opaque (they are
 * stored in clear): e.g. `ghost-<row id>`, never a Matrix user id.
 *
 * What is sealed (src/util/payload-vault.ts, the operator's at-rest key): every record (its key
 * and its value together, bound to database, object store and key id) and every schema. In clear:
 * the database names, the Rust store's object store names (which kind of state a row is), the
 * number and sizes of rows, and key ids, which the bridge assigns in order of first write, so they
 * say nothing of the keys (user ids, session ids) or their order.
 *
 * How changes are seen: the public methods that write (`IDBObjectStore.put/add/delete/clear`,
 * `IDBCursor.update/delete`) and `IDBDatabase.transaction` are wrapped once per process, and act
 * only for connections opened through a `PersistentIndexedDb`. A delete learns which keys it
 * removes through a `getAllKeys` of the same query queued just before it. At commit, the touched
 * records' final state is read from fake-indexeddb's internals (`_rawDatabase`, `_rawObjectStore`,
 * `records`, `keyGenerator`), as is the whole database after a versionchange, and a failed write
 * aborts through `_rollbackLog`/`_abort`: fake-indexeddb is pinned to an exact version, and the tests
 * (test/unit/matrix-crypto-store.test.ts) catch a change of those internals.
 */
import { IDBDatabase, IDBFactory, IDBObjectStore, IDBCursor } from 'fake-indexeddb';
import * as fakeIndexedDb from 'fake-indexeddb';
import type { PayloadVault } from '../../../src/util/payload-vault.js';
import type { CryptoJournal, JournalChange } from './crypto-journal.js';
import {
  decodeKey,
  encodeKey,
  openRecord,
  openSealed,
  recordRowId,
  schemaRowId,
  sealRecord,
  type IdbKey,
} from './idb-codec.js';
import { CryptoStoreError } from './errors.js';

// ---- The parts of fake-indexeddb this file reads (6.2.8; see the header) ----

type KeyPath = string | string[] | null;
interface RawRecord {
  readonly key: IdbKey;
  readonly value: unknown;
}
interface RawIndex {
  readonly name: string;
  readonly keyPath: string | string[];
  readonly multiEntry: boolean;
  readonly unique: boolean;
  readonly deleted: boolean;
}
interface RawObjectStore {
  readonly name: string;
  readonly keyPath: KeyPath;
  readonly autoIncrement: boolean;
  readonly deleted: boolean;
  readonly keyGenerator: { num: number } | null;
  readonly rawIndexes: Map<string, RawIndex>;
  readonly records: { get(key: unknown): RawRecord | undefined; values(): Iterable<RawRecord> };
}
interface RawDatabase {
  readonly name: string;
  readonly version: number;
  readonly rawObjectStores: Map<string, RawObjectStore>;
}
interface Listening {
  addEventListener(type: string, listener: (event: { stopImmediatePropagation(): void }) => void): void;
}
interface Request extends Listening {
  readonly result: unknown;
  readonly error: unknown;
  readonly transaction: Transaction | null;
}
interface Connection {
  readonly _rawDatabase: RawDatabase;
  close(): void;
  createObjectStore(name: string, options: { keyPath: KeyPath; autoIncrement: boolean }): ObjectStore;
}
interface Transaction extends Listening {
  readonly mode: 'readonly' | 'readwrite' | 'versionchange';
  readonly db: Connection;
  readonly _rollbackLog: unknown[];
  _abort(errorName: string | null): void;
}
interface ObjectStore {
  readonly name: string;
  readonly transaction: Transaction;
  readonly _rawObjectStore: RawObjectStore & { keyGenerator: { num: number } | null };
  put(value: unknown, key?: unknown): Request;
  getAllKeys(query: unknown): Request;
  createIndex(
    name: string,
    keyPath: string | string[],
    options: { unique: boolean; multiEntry: boolean },
  ): unknown;
}
interface Cursor {
  readonly source: ObjectStore | { readonly objectStore: ObjectStore; readonly _rawIndex: unknown };
  readonly primaryKey: unknown;
}
interface Factory {
  open(name: string, version?: number): Request;
  deleteDatabase(name: string): Request;
}

// ---- The schema row ----

interface IndexSchema {
  name: string;
  keyPath: string | string[];
  unique: boolean;
  multiEntry: boolean;
}
interface StoreSchema {
  name: string;
  keyPath: KeyPath;
  autoIncrement: boolean;
  /** The key generator's current number (autoIncrement): deleting the highest key keeps it. */
  keyGenerator: number | null;
  indexes: IndexSchema[];
}
interface DatabaseSchema {
  version: number;
  stores: StoreSchema[];
}

function schemaOf(raw: RawDatabase): DatabaseSchema {
  const stores = [...raw.rawObjectStores.values()].filter((s) => !s.deleted);
  return {
    version: raw.version,
    stores: stores.map((s) => ({
      name: s.name,
      keyPath: s.keyPath,
      autoIncrement: s.autoIncrement,
      keyGenerator: s.keyGenerator?.num ?? null,
      indexes: [...s.rawIndexes.values()]
        .filter((i) => !i.deleted)
        .map((i) => ({ name: i.name, keyPath: i.keyPath, unique: i.unique, multiEntry: i.multiEntry })),
    })),
  };
}

// ---- Per database: the key ids rows are stored under ----

class KeyIds {
  /** store name -> canonical key (hex) -> key id */
  readonly byStore = new Map<string, Map<string, number>>();
  /** What each autoIncrement store's key generator was when last written. */
  readonly generators = new Map<string, number | null>();
  next = 1;

  of(store: string): Map<string, number> {
    let m = this.byStore.get(store);
    if (!m) this.byStore.set(store, (m = new Map()));
    return m;
  }
}

/** What one readwrite transaction touched. */
class Touched {
  readonly stores = new Map<string, { cleared: boolean; keys: Map<string, unknown> }>();

  of(store: string): { cleared: boolean; keys: Map<string, unknown> } {
    let t = this.stores.get(store);
    if (!t) this.stores.set(store, (t = { cleared: false, keys: new Map() }));
    return t;
  }
  key(store: string, key: unknown): void {
    this.of(store).keys.set(encodeKey(key).toString('hex'), key);
  }
}

// ---- The wrappers (installed once per process) ----

/** The persistence each connection opened through a PersistentIndexedDb belongs to. */
const owners = new WeakMap<Connection, PersistentIndexedDb>();
/** What each journaled readwrite transaction touched. */
const touchedBy = new WeakMap<Transaction, Touched>();
let wrapped = false;

function wrapPrototypes(): void {
  if (wrapped) return;
  wrapped = true;
  const db = IDBDatabase.prototype as { transaction: (...args: unknown[]) => Transaction };
  const transaction = db.transaction;
  db.transaction = function (this: Connection, ...args: unknown[]): Transaction {
    const tx = transaction.apply(this, args);
    const owner = owners.get(this);
    if (owner && tx.mode === 'readwrite') owner.track(tx);
    return tx;
  };

  const store = IDBObjectStore.prototype as Record<string, (...args: unknown[]) => Request>;
  for (const method of ['put', 'add'] as const) {
    const original = store[method]!;
    store[method] = function (this: ObjectStore, ...args: unknown[]): Request {
      const request = original.apply(this, args);
      const touched = touchedBy.get(this.transaction);
      if (touched) request.addEventListener('success', () => touched.key(this.name, request.result));
      return request;
    };
  }
  const storeDelete = store.delete!;
  store.delete = function (this: ObjectStore, ...args: unknown[]): Request {
    const touched = touchedBy.get(this.transaction);
    if (!touched) return storeDelete.apply(this, args);
    // Queued just before the delete, so it lists exactly the keys the delete removes.
    const keys = this.getAllKeys(args[0]);
    const request = storeDelete.apply(this, args);
    keys.addEventListener('success', () => {
      for (const k of keys.result as unknown[]) touched.key(this.name, k);
    });
    return request;
  };
  const clear = store.clear!;
  store.clear = function (this: ObjectStore, ...args: unknown[]): Request {
    const request = clear.apply(this, args);
    const touched = touchedBy.get(this.transaction);
    if (touched) request.addEventListener('success', () => (touched.of(this.name).cleared = true));
    return request;
  };

  const cursor = IDBCursor.prototype as Record<string, (...args: unknown[]) => Request>;
  for (const method of ['update', 'delete'] as const) {
    const original = cursor[method]!;
    cursor[method] = function (this: Cursor, ...args: unknown[]): Request {
      const objectStore = '_rawIndex' in this.source ? this.source.objectStore : this.source;
      const key = this.primaryKey;
      const request = original.apply(this, args);
      const touched = touchedBy.get(objectStore.transaction);
      if (touched) request.addEventListener('success', () => touched.key(objectStore.name, key));
      return request;
    };
  }
}

// ---- The persistent IndexedDB ----

export interface PersistenceOptions {
  /**
   * Told when the database refused a transaction's write (the machine sees the transaction
   * aborted, `UnknownError`): for the log. Called during fake-indexeddb's commit: must not throw.
   */
  onWriteRefused?: (err: CryptoStoreError) => void;
}

const asStoreError = (err: unknown): CryptoStoreError =>
  err instanceof CryptoStoreError
    ? err
    : new CryptoStoreError(
        'matrix_crypto_store_write_failed',
        `the Matrix crypto store could not write to the bridge's database: ${(err as Error).message}; restart the bridge once the database is healthy`,
        { cause: err },
      );

export class PersistentIndexedDb {
  /** The IndexedDB factory to hand to the crypto machines (`install` makes it the global one). */
  readonly factory: Factory;
  readonly #journal: CryptoJournal;
  readonly #vault: PayloadVault;
  readonly #ids = new Map<string, KeyIds>();
  readonly #onWriteRefused: (err: CryptoStoreError) => void;
  #failure: CryptoStoreError | undefined;

  private constructor(journal: CryptoJournal, vault: PayloadVault, options: PersistenceOptions) {
    wrapPrototypes();
    this.#journal = journal;
    this.#vault = vault;
    this.#onWriteRefused = options.onWriteRefused ?? (() => undefined);
    const factory = new IDBFactory() as Factory;
    const open = factory.open.bind(factory);
    const deleteDatabase = factory.deleteDatabase.bind(factory);
    factory.open = (name: string, version?: number): Request => {
      this.#usable();
      const request = version === undefined ? open(name) : open(name, version);
      // Listeners added now run before any the caller adds.
      request.addEventListener('upgradeneeded', () => {
        const connection = request.result as Connection;
        owners.set(connection, this);
        request.transaction?.addEventListener('complete', (event) => this.#rewrite(connection, event));
      });
      request.addEventListener('success', () => owners.set(request.result as Connection, this));
      return request;
    };
    factory.deleteDatabase = (name: string): Request => {
      this.#usable();
      const request = deleteDatabase(name);
      request.addEventListener('success', () => this.#drop(name));
      return request;
    };
    this.factory = factory;
  }

  /**
   * Reads every persisted database into memory; throws `matrix_crypto_store_unreadable` when a row
   * does not open with `vault`'s key. Nothing is written until a crypto machine commits something.
   */
  static async open(
    journal: CryptoJournal,
    vault: PayloadVault,
    options: PersistenceOptions = {},
  ): Promise<PersistentIndexedDb> {
    const idb = new PersistentIndexedDb(journal, vault, options);
    for (const persisted of await journal.load()) await idb.#restore(persisted);
    return idb;
  }

  get durability(): 'sync' | 'queued' {
    return this.#journal.durability;
  }

  /**
   * Resolves once every committed transaction is durable in the bridge's database (at once on
   * SQLite). Await it before acknowledging anything that depends on a crypto machine's state.
   */
  async flush(): Promise<void> {
    try {
      await this.#journal.flush();
    } catch (err) {
      throw this.#fail(err);
    }
    if (this.#failure) throw this.#failure;
  }

  /**
   * Makes this factory `globalThis.indexedDB` (with fake-indexeddb's IDBKeyRange and the other
   * classes), which is where matrix-sdk-crypto-wasm looks for it. Refuses to replace another one.
   */
  install(): void {
    const g = globalThis as Record<string, unknown>;
    if (g.indexedDB !== undefined && g.indexedDB !== this.factory) {
      throw new CryptoStoreError(
        'matrix_crypto_store_global',
        'another IndexedDB is already installed in this process (globalThis.indexedDB): the Matrix crypto store must be the only one',
      );
    }
    const { default: _default, indexedDB: _idb, ...classes } = fakeIndexedDb as Record<string, unknown>;
    for (const [name, value] of Object.entries(classes)) if (name.startsWith('IDB')) g[name] = value;
    g.indexedDB = this.factory;
  }

  /** Removes the global `install` set (tests). */
  uninstall(): void {
    const g = globalThis as Record<string, unknown>;
    if (g.indexedDB === this.factory) delete g.indexedDB;
  }

  /** @internal Starts journaling a readwrite transaction of one of this persistence's connections. */
  track(tx: Transaction): void {
    const touched = new Touched();
    touchedBy.set(tx, touched);
    tx.addEventListener('complete', (event) => this.#commit(tx, touched, event));
  }

  #usable(): void {
    if (this.#failure) throw this.#failure;
  }

  #fail(err: unknown): CryptoStoreError {
    this.#failure ??= asStoreError(err);
    return this.#failure;
  }

  /**
   * A readwrite transaction committed in memory: its touched records' final state, as one write.
   * On SQLite a refused write aborts the transaction instead: the machine sees an abort, and the
   * memory is rolled back to what the database holds.
   */
  #commit(tx: Transaction, touched: Touched, event: { stopImmediatePropagation(): void }): void {
    const raw = tx.db._rawDatabase;
    const ids = this.#idsOf(raw.name);
    const changes: JournalChange[] = [];
    // Key ids change only once the write succeeded.
    const assign: [Map<string, number>, string, number | undefined][] = [];
    let next = ids.next;
    let schemaChanged = false;
    for (const [name, t] of touched.stores) {
      const store = raw.rawObjectStores.get(name);
      if (!store) continue;
      const known = ids.of(name);
      if (t.cleared) {
        changes.push({ kind: 'clear', db: raw.name, store: name });
        for (const hex of known.keys()) assign.push([known, hex, undefined]);
      }
      for (const [hex, key] of t.keys) {
        const record = store.records.get(key);
        const id = known.get(hex);
        if (record) {
          const keyId = id ?? next++;
          const sealed = sealRecord(
            this.#vault,
            recordRowId(raw.name, name, keyId),
            Buffer.from(hex, 'hex'),
            record.value,
          );
          changes.push({ kind: 'put', db: raw.name, store: name, keyId, sealed });
          assign.push([known, hex, keyId]);
        } else if (id !== undefined) {
          if (!t.cleared) changes.push({ kind: 'delete', db: raw.name, keyId: id });
          assign.push([known, hex, undefined]);
        }
      }
      if (store.autoIncrement && ids.generators.get(name) !== (store.keyGenerator?.num ?? null))
        schemaChanged = true;
    }
    if (schemaChanged) changes.unshift(this.#schemaChange(raw));
    try {
      if (this.#failure) throw this.#failure;
      this.#journal.write(changes);
    } catch (err) {
      // SQLite refused: nothing diverged once the transaction is rolled back, the store goes on.
      // PostgreSQL (an earlier queued write failed): memory and database differ already; stop.
      if (this.#journal.durability === 'queued' || this.#failure) this.#fail(err);
      this.#onWriteRefused(asStoreError(err));
      event.stopImmediatePropagation();
      tx._abort('UnknownError');
      return;
    }
    ids.next = next;
    for (const [known, hex, keyId] of assign) {
      if (keyId === undefined) known.delete(hex);
      else known.set(hex, keyId);
    }
    if (schemaChanged)
      for (const s of raw.rawObjectStores.values()) ids.generators.set(s.name, s.keyGenerator?.num ?? null);
  }

  /**
   * A versionchange transaction committed: the whole database again (schema and every record),
   * as one write. Rare (a store's creation, the Rust store's migrations). Its `complete` cannot be
   * turned into an abort (fake-indexeddb has already finished the open): a refused write stops the
   * store, and every later call fails until the bridge restarts.
   */
  #rewrite(connection: Connection, event: { stopImmediatePropagation(): void }): void {
    const raw = connection._rawDatabase;
    const ids = new KeyIds();
    const changes: JournalChange[] = [{ kind: 'drop', db: raw.name }, this.#schemaChange(raw)];
    for (const store of raw.rawObjectStores.values()) {
      if (store.deleted) continue;
      ids.generators.set(store.name, store.keyGenerator?.num ?? null);
      const known = ids.of(store.name);
      for (const record of store.records.values()) {
        const key = encodeKey(record.key);
        const keyId = ids.next++;
        known.set(key.toString('hex'), keyId);
        changes.push({
          kind: 'put',
          db: raw.name,
          store: store.name,
          keyId,
          sealed: sealRecord(this.#vault, recordRowId(raw.name, store.name, keyId), key, record.value),
        });
      }
    }
    try {
      this.#usable();
      this.#journal.write(changes);
    } catch (err) {
      this.#fail(err); // not thrown: this runs in fake-indexeddb's event dispatch
      event.stopImmediatePropagation();
      return;
    }
    this.#ids.set(raw.name, ids);
  }

  #drop(name: string): void {
    try {
      this.#journal.write([{ kind: 'drop', db: name }]);
    } catch (err) {
      this.#fail(err); // not thrown: this runs in fake-indexeddb's event dispatch
    }
    this.#ids.delete(name);
  }

  #schemaChange(raw: RawDatabase): JournalChange {
    const plain = Buffer.from(JSON.stringify(schemaOf(raw)), 'utf8');
    return { kind: 'schema', db: raw.name, sealed: this.#vault.seal(schemaRowId(raw.name), plain) };
  }

  #idsOf(db: string): KeyIds {
    let ids = this.#ids.get(db);
    if (!ids) this.#ids.set(db, (ids = new KeyIds()));
    return ids;
  }

  /** Rebuilds one persisted database in fake-indexeddb, through its own API, unjournaled. */
  async #restore(persisted: {
    db: string;
    schema: Uint8Array;
    records: readonly { store: string; keyId: number; sealed: Uint8Array }[];
  }): Promise<void> {
    const name = persisted.db;
    const schema = JSON.parse(
      Buffer.from(openSealed(this.#vault, schemaRowId(name), persisted.schema)).toString('utf8'),
    ) as DatabaseSchema;
    const ids = new KeyIds();
    const byStore = new Map<string, { key: IdbKey; value: unknown }[]>();
    for (const row of persisted.records) {
      const { key, value } = openRecord(this.#vault, recordRowId(name, row.store, row.keyId), row.sealed);
      ids.of(row.store).set(key.toString('hex'), row.keyId);
      ids.next = Math.max(ids.next, row.keyId + 1);
      let list = byStore.get(row.store);
      if (!list) byStore.set(row.store, (list = []));
      list.push({ key: decodeKey(key), value });
    }
    // The prototype's open, not the wrapped one: loading is not a change to journal.
    const request = (IDBFactory.prototype as Factory).open.call(this.factory, name, schema.version);
    await new Promise<void>((resolve, reject) => {
      request.addEventListener('upgradeneeded', () => {
        const connection = request.result as Connection;
        for (const s of schema.stores) {
          const store = connection.createObjectStore(s.name, {
            keyPath: s.keyPath,
            autoIncrement: s.autoIncrement,
          });
          for (const i of s.indexes)
            store.createIndex(i.name, i.keyPath, { unique: i.unique, multiEntry: i.multiEntry });
          for (const r of byStore.get(s.name) ?? []) {
            if (s.keyPath === null) store.put(r.value, r.key);
            else store.put(r.value);
          }
          if (store._rawObjectStore.keyGenerator && s.keyGenerator !== null) {
            store._rawObjectStore.keyGenerator.num = s.keyGenerator;
          }
          ids.generators.set(s.name, s.keyGenerator);
        }
      });
      request.addEventListener('success', () => {
        (request.result as Connection).close();
        resolve();
      });
      request.addEventListener('error', () =>
        reject(
          new CryptoStoreError(
            'matrix_crypto_store_unreadable',
            `the Matrix crypto store's database ${name} could not be rebuilt: ${String(request.error)}`,
          ),
        ),
      );
    });
    this.#ids.set(name, ids);
  }
}
