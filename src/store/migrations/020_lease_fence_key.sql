-- `fence` joins the leases' unique keys (name, fence), as on PostgreSQL, where it makes the fencing
-- check's row lock one that a change of holder waits for and a renewal does not (see
-- pg/020_lease_fence_key.sql). On SQLite the bridge is one process and the table stays empty: the
-- index keeps both dialects' schemas the same.
CREATE UNIQUE INDEX leases_fence_key ON leases (name, fence);
