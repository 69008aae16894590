-- PostgreSQL dialect of ../006_matrix_reactions.sql.
CREATE TABLE matrix_reactions (
  event_id text PRIMARY KEY,
  room_id text NOT NULL,
  target text NOT NULL,
  emoji text NOT NULL,
  created_at bigint NOT NULL
);
