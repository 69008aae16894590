-- Profiles (docs/PROTOCOL.md section 5.8): what the gateway holds about every account and shows its
-- contacts. Not end-to-end encrypted: the gateway's own data, as on WhatsApp.

-- An account's push name and about text (a row once either is set; removed with the account).
CREATE TABLE profiles (
  account_jid TEXT PRIMARY KEY REFERENCES accounts(jid) ON DELETE CASCADE,
  push_name TEXT,                                        -- 1 to 25 characters; NULL: none
  about TEXT                                             -- 1 to 139 characters; NULL: none
) STRICT;

-- The current picture of a user or a group: one per owner; its id changes with the picture, and an
-- id that is no longer current is served 404.
CREATE TABLE pictures (
  owner_jid TEXT PRIMARY KEY,                            -- a user JID or a group JID
  id TEXT NOT NULL UNIQUE,                               -- a token of A-Z a-z 0-9 _ -
  image BLOB NOT NULL,                                   -- the JPEG, at most 262,144 bytes
  set_at INTEGER NOT NULL
) STRICT;

-- Accounts that exchanged a 1:1 message (either direction), both ways round: who hears of the other's
-- profile changes. Kept until one of them is removed (the queue and seen_messages forget sooner).
CREATE TABLE conversations (
  account_jid TEXT NOT NULL,
  peer_jid TEXT NOT NULL,
  PRIMARY KEY (account_jid, peer_jid)
) STRICT;

-- What is still queued tells of conversations before this migration (the sender's device JID made bare).
INSERT OR IGNORE INTO conversations (account_jid, peer_jid)
  SELECT recipient_jid, CASE WHEN instr(from_jid, ':') > 0
    THEN substr(from_jid, 1, instr(from_jid, ':') - 1) || substr(from_jid, instr(from_jid, '@'))
    ELSE from_jid END
  FROM queue WHERE kind = 'message' AND participant IS NULL;
INSERT OR IGNORE INTO conversations (account_jid, peer_jid) SELECT peer_jid, account_jid FROM conversations;
DELETE FROM conversations WHERE account_jid = peer_jid;

-- A delivered message's notify: the sender's push name when the gateway stored the message.
ALTER TABLE queue ADD COLUMN notify TEXT;
