-- A suspected theft of member $2's (organization $1) device token, written by the attempt ledger's
-- worker: devices created at or before $3 are revoked for good (devices_revoked_before, on a row
-- no caller locks), even those whose rows a rolled-back transaction held. $4 the clock.
INSERT INTO mfa.member_lockouts AS l (organization_id, member_id, updated_at, devices_revoked_before)
SELECT $1, $2, $4, $3
 WHERE EXISTS (SELECT FROM mfa.members WHERE organization_id = $1 AND member_id = $2)
    ON CONFLICT (organization_id, member_id) DO UPDATE
   SET updated_at = EXCLUDED.updated_at,
       devices_revoked_before = greatest(l.devices_revoked_before, EXCLUDED.devices_revoked_before)
