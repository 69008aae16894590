-- The fencing check takes the lease row's weakest lock, FOR KEY SHARE, instead of FOR SHARE (see the
-- SQLite migration for the schema side).
--
-- The check needs only one thing to hold until the fenced write commits: the fence. With FOR SHARE
-- it also held up the holder's own renewal (an UPDATE of expires_at, whose FOR NO KEY UPDATE lock
-- conflicts with FOR SHARE) for as long as the write's transaction lasted; a writer whose one
-- transaction covers several fenced units (group commit, postgres-database.ts) holds several lease
-- rows, taken in its units' order, and the renewal, locking the same rows in its own order, could
-- deadlock with it: the renewal failed after deadlock_timeout and the worker lost its leases.
--
-- With `fence` in a unique constraint it is a key column: an UPDATE that changes it (a change of
-- holder, Leases.acquire) takes FOR UPDATE and so still waits for every fenced write in flight,
-- while a renewal or a release (expires_at, holder: no key column) no longer conflicts with one.
-- PostgreSQL's foreign keys rest on the same rule (a key a foreign key can reference is locked by
-- FOR KEY SHARE against changes), which is why it is a unique constraint and not just an index.
ALTER TABLE leases ADD CONSTRAINT leases_fence_key UNIQUE (name, fence);

CREATE OR REPLACE FUNCTION interop_require_lease(lease text, held bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  current bigint;
BEGIN
  SELECT fence INTO current FROM leases WHERE name = lease FOR KEY SHARE;
  IF current IS DISTINCT FROM held THEN
    RAISE EXCEPTION 'interop_fenced: the lease % moved on (fence %, this write holds %)', lease, current, held
      USING ERRCODE = 'IB001';
  END IF;
END
$$;
