-- Delivery receipts owed by inbox rows (see the SQLite migration).
ALTER TABLE inbox ADD COLUMN receipt text;
CREATE INDEX inbox_receipts ON inbox (puppet_id, seq) WHERE receipt IS NOT NULL;
