-- Groups (docs/PROTOCOL.md section 5.7): the gateway holds each group's metadata, never its messages'
-- plaintext. Group messages, receipts and notifications travel through the same per-device queue.

CREATE TABLE groups (
  jid TEXT PRIMARY KEY,                                  -- <id>@g.wa.interop
  subject TEXT NOT NULL,
  creator_jid TEXT NOT NULL,                             -- the creator's user JID
  creation INTEGER NOT NULL,                             -- seconds since the epoch
  version INTEGER NOT NULL,                              -- 1 at creation, +1 per announced change
  description_id TEXT,
  description TEXT,
  picture_id TEXT,
  announce INTEGER NOT NULL DEFAULT 0,                   -- 1: only admins send
  locked INTEGER NOT NULL DEFAULT 0,                     -- 1: only admins edit subject, description, picture
  invite_code TEXT UNIQUE                                -- made on first request, replaced on reset
) STRICT;

CREATE TABLE group_participants (
  group_jid TEXT NOT NULL REFERENCES groups(jid) ON DELETE CASCADE,
  participant_jid TEXT NOT NULL,                         -- a user JID, never a device
  admin INTEGER NOT NULL DEFAULT 0,
  joined_seq INTEGER NOT NULL,                           -- increasing: who has been in the group longest
  PRIMARY KEY (group_jid, participant_jid)
) STRICT;
CREATE INDEX group_participants_by_participant ON group_participants (participant_jid);

-- A create's idempotency key: a resent create answers with the group the first one made.
CREATE TABLE group_create_keys (
  creator_jid TEXT NOT NULL,
  key TEXT NOT NULL,
  group_jid TEXT NOT NULL,
  PRIMARY KEY (creator_jid, key)
) STRICT;

-- Invite codes that were revoked (answered 410 rather than 404).
CREATE TABLE group_revoked_invites (
  code TEXT PRIMARY KEY,
  group_jid TEXT NOT NULL
) STRICT;

-- A delivered group message: from_jid is the group, participant the sending device, pairwise the
-- sender-key distribution for this one device (a pkmsg or msg, delivered before the skmsg in payload).
ALTER TABLE queue ADD COLUMN participant TEXT;
ALTER TABLE queue ADD COLUMN pairwise_type TEXT;
ALTER TABLE queue ADD COLUMN pairwise BLOB;
