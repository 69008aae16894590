-- Users who turned on double puppeting: what they send from their other devices on the
-- gatekeeper's side appears in Matrix as sent by them (through the double-puppet registration).
CREATE TABLE matrix_double_puppets (
  user_id TEXT PRIMARY KEY,
  enabled_at INTEGER NOT NULL
);
