/**
 * What the persistent IndexedDB (idb-persistence.ts) needs from the bridge's database: read every
 * row once at start, and write one IndexedDB transaction's changes as one database transaction.
 * Rows arrive sealed (idb-codec.ts); the journal never sees plaintext. Implemented on SQLite
 * (crypto-store-sqlite.ts, synchronous) and PostgreSQL (crypto-store-postgres.ts, queued).
 */

/** A change to the rows, in the order it must apply. */
export type JournalChange =
  /** Insert or replace a database's sealed schema row. */
  | { readonly kind: 'schema'; readonly db: string; readonly sealed: Uint8Array }
  /** Insert or replace one record row. */
  | {
      readonly kind: 'put';
      readonly db: string;
      readonly store: string;
      readonly keyId: number;
      readonly sealed: Uint8Array;
    }
  /** Delete one record row. */
  | { readonly kind: 'delete'; readonly db: string; readonly keyId: number }
  /** Delete every record row of one object store. */
  | { readonly kind: 'clear'; readonly db: string; readonly store: string }
  /** Delete a database's schema row and every record row of it. */
  | { readonly kind: 'drop'; readonly db: string };

/** One persisted database, as read at start. */
export interface PersistedDatabase {
  readonly db: string;
  readonly schema: Uint8Array;
  readonly records: readonly {
    readonly store: string;
    readonly keyId: number;
    readonly sealed: Uint8Array;
  }[];
}

export interface CryptoJournal {
  /**
   * `sync`: `write` is durable when it returns (SQLite). `queued`: `write` only queues, in call
   * order, and `flush` is the barrier (PostgreSQL).
   */
  readonly durability: 'sync' | 'queued';
  /** Every persisted database. Called once, before any write. */
  load(): Promise<PersistedDatabase[]>;
  /**
   * The changes of one committed IndexedDB transaction, as one database transaction. Called during
   * the IndexedDB commit: must not wait. `sync`: throws when the database refused them (nothing
   * applied). `queued`: a failure is reported by the next `flush`.
   */
  write(changes: readonly JournalChange[]): void;
  /** Resolves once every write made so far is durable; rejects if one failed (and keeps rejecting). */
  flush(): Promise<void>;
}
