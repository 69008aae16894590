-- PostgreSQL dialect of ../011_sender_keys.sql: Signal sender keys, one record per puppet, group
-- distribution and sender device.
CREATE TABLE signal_sender_keys (
  puppet_id       integer NOT NULL REFERENCES puppets (id) ON DELETE CASCADE,
  distribution_id text COLLATE "C" NOT NULL,
  sender          text COLLATE "C" NOT NULL,
  device          bigint  NOT NULL,
  record          bytea   NOT NULL,
  updated_at      bigint  NOT NULL,
  PRIMARY KEY (puppet_id, distribution_id, sender, device)
);
