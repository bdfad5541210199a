-- A remembered device honoured by a login: its token rotates (the presented one is retired, so
-- that presenting it again reveals a copy), its use is recorded, with the audit events of both.
-- The caller holds the device's row lock (remembered_device_find).
--   $1 organization_id   $2 member_id   $3 device_id   $4 the presented token's hash
--   $5 the new token's hash   $6 request_id   $7 the clock
WITH rotated AS (
    UPDATE mfa.remembered_devices
       SET token_hash = $5, last_used_at = $7
     WHERE organization_id = $1 AND member_id = $2 AND device_id = $3::uuid AND token_hash = $4
 RETURNING device_id),
retired AS (
    INSERT INTO mfa.remembered_device_retired_tokens (organization_id, token_hash, member_id, device_id)
    SELECT $1, $4, $2, device_id FROM rotated),
audited AS (
    INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
    SELECT $1, $6::uuid, event_type, $2, jsonb_build_object('device_id', device_id)
      FROM rotated, unnest(ARRAY['remembered_device.used', 'remembered_device.rotated']) AS event_type)
SELECT count(*) FROM rotated
