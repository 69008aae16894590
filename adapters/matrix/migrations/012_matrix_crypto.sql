-- The Matrix crypto store (adapters/matrix/crypto/): the IndexedDB databases of the ghosts' and the
-- bot's OlmMachines (matrix-sdk-crypto-wasm), kept durable here. Every payload is sealed with the
-- operator's at-rest key: a database's schema (version, object stores, indexes, key generators) as
-- one row, each record (IndexedDB key and value together) as one row. `key_id` is a number the
-- bridge assigns, so neither the IndexedDB key nor its order is visible; `db_name` is the name the
-- bridge gives the store (opaque), `store_name` the Rust store's own table name.
CREATE TABLE matrix_crypto_idb_schema (
  db_name TEXT PRIMARY KEY,
  sealed BLOB NOT NULL
);

CREATE TABLE matrix_crypto_idb (
  db_name TEXT NOT NULL REFERENCES matrix_crypto_idb_schema (db_name) ON DELETE CASCADE,
  key_id INTEGER NOT NULL,
  store_name TEXT NOT NULL,
  sealed BLOB NOT NULL,
  PRIMARY KEY (db_name, key_id)
);
CREATE INDEX matrix_crypto_idb_store ON matrix_crypto_idb (db_name, store_name);
