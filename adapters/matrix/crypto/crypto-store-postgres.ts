/**
 * The crypto store's journal on PostgreSQL (migration 012, pg dialect): each write is queued as one
 * transaction on the database's ordered writer (postgres-database.ts), so the writes land in the
 * order the IndexedDB transactions committed. `flush` is the barrier: it resolves once everything
 * queued before it is committed. A failed write makes every later `flush` reject: the crypto
 * machine's memory then holds state the database does not, and only a restart (reloading what is
 * durable) makes them agree again.
 */
import { sql, type PgDatabase, type Sql } from '../../../src/store/sql.js';
import type { CryptoJournal, JournalChange, PersistedDatabase } from './crypto-journal.js';
import { CryptoStoreError } from './errors.js';

export class PostgresCryptoJournal implements CryptoJournal {
  readonly durability = 'queued';
  readonly #pg: PgDatabase;
  #failure: CryptoStoreError | undefined;

  constructor(pg: PgDatabase) {
    this.#pg = pg;
  }

  async load(): Promise<PersistedDatabase[]> {
    const schemas = await this.#pg.query(
      'SELECT db_name, sealed FROM matrix_crypto_idb_schema ORDER BY db_name',
    );
    const records = await this.#pg.query(
      'SELECT db_name, store_name, key_id, sealed FROM matrix_crypto_idb ORDER BY db_name, key_id',
    );
    return schemas.map((s) => ({
      db: s.db_name as string,
      schema: s.sealed as Buffer,
      records: records
        .filter((r) => r.db_name === s.db_name)
        .map((r) => ({
          store: r.store_name as string,
          keyId: r.key_id as number,
          sealed: r.sealed as Buffer,
        })),
    }));
  }

  write(changes: readonly JournalChange[]): void {
    if (changes.length === 0) return;
    this.#pg.commit(changes.map(statement)).catch((err: unknown) => {
      this.#failure ??= new CryptoStoreError(
        'matrix_crypto_store_write_failed',
        `a write of the Matrix crypto store to ${this.#pg.label} failed: ${(err as Error).message}; restart the bridge once the database is healthy`,
        { cause: err },
      );
    });
  }

  async flush(): Promise<void> {
    await this.#pg.commit([]); // queued after every write asked so far
    if (this.#failure) throw this.#failure;
  }
}

function statement(c: JournalChange): Sql {
  switch (c.kind) {
    case 'schema':
      return sql(
        `INSERT INTO matrix_crypto_idb_schema (db_name, sealed) VALUES ($1, $2)
         ON CONFLICT (db_name) DO UPDATE SET sealed = excluded.sealed`,
        c.db,
        Buffer.from(c.sealed),
      );
    case 'put':
      return sql(
        `INSERT INTO matrix_crypto_idb (db_name, key_id, store_name, sealed) VALUES ($1, $2, $3, $4)
         ON CONFLICT (db_name, key_id) DO UPDATE SET store_name = excluded.store_name, sealed = excluded.sealed`,
        c.db,
        c.keyId,
        c.store,
        Buffer.from(c.sealed),
      );
    case 'delete':
      return sql('DELETE FROM matrix_crypto_idb WHERE db_name = $1 AND key_id = $2', c.db, c.keyId);
    case 'clear':
      return sql('DELETE FROM matrix_crypto_idb WHERE db_name = $1 AND store_name = $2', c.db, c.store);
    case 'drop':
      // The records go with it (ON DELETE CASCADE).
      return sql('DELETE FROM matrix_crypto_idb_schema WHERE db_name = $1', c.db);
  }
}
