-- Signal sender keys (group messages, src/signal/sender-keys.ts): per puppet, one record per group
-- distribution and sender device, in libsignal's SenderKeyRecord protobuf (up to five chains, each
-- with its skipped message keys). The puppet's own sending chain is the row of its own address.
CREATE TABLE signal_sender_keys (
  puppet_id       INTEGER NOT NULL REFERENCES puppets (id) ON DELETE CASCADE,
  distribution_id TEXT    NOT NULL,   -- the group's distribution UUID, lower case
  sender          TEXT    NOT NULL,   -- the sender's name (a Signal address's user part)
  device          INTEGER NOT NULL,   -- the sender's device id
  record          BLOB    NOT NULL,
  updated_at      INTEGER NOT NULL,
  PRIMARY KEY (puppet_id, distribution_id, sender, device)
) WITHOUT ROWID;
