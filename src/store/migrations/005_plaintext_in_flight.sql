-- Plaintext only in flight (docs/SECURITY.md, "What the bridge stores"): a message's content is
-- kept only until the gateway acknowledged it (outgoing) or the local server took it (incoming),
-- and while it waits it is sealed with the operator's at-rest key (src/store/at-rest.ts).

-- The adapter's id of an outgoing message, kept after its content is cleared: later receipts are
-- shown against it. Filled from the content of the rows already there.
ALTER TABLE outbox ADD COLUMN local_id TEXT;
UPDATE outbox SET local_id = json_extract(CAST(payload AS TEXT), '$.localId')
  WHERE kind <> 'receipt' AND json_valid(CAST(payload AS TEXT));

-- What was delivered before this version kept its content: cleared (secure_delete is on, so the
-- old bytes are overwritten). Rows still waiting keep theirs until they go, then are cleared.
UPDATE outbox SET payload = X'' WHERE state <> 'queued';
UPDATE inbox SET payload = X'' WHERE state = 'delivered';
