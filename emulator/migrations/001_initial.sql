-- The emulator's state. It holds ciphertext and public keys only: message bodies are the Signal
-- ciphertext bytes exactly as the sender gave them; no plaintext ever reaches this file.

-- Accounts that exist: native users (created by the operator or a test) and enlisted third-party accounts.
CREATE TABLE accounts (
  jid TEXT PRIMARY KEY,                                  -- bare JID: 4915112345678@wa.interop, alice@prov.interop
  kind TEXT NOT NULL CHECK (kind IN ('native', 'third_party')),
  phone TEXT UNIQUE,                                     -- E.164 with "+", native users only
  enlisted_identity_key BLOB,                            -- the identity key proven at enlistment (third party)
  created_at INTEGER NOT NULL
) STRICT;

-- Devices of an account: a row once the device connects; keys once it uploads them.
CREATE TABLE devices (
  account_jid TEXT NOT NULL REFERENCES accounts(jid) ON DELETE CASCADE,
  device INTEGER NOT NULL,
  registration_id INTEGER,
  identity_key BLOB,
  signed_prekey_id INTEGER,
  signed_prekey BLOB,
  signed_prekey_signature BLOB,
  keys_updated_at INTEGER,
  PRIMARY KEY (account_jid, device)
) STRICT;

CREATE TABLE one_time_prekeys (
  account_jid TEXT NOT NULL,
  device INTEGER NOT NULL,
  key_id INTEGER NOT NULL,
  public_key BLOB NOT NULL,
  PRIMARY KEY (account_jid, device, key_id),
  FOREIGN KEY (account_jid, device) REFERENCES devices(account_jid, device) ON DELETE CASCADE
) STRICT;

-- watcher_jid has fetched subject_jid's keys or exchanged messages with it: it hears of identity changes.
CREATE TABLE contacts (
  subject_jid TEXT NOT NULL,
  watcher_jid TEXT NOT NULL,
  PRIMARY KEY (subject_jid, watcher_jid)
) STRICT;
CREATE INDEX contacts_by_watcher ON contacts (watcher_jid);

-- What waits for one recipient device, delivered in seq order. Messages and notifications stay until
-- the device acks them; receipts go once written to the device's connection.
CREATE TABLE queue (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  recipient_jid TEXT NOT NULL,                           -- bare JID
  recipient_device INTEGER NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('message', 'receipt', 'notification')),
  stanza_id TEXT NOT NULL,                               -- the id the recipient acks
  from_jid TEXT NOT NULL,
  msg_type TEXT,                                         -- message: text | media
  t INTEGER NOT NULL,
  enc_type TEXT,                                         -- message: pkmsg | msg | skmsg
  enc_device INTEGER,
  media_type TEXT,
  payload BLOB NOT NULL,                                 -- message: the ciphertext; else the encoded stanza
  stored_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX queue_by_recipient ON queue (recipient_jid, recipient_device, seq);
CREATE INDEX queue_by_expiry ON queue (expires_at);

-- (sender, message id) already accepted: a resend is acked again but not stored twice.
CREATE TABLE seen_messages (
  sender_jid TEXT NOT NULL,
  message_id TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (sender_jid, message_id)
) STRICT;
CREATE INDEX seen_messages_by_expiry ON seen_messages (expires_at);
