-- The attempt ledger's worker revokes remembered devices that a lock or a suspected theft took:
-- those of members $2 of organization $1 created at or before $3. Rows a transaction holds are
-- skipped (the worker never waits for a caller's lock); the member's devices_revoked_before
-- (mfa.member_lockouts) keeps a skipped device from ever being honoured. One organization per
-- statement: on Citus it then reaches one shard. Returns what went, for the audit events.
DELETE FROM mfa.remembered_devices
 WHERE organization_id = $1
   AND (organization_id, member_id, device_id) IN (
       SELECT organization_id, member_id, device_id FROM mfa.remembered_devices
        WHERE organization_id = $1 AND member_id = ANY($2::text[]) AND created_at <= $3
          FOR UPDATE SKIP LOCKED)
RETURNING member_id, device_id::text
