-- The bridge's state. Times are milliseconds since the Unix epoch.

-- Local users who opted in, each with its own interop account, Signal identity and Noise key.
CREATE TABLE puppets (
  id               INTEGER PRIMARY KEY,
  local_id         TEXT    NOT NULL UNIQUE,   -- Matrix user id or XMPP bare JID
  network          TEXT    NOT NULL CHECK (network IN ('matrix', 'xmpp')),
  account_id       TEXT    NOT NULL UNIQUE,   -- provider-scoped interop account id
  device_id        INTEGER NOT NULL DEFAULT 1,
  registration_id  INTEGER NOT NULL,
  identity_public  BLOB    NOT NULL,
  identity_private BLOB    NOT NULL,
  noise_public     BLOB    NOT NULL,
  noise_private    BLOB    NOT NULL,
  gateway_static   BLOB,                      -- cached gateway Noise static key, for IK
  state            TEXT    NOT NULL DEFAULT 'enlisting'
                     CHECK (state IN ('enlisting', 'enlisted', 'opting_out')),
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL
);

-- A local conversation bridged to one remote chat.
CREATE TABLE portals (
  id          INTEGER PRIMARY KEY,
  puppet_id   INTEGER NOT NULL REFERENCES puppets (id) ON DELETE CASCADE,
  remote_jid  TEXT    NOT NULL,
  local_chat  TEXT,                           -- Matrix room id or XMPP contact JID
  name        TEXT,
  created_at  INTEGER NOT NULL,
  UNIQUE (puppet_id, remote_jid)
);
CREATE UNIQUE INDEX portals_local_chat ON portals (puppet_id, local_chat) WHERE local_chat IS NOT NULL;

-- Signal protocol state, per puppet.
CREATE TABLE signal_prekeys (
  puppet_id   INTEGER NOT NULL REFERENCES puppets (id) ON DELETE CASCADE,
  key_id      INTEGER NOT NULL,
  public_key  BLOB    NOT NULL,
  private_key BLOB    NOT NULL,
  uploaded    INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (puppet_id, key_id)
) WITHOUT ROWID;

CREATE TABLE signal_signed_prekeys (
  puppet_id   INTEGER NOT NULL REFERENCES puppets (id) ON DELETE CASCADE,
  key_id      INTEGER NOT NULL,
  public_key  BLOB    NOT NULL,
  private_key BLOB    NOT NULL,
  signature   BLOB    NOT NULL,
  created_at  INTEGER NOT NULL,
  PRIMARY KEY (puppet_id, key_id)
) WITHOUT ROWID;

CREATE TABLE signal_sessions (
  puppet_id  INTEGER NOT NULL REFERENCES puppets (id) ON DELETE CASCADE,
  address    TEXT    NOT NULL,                -- remote user and device, e.g. 4915112345678.1
  record     BLOB    NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (puppet_id, address)
) WITHOUT ROWID;

CREATE TABLE signal_identities (
  puppet_id    INTEGER NOT NULL REFERENCES puppets (id) ON DELETE CASCADE,
  remote_user  TEXT    NOT NULL,
  identity_key BLOB    NOT NULL,
  trust        TEXT    NOT NULL CHECK (trust IN ('trusted', 'changed', 'blocked')),
  first_seen   INTEGER NOT NULL,
  changed_at   INTEGER NOT NULL,
  PRIMARY KEY (puppet_id, remote_user)
) WITHOUT ROWID;

-- Outgoing events, written before any network I/O. `id` is the stable wire message id.
CREATE TABLE outbox (
  id          TEXT    PRIMARY KEY,
  puppet_id   INTEGER NOT NULL REFERENCES puppets (id) ON DELETE CASCADE,
  portal_id   INTEGER NOT NULL REFERENCES portals (id) ON DELETE CASCADE,
  seq         INTEGER NOT NULL,               -- order within the portal
  kind        TEXT    NOT NULL,
  payload     BLOB    NOT NULL,               -- the canonical event, serialized
  state       TEXT    NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'sent', 'delivered', 'read', 'failed')),
  attempts    INTEGER NOT NULL DEFAULT 0,
  error       TEXT,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  UNIQUE (portal_id, seq)
);
CREATE INDEX outbox_queued ON outbox (puppet_id, portal_id, seq) WHERE state = 'queued';

-- Incoming messages, persisted decrypted before the gateway is acknowledged.
CREATE TABLE inbox (
  seq         INTEGER PRIMARY KEY,            -- arrival order
  puppet_id   INTEGER NOT NULL REFERENCES puppets (id) ON DELETE CASCADE,
  sender      TEXT    NOT NULL,
  message_id  TEXT    NOT NULL,
  portal_id   INTEGER REFERENCES portals (id) ON DELETE CASCADE,
  payload     BLOB    NOT NULL,
  state       TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered')),
  received_at INTEGER NOT NULL,
  UNIQUE (puppet_id, sender, message_id)
);
CREATE INDEX inbox_pending ON inbox (puppet_id, seq) WHERE state = 'pending';

-- Remote message ids <-> local event ids, for replies, edits, reactions and receipts.
CREATE TABLE message_map (
  portal_id  INTEGER NOT NULL REFERENCES portals (id) ON DELETE CASCADE,
  remote_id  TEXT    NOT NULL,
  local_id   TEXT    NOT NULL,
  sender     TEXT    NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (portal_id, remote_id)
);
CREATE UNIQUE INDEX message_map_local ON message_map (portal_id, local_id);

-- Application service transactions already processed (the homeserver may resend them).
CREATE TABLE appservice_transactions (
  txn_id       TEXT    PRIMARY KEY,
  completed_at INTEGER NOT NULL
) WITHOUT ROWID;
