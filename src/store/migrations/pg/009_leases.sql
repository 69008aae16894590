-- PostgreSQL dialect of ../009_leases.sql: leases with fencing tokens (src/cluster/leases.ts).
-- Expiry is by the database's clock (expires_at against now()), never a worker's.
CREATE TABLE leases (
  name       text        PRIMARY KEY,
  holder     text,
  fence      bigint      NOT NULL,
  expires_at timestamptz NOT NULL
);

-- The fencing check, as one statement inside the transaction of a fenced write: it takes a share
-- lock on the lease row (a holder change waits until the write commits, so the check stays true up
-- to the commit) and raises, rolling the whole transaction back, unless the fence is current.
CREATE FUNCTION interop_require_lease(lease text, held bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  current bigint;
BEGIN
  SELECT fence INTO current FROM leases WHERE name = lease FOR SHARE;
  IF current IS DISTINCT FROM held THEN
    RAISE EXCEPTION 'interop_fenced: the lease % moved on (fence %, this write holds %)', lease, current, held
      USING ERRCODE = 'IB001';
  END IF;
END
$$;
