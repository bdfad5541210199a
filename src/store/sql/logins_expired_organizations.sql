-- The organizations with logins expired at $1, for the upkeep (logins_expired_reap.sql, one
-- organization at a time). A scan: the table holds only the logins of the last few minutes. On
-- Citus a read of every shard, without locks.
SELECT DISTINCT organization_id FROM mfa.intermediate_sessions WHERE expires_at <= $1
