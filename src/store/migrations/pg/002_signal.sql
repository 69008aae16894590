-- PostgreSQL dialect of ../002_signal.sql: Signal key id counters per puppet.
CREATE TABLE signal_key_counters (
  puppet_id             integer PRIMARY KEY REFERENCES puppets (id) ON DELETE CASCADE,
  last_prekey_id        bigint NOT NULL DEFAULT 0,
  last_signed_prekey_id bigint NOT NULL DEFAULT 0
);
