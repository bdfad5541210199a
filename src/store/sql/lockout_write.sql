-- The attempt ledger's latest state of each member of a batch (one row per member), written by its
-- worker in a transaction of its own. Arrays, one element per member: $1 organization_id,
-- $2 member_id, $3 failures in the window, $4 the window's start, $5 lock_created_at,
-- $6 lock_expires_at, $7 consecutive locks; $8 the request id of the revocations' events; $9 the clock;
-- on Citus, $10 the one organization of the batch (each `:organization_filter` line names it).
-- Members deleted since are skipped. A member locked now loses their remembered devices (none
-- can be created while the lock lasts), with an audit event.
WITH batch AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::timestamptz[], $5::timestamptz[],
                         $6::timestamptz[], $7::integer[])
           AS s (organization_id, member_id, failed_attempts, failure_window_started_at,
                 lock_created_at, lock_expires_at, lock_count)),
-- (Rows a transaction holds are skipped: the worker never waits for a caller's lock. The member's
-- devices_revoked_before, set to the clock while the lock lasts, catches what a skipped row would
-- escape: a device created then or before is never honoured nor listed again.)
revoked AS (
    DELETE FROM mfa.remembered_devices
     WHERE (organization_id, member_id, device_id) IN (
           SELECT d.organization_id, d.member_id, d.device_id
             FROM mfa.remembered_devices d JOIN batch s
               ON d.organization_id = s.organization_id AND d.member_id = s.member_id
            WHERE s.lock_expires_at > $9
                  -- :organization_filter(d)
              FOR UPDATE OF d SKIP LOCKED)
 RETURNING organization_id, member_id, device_id),
audited AS (
    INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
    SELECT organization_id, $8::uuid, 'remembered_device.revoked', member_id,
           jsonb_build_object('reason', 'member_locked', 'device_ids', jsonb_agg(device_id ORDER BY device_id))
      FROM revoked GROUP BY organization_id, member_id)
INSERT INTO mfa.member_lockouts AS l
       (organization_id, member_id, failed_attempts, failure_window_started_at,
        lock_created_at, lock_expires_at, lock_count, updated_at, devices_revoked_before)
SELECT s.organization_id, s.member_id, s.failed_attempts, s.failure_window_started_at,
       s.lock_created_at, s.lock_expires_at, s.lock_count, $9,
       CASE WHEN s.lock_expires_at > $9 THEN $9 END
  FROM batch s
 WHERE EXISTS (SELECT FROM mfa.members m
                WHERE m.organization_id = s.organization_id AND m.member_id = s.member_id
                      -- :organization_filter(m)
              )
    ON CONFLICT (organization_id, member_id) DO UPDATE
   SET failed_attempts = EXCLUDED.failed_attempts,
       failure_window_started_at = EXCLUDED.failure_window_started_at,
       lock_created_at = EXCLUDED.lock_created_at,
       lock_expires_at = EXCLUDED.lock_expires_at,
       lock_count = EXCLUDED.lock_count,
       updated_at = EXCLUDED.updated_at,
       devices_revoked_before = greatest(l.devices_revoked_before, EXCLUDED.devices_revoked_before)
