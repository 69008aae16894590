/**
 * The crypto store's journal on the bridge's SQLite database (migration 012): each write is one
 * SQLite transaction, committed before `write` returns, so before the IndexedDB transaction's
 * `complete` reaches the crypto machine (WAL, synchronous=NORMAL: a committed transaction survives
 * a crash of the process).
 */
import { preparedStatements, type Db, type Prepared } from '../../../src/store/sql.js';
import type { CryptoJournal, JournalChange, PersistedDatabase } from './crypto-journal.js';

export class SqliteCryptoJournal implements CryptoJournal {
  readonly durability = 'sync';
  readonly #db: Db;
  readonly #sql: Prepared;
  readonly #apply: (changes: readonly JournalChange[]) => void;

  constructor(db: Db) {
    this.#db = db;
    this.#sql = preparedStatements(db);
    this.#apply = db.transaction((changes: readonly JournalChange[]) => {
      for (const c of changes) this.#one(c);
    });
  }

  load(): Promise<PersistedDatabase[]> {
    const schemas = this.#sql(
      'SELECT db_name, sealed FROM matrix_crypto_idb_schema ORDER BY db_name',
    ).all() as {
      db_name: string;
      sealed: Buffer;
    }[];
    const records = this.#sql(
      'SELECT db_name, store_name, key_id, sealed FROM matrix_crypto_idb ORDER BY db_name, key_id',
    ).all() as { db_name: string; store_name: string; key_id: number; sealed: Buffer }[];
    return Promise.resolve(
      schemas.map((s) => ({
        db: s.db_name,
        schema: s.sealed,
        records: records
          .filter((r) => r.db_name === s.db_name)
          .map((r) => ({ store: r.store_name, keyId: r.key_id, sealed: r.sealed })),
      })),
    );
  }

  write(changes: readonly JournalChange[]): void {
    if (changes.length > 0) this.#apply(changes);
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  #one(c: JournalChange): void {
    switch (c.kind) {
      case 'schema':
        this.#sql(
          `INSERT INTO matrix_crypto_idb_schema (db_name, sealed) VALUES (?, ?)
           ON CONFLICT (db_name) DO UPDATE SET sealed = excluded.sealed`,
        ).run(c.db, c.sealed);
        return;
      case 'put':
        this.#sql(
          `INSERT INTO matrix_crypto_idb (db_name, key_id, store_name, sealed) VALUES (?, ?, ?, ?)
           ON CONFLICT (db_name, key_id) DO UPDATE SET store_name = excluded.store_name, sealed = excluded.sealed`,
        ).run(c.db, c.keyId, c.store, c.sealed);
        return;
      case 'delete':
        this.#sql('DELETE FROM matrix_crypto_idb WHERE db_name = ? AND key_id = ?').run(c.db, c.keyId);
        return;
      case 'clear':
        this.#sql('DELETE FROM matrix_crypto_idb WHERE db_name = ? AND store_name = ?').run(c.db, c.store);
        return;
      case 'drop':
        this.#sql('DELETE FROM matrix_crypto_idb WHERE db_name = ?').run(c.db);
        this.#sql('DELETE FROM matrix_crypto_idb_schema WHERE db_name = ?').run(c.db);
        return;
    }
  }

  /** For tests and tools: the database this journal writes to. */
  get db(): Db {
    return this.#db;
  }
}
