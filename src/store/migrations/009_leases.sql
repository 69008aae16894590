-- Leases with fencing tokens, for several bridge processes on one PostgreSQL (src/cluster/):
-- `worker:<id>` says a worker is alive, `puppet:<id>` which worker owns a puppet's gateway
-- connection and Signal session. `fence` grows by one on every change of holder; a write made under
-- a lease names the fence it holds and is refused once the lease has moved on. On SQLite the bridge
-- is one process (the lock file) and the table stays empty: it exists so both dialects have the
-- same schema and `db copy` maps one onto the other.
CREATE TABLE leases (
  name       TEXT    PRIMARY KEY,
  holder     TEXT,
  fence      INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
