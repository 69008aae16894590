-- PostgreSQL dialect of ../010_relay_events.sql: what a worker hands the adapters' process
-- (src/cluster/relay.ts), shown and deleted there in order.
CREATE TABLE relay_events (
  seq        bigserial PRIMARY KEY,
  network    text      NOT NULL,
  local_user text      NOT NULL,
  kind       text      NOT NULL,
  body       text      NOT NULL,
  created_at bigint    NOT NULL
);
