-- Signal key id counters per puppet. Prekey ids must never be reused while a sender may still hold
-- an old bundle, and consumed prekeys are deleted, so max(key_id) cannot serve as the counter.
CREATE TABLE signal_key_counters (
  puppet_id             INTEGER PRIMARY KEY REFERENCES puppets (id) ON DELETE CASCADE,
  last_prekey_id        INTEGER NOT NULL DEFAULT 0,
  last_signed_prekey_id INTEGER NOT NULL DEFAULT 0
);
