-- The delivery receipt an incoming message owes, once the local network has it, is kept on its inbox
-- row (`receipt`: where it goes, as JSON) until the gateway acknowledges it, then cleared. It was an
-- outbox row of its own: a row and three index entries per incoming message where this is one
-- column and one entry of a partial index. Receipt rows already queued in the outbox are sent from
-- there as before.
ALTER TABLE inbox ADD COLUMN receipt TEXT;
CREATE INDEX inbox_receipts ON inbox (puppet_id, seq) WHERE receipt IS NOT NULL;
