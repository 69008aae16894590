-- A puppet's groups (docs/PROTOCOL.md section 5.7), as the gateway last described them: the group's
-- state is kept whole, as JSON, so a change of the <group> element needs no migration. A group the
-- puppet left or was removed from stays, inactive: its history still names it.
CREATE TABLE groups (
  puppet_id  INTEGER NOT NULL REFERENCES puppets (id) ON DELETE CASCADE,
  group_jid  TEXT    NOT NULL,             -- <id>@g.wa.interop
  version    INTEGER NOT NULL,             -- the version of `info`: +1 per w:gp2 notification
  info       TEXT    NOT NULL,             -- the group's state (src/protocol/stanza GroupInfo), JSON
  active     INTEGER NOT NULL DEFAULT 1,   -- 0 once the puppet is no longer a member
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (puppet_id, group_jid)
) WITHOUT ROWID;

-- The devices holding the puppet's current sender key for a group (docs/PROTOCOL.md 5.7.6): they
-- need no distribution message with the next group message. Emptied when the key is rotated.
CREATE TABLE group_key_holders (
  puppet_id  INTEGER NOT NULL REFERENCES puppets (id) ON DELETE CASCADE,
  group_jid  TEXT    NOT NULL,             -- <id>@g.wa.interop
  device_jid TEXT    NOT NULL,             -- user:device@server
  PRIMARY KEY (puppet_id, group_jid, device_jid)
) WITHOUT ROWID;
