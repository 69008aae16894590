-- Crash safety on the XMPP side (adapters/xmpp/journal.ts). XEP-0114 has no acknowledgement: what
-- the server wrote into the component socket is the bridge's alone to keep. Each user's message is
-- journaled as it is parsed, before it waits for the user's earlier ones, and replayed at start if
-- it was not yet handed to the core.

-- One row per message stanza a user sent to a contact. `stanza` holds it as received until the core
-- has it (then NULL: its content is gone); the row itself is kept a minute, so that after an unclean
-- stop the bridge can tell each user up to which message it had taken theirs.
CREATE TABLE xmpp_journal (
  seq INTEGER PRIMARY KEY,
  run INTEGER NOT NULL,             -- xmpp_runs.run of the bridge that received it
  local_user TEXT NOT NULL,         -- the sender's bare JID
  contact TEXT NOT NULL,            -- the contact's bare JID
  local_id TEXT NOT NULL,           -- XEP-0359 origin-id, else the stanza id (what a resend repeats)
  stanza TEXT,                      -- the stanza; NULL once submitted to the core
  received_at INTEGER NOT NULL
);

-- One row per start of the adapter; `stopped_at` stays NULL until a clean stop. A start that finds
-- the latest run without it knows the bridge did not stop cleanly.
CREATE TABLE xmpp_runs (
  run INTEGER PRIMARY KEY,
  started_at INTEGER NOT NULL,
  stopped_at INTEGER
);
