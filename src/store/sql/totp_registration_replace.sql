-- The member's authenticator-app registration, replaced: active at once (an import) or pending
-- until its first code is authenticated, expiring on the clock. The old one is deleted first (the
-- INSERT reads the DELETE's count; an unread CTE would run after it and collide on the key).
--   $1 organization_id   $2 member_id   $3 totp_registration_id   $4 the secret, encrypted
--   $5 minutes it stays pending (NULL: active at once)   $6 the clock
WITH old AS (
    DELETE FROM mfa.totp_registrations WHERE organization_id = $1 AND member_id = $2 RETURNING 1)
INSERT INTO mfa.totp_registrations
       (organization_id, member_id, totp_registration_id, secret_ciphertext, status, expires_at,
        activated_at)
SELECT $1, $2, $3::uuid, $4,
       CASE WHEN $5::int IS NULL THEN 'active' ELSE 'pending' END,
       $6 + make_interval(mins => $5::int),
       CASE WHEN $5::int IS NULL THEN $6 END
  FROM (SELECT count(*) FROM old) AS deleted_first
