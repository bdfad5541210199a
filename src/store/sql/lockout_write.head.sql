-- The attempt ledger's latest state of each member of a batch (one row per member), written by its
-- worker in a transaction of its own. Arrays, one element per member: $1 organization_id,
-- $2 member_id, $3 failures in the window, $4 the window's start, $5 lock_created_at,
-- $6 lock_expires_at, $7 consecutive locks; $8 the clock; on Citus, $9 the one organization of the
-- batch (store/lockouts.rs puts `AND m.organization_id = $9::text` between this file and
-- lockout_write.tail.sql; without it, the two files are the statement). Members deleted since are skipped. A member
-- locked now loses the remembered devices created until now (none can be created while the lock
-- lasts): devices_revoked_before says so on a row no caller locks, whatever rows the worker's
-- revocation (device_revocation.sql) has to skip.
INSERT INTO mfa.member_lockouts AS l
       (organization_id, member_id, failed_attempts, failure_window_started_at,
        lock_created_at, lock_expires_at, lock_count, updated_at, devices_revoked_before)
SELECT s.organization_id, s.member_id, s.failed_attempts, s.failure_window_started_at,
       s.lock_created_at, s.lock_expires_at, s.lock_count, $8,
       CASE WHEN s.lock_expires_at > $8 THEN $8 END
  FROM unnest($1::text[], $2::text[], $3::integer[], $4::timestamptz[], $5::timestamptz[],
              $6::timestamptz[], $7::integer[])
       AS s (organization_id, member_id, failed_attempts, failure_window_started_at,
             lock_created_at, lock_expires_at, lock_count)
 WHERE EXISTS (SELECT FROM mfa.members m
                WHERE m.organization_id = s.organization_id AND m.member_id = s.member_id
