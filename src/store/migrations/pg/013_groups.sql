-- PostgreSQL dialect of ../013_groups.sql: a puppet's groups (state as JSON text, version, active
-- flag as 0/1 like SQLite's) and the devices holding its current sender key per group. JIDs collate
-- as bytes ("C"), so they sort as in SQLite.
CREATE TABLE groups (
  puppet_id  integer NOT NULL REFERENCES puppets (id) ON DELETE CASCADE,
  group_jid  text COLLATE "C" NOT NULL,
  version    bigint  NOT NULL,
  info       text    NOT NULL,
  active     integer NOT NULL DEFAULT 1,
  updated_at bigint  NOT NULL,
  PRIMARY KEY (puppet_id, group_jid)
);

CREATE TABLE group_key_holders (
  puppet_id  integer NOT NULL REFERENCES puppets (id) ON DELETE CASCADE,
  group_jid  text COLLATE "C" NOT NULL,
  device_jid text COLLATE "C" NOT NULL,
  PRIMARY KEY (puppet_id, group_jid, device_jid)
);
