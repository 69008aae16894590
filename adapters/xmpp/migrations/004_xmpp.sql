-- The XMPP adapter's tables (adapters/xmpp/store.ts). Keyed by the local user's bare JID, which is
-- the puppet's local id; rows are removed when the user unregisters.

-- The user's gatekeeper contacts as roster items: phone number, the gatekeeper JID it resolved
-- to, and the presence subscription in each direction.
CREATE TABLE xmpp_contacts (
  local_user TEXT NOT NULL,
  contact TEXT NOT NULL,            -- the contact JID's local part: +4915112345678
  remote TEXT NOT NULL,             -- the core's remote: 4915112345678@wa.interop
  name TEXT,
  sub_to INTEGER NOT NULL DEFAULT 0,    -- the user receives the contact's presence
  sub_from INTEGER NOT NULL DEFAULT 0,  -- the contact receives the user's presence
  asked INTEGER NOT NULL DEFAULT 0,     -- the contact has asked the user for a subscription
  created_at INTEGER NOT NULL,
  PRIMARY KEY (local_user, contact)
);
CREATE INDEX xmpp_contacts_remote ON xmpp_contacts (local_user, remote);

-- Incoming events shown to the user, for idempotent delivery: a redelivery of the same remote id
-- returns the stanza id already confirmed by the server instead of sending it again.
CREATE TABLE xmpp_delivered (
  local_user TEXT NOT NULL,
  remote TEXT NOT NULL,
  remote_id TEXT NOT NULL,
  stanza_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (local_user, remote, remote_id)
);
CREATE INDEX xmpp_delivered_created ON xmpp_delivered (created_at);
