-- PostgreSQL dialect of ../012_matrix_crypto.sql.
CREATE TABLE matrix_crypto_idb_schema (
  db_name text PRIMARY KEY,
  sealed bytea NOT NULL
);

CREATE TABLE matrix_crypto_idb (
  db_name text NOT NULL REFERENCES matrix_crypto_idb_schema (db_name) ON DELETE CASCADE,
  key_id bigint NOT NULL,
  store_name text NOT NULL,
  sealed bytea NOT NULL,
  PRIMARY KEY (db_name, key_id)
);
CREATE INDEX matrix_crypto_idb_store ON matrix_crypto_idb (db_name, store_name);
