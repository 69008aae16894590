-- What a worker hands the process that runs the adapters (src/cluster/relay.ts), for several
-- bridge processes on one PostgreSQL: the state of a user's outgoing message (sent, delivered,
-- read, failed) and notices for a user, in the order they happened, until the adapters' process
-- has shown them. No message content: ids, states and notices only. On SQLite the bridge is one
-- process and the table stays empty: it exists so both dialects have the same schema.
CREATE TABLE relay_events (
  seq        INTEGER PRIMARY KEY,
  network    TEXT    NOT NULL,
  local_user TEXT    NOT NULL,
  kind       TEXT    NOT NULL,   -- 'delivery' or 'notice'
  body       TEXT    NOT NULL,   -- JSON
  created_at INTEGER NOT NULL
);
