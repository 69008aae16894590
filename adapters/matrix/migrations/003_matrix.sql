-- The Matrix adapter's state (adapters/matrix/store.ts, on SQLite in sqlite-store.ts). Times are milliseconds since the epoch.

-- Events from appservice transactions, written before the transaction is acknowledged, then
-- handled in order per room. `key` is the event id (or a synthetic key for receipts).
CREATE TABLE matrix_inbound (
  seq        INTEGER PRIMARY KEY,
  key        TEXT    NOT NULL UNIQUE,
  room_id    TEXT    NOT NULL,
  kind       TEXT    NOT NULL CHECK (kind IN ('event', 'receipt')),
  payload    TEXT    NOT NULL,                 -- the event as JSON
  state      TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
  attempts   INTEGER NOT NULL DEFAULT 0,
  error      TEXT,
  received_at INTEGER NOT NULL
);
CREATE INDEX matrix_inbound_pending ON matrix_inbound (room_id, seq) WHERE state = 'pending';

-- Rooms the bridge manages: portals (a local user's DM with one contact) and management rooms
-- (a local user's DM with the bridge bot).
CREATE TABLE matrix_rooms (
  room_id        TEXT    PRIMARY KEY,
  kind           TEXT    NOT NULL CHECK (kind IN ('portal', 'management')),
  local_user     TEXT    NOT NULL,
  remote_jid     TEXT,                          -- portals only
  encryption_told INTEGER NOT NULL DEFAULT 0,   -- the user was told the bridge cannot read encrypted rooms
  created_at     INTEGER NOT NULL
);
CREATE UNIQUE INDEX matrix_rooms_portal ON matrix_rooms (local_user, remote_jid) WHERE kind = 'portal';
CREATE UNIQUE INDEX matrix_rooms_management ON matrix_rooms (local_user) WHERE kind = 'management';

-- Ghost users: the Matrix user standing in for one contact.
CREATE TABLE matrix_ghosts (
  user_id     TEXT    PRIMARY KEY,
  jid         TEXT    NOT NULL UNIQUE,
  displayname TEXT,
  registered  INTEGER NOT NULL DEFAULT 0
);

-- Matrix events the bridge sent for incoming events (by the core's remote id): a second delivery
-- of the same remote id is answered from here instead of sending again.
CREATE TABLE matrix_sent (
  local_user TEXT    NOT NULL,
  remote_jid TEXT    NOT NULL,
  remote_id  TEXT    NOT NULL,
  room_id    TEXT    NOT NULL,
  event_id   TEXT    NOT NULL,
  read       INTEGER NOT NULL DEFAULT 0,      -- the local user's read receipt went to the contact
  created_at INTEGER NOT NULL,
  PRIMARY KEY (local_user, remote_jid, remote_id)
);
CREATE INDEX matrix_sent_event ON matrix_sent (room_id, event_id);
