-- The attempt ledger's state of one member, written by its worker in a transaction of its own.
-- $1 organization_id, $2 member_id, $3 failures in the window, $4 the window's start,
-- $5 lock_created_at, $6 lock_expires_at, $7 consecutive locks. A member deleted since is skipped.
INSERT INTO mfa.member_lockouts AS l
       (organization_id, member_id, failed_attempts, failure_window_started_at,
        lock_created_at, lock_expires_at, lock_count, updated_at)
SELECT $1, $2, $3, $4, $5, $6, $7, clock_timestamp()
 WHERE EXISTS (SELECT FROM mfa.members m WHERE m.organization_id = $1 AND m.member_id = $2)
    ON CONFLICT (organization_id, member_id) DO UPDATE
   SET failed_attempts = EXCLUDED.failed_attempts,
       failure_window_started_at = EXCLUDED.failure_window_started_at,
       lock_created_at = EXCLUDED.lock_created_at,
       lock_expires_at = EXCLUDED.lock_expires_at,
       lock_count = EXCLUDED.lock_count,
       updated_at = EXCLUDED.updated_at
