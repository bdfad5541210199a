-- Revokes remembered devices (their rows go, with their retired tokens), with one audit event per
-- member that had any. Returns how many went.
--   $1 organization_id   $2 member_id (NULL: every member of the organization)
--   $3 device_id (NULL: all of them)   $4 request_id   $5 the reason, for the audit trail
WITH revoked AS (
    DELETE FROM mfa.remembered_devices
     WHERE organization_id = $1 AND ($2::text IS NULL OR member_id = $2)
       AND ($3::uuid IS NULL OR device_id = $3::uuid)
 RETURNING member_id, device_id),
audited AS (
    INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
    SELECT $1, $4::uuid, 'remembered_device.revoked', member_id,
           jsonb_build_object('reason', $5::text, 'device_ids', jsonb_agg(device_id ORDER BY device_id))
      FROM revoked GROUP BY member_id)
SELECT count(*) FROM revoked
