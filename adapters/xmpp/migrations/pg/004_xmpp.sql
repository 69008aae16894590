-- PostgreSQL dialect of ../004_xmpp.sql (same tables, columns, constraints and indexes). Flags are
-- integers 0/1 as in SQLite; times are milliseconds since the epoch (bigint).

CREATE TABLE xmpp_contacts (
  local_user text NOT NULL,
  contact text NOT NULL,
  remote text NOT NULL,
  name text,
  sub_to integer NOT NULL DEFAULT 0,
  sub_from integer NOT NULL DEFAULT 0,
  asked integer NOT NULL DEFAULT 0,
  created_at bigint NOT NULL,
  PRIMARY KEY (local_user, contact)
);
CREATE INDEX xmpp_contacts_remote ON xmpp_contacts (local_user, remote);

CREATE TABLE xmpp_delivered (
  local_user text NOT NULL,
  remote text NOT NULL,
  remote_id text NOT NULL,
  stanza_id text NOT NULL,
  created_at bigint NOT NULL,
  PRIMARY KEY (local_user, remote, remote_id)
);
CREATE INDEX xmpp_delivered_created ON xmpp_delivered (created_at);
