-- The local users' own reactions in portals: redacting one takes the reaction back on the other
-- side (an empty reaction to the same message), which needs what it reacted to and with what;
-- a redacted m.reaction keeps neither.
CREATE TABLE matrix_reactions (
  event_id TEXT PRIMARY KEY,
  room_id TEXT NOT NULL,
  target TEXT NOT NULL,
  emoji TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
