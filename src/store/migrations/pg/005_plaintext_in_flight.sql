-- PostgreSQL dialect of ../005_plaintext_in_flight.sql: the adapter's id of an outgoing message,
-- kept after its content is cleared. (003 and 004 are the Matrix and XMPP adapters' tables, in
-- adapters/*/migrations/pg: the numbering is the one sequence of both dialects.)
ALTER TABLE outbox ADD COLUMN local_id text;
-- A PostgreSQL database starts at this version's schema, so there are no older rows to fill in or
-- clear; the statements are kept equal to SQLite's for a database copied in at version 2.
UPDATE outbox SET local_id = convert_from(payload, 'UTF8')::jsonb ->> 'localId'
  WHERE kind <> 'receipt' AND state = 'queued' AND convert_from(payload, 'UTF8') ~ '^\s*\{';
UPDATE outbox SET payload = '\x'::bytea WHERE state <> 'queued';
UPDATE inbox SET payload = '\x'::bytea WHERE state = 'delivered';
