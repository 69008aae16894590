-- The ids of the client tokens (JWT `jti`, with their issuer) the gateway has accepted, until those
-- tokens expire: a handshake recorded off the wire and replayed is refused even after a restart.
CREATE TABLE used_tokens (
  id TEXT PRIMARY KEY,                                   -- JSON ["iss", "jti"], as the verifier names it
  expires_at INTEGER NOT NULL                            -- seconds since the epoch (exp plus the allowed skew)
) STRICT;

CREATE INDEX used_tokens_by_expiry ON used_tokens (expires_at);
