-- A device the member chose to remember, from a login that proved a second factor: at most one
-- per login (ON CONFLICT: a second call with the same login creates nothing). The member's
-- expired devices go first. Returns the device as the API shows it; no row when this login
-- already remembered one.
--   $1 organization_id   $2 member_id   $3 the login token's hash   $4 the device token's hash
--   $5 the fingerprint's hash (NULL: not bound)   $6 device_name   $7 days to remember it
--   $8 request_id   $9 the clock
WITH expired AS (
    DELETE FROM mfa.remembered_devices
     WHERE organization_id = $1 AND member_id = $2 AND expires_at <= $9),
created AS (
    INSERT INTO mfa.remembered_devices
           (organization_id, member_id, token_hash, fingerprint_hash, device_name, login_token_hash,
            expires_at)
    VALUES ($1, $2, $4, $5, $6, $3, $9 + make_interval(days => $7))
        ON CONFLICT ON CONSTRAINT remembered_devices_login DO NOTHING
 RETURNING device_id, device_name, fingerprint_hash IS NOT NULL AS bound, expires_at),
audited AS (
    INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
    SELECT $1, $8::uuid, 'remembered_device.created', $2,
           jsonb_build_object('device_id', device_id, 'fingerprint_bound', bound,
                              'expires_at', expires_at)
      FROM created)
SELECT jsonb_build_object('device_id', device_id::text, 'device_name', device_name,
                          'expires_at', expires_at)
  FROM created
