-- Authenticator apps: enrollment, replay, lockout, unlock, expiry, recovery codes, and what is
-- stored. (Codes come from oathtool, as a phone would compute them.)
\pset null '∅'
SELECT mfa.organization_upsert('initech') ->> 'organization_id' AS organization;
SELECT mfa.member_upsert('initech', 'peter') ->> 'member_id' AS member;

-- A new registration: 160-bit base32 secret, otpauth URI, QR code PNG, 10 recovery codes.
SELECT mfa.totp_create('initech', 'peter') AS created \gset
SELECT length(:'created'::jsonb ->> 'secret') AS secret_length,
       :'created'::jsonb ->> 'otpauth_uri' LIKE 'otpauth://totp/MFA:peter?secret=%&issuer=MFA&algorithm=SHA1&digits=6&period=30' AS uri_ok,
       :'created'::jsonb ->> 'qr_code' LIKE 'data:image/png;base64,%' AS qr_is_png,
       jsonb_array_length(:'created'::jsonb -> 'recovery_codes') AS recovery_codes,
       :'created'::jsonb -> 'member' -> 'totp_registration_id' AS active_registration;
-- It stays pending until its first code; a second one cannot be started meanwhile.
SELECT mfa.totp_create('initech', 'peter');

-- The secret is stored encrypted: the stored bytes do not contain it.
SELECT :'created'::jsonb ->> 'secret' AS secret \gset
SELECT position(convert_to(:'secret', 'UTF8') IN secret_ciphertext) = 0 AS secret_not_in_clear,
       octet_length(secret_ciphertext) > 20 AS sealed
  FROM mfa.totp_registrations WHERE organization_id = 'initech';

-- The first code activates it; the same code again is a replay.
\set code `oathtool --totp -b :secret`
SELECT r ->> 'status_code' AS status, r -> 'member' ->> 'default_mfa_method' AS default_method,
       r -> 'member' -> 'totp_registration_id' IS NOT NULL AS active
  FROM mfa.totp_authenticate('initech', 'peter', :'code') AS r;
SELECT mfa.totp_authenticate('initech', 'peter', :'code') - 'request_id' AS replay;

-- Consecutive failures (mfa.lock_threshold: 10 by default, 3 here, the replay above being the
-- first) lock the member; then even a right code is refused.
SET mfa.lock_threshold = 3;
SELECT mfa.totp_authenticate('initech', 'peter', '12345') ->> 'error_type' AS attempt_1;
SELECT mfa.totp_authenticate('initech', 'peter', 'abcdef') ->> 'error_type' AS attempt_2;
SELECT mfa.totp_authenticate('initech', 'peter', NULL) ->> 'error_type' AS attempt_3;
SELECT mfa.member_get('initech', 'peter') -> 'is_locked' AS locked;
SELECT mfa.totp_authenticate('initech', 'peter', :'code') - 'request_id' AS while_locked;
SELECT mfa.member_unlock('initech', 'peter') -> 'is_locked' AS locked_after_unlock;
RESET mfa.lock_threshold;

-- Recovery codes: each works once; rotating invalidates the old set.
SELECT jsonb_array_elements_text(:'created'::jsonb -> 'recovery_codes') AS first_code LIMIT 1 \gset
SELECT mfa.recovery_codes_recover('initech', 'peter', :'first_code') ->> 'recovery_codes_remaining' AS remaining;
SELECT mfa.recovery_codes_recover('initech', 'peter', :'first_code') ->> 'error_type' AS second_use;
SELECT mfa.recovery_codes_get('initech', 'peter') -> 'recovery_codes_remaining' AS remaining;
-- Rotating mints new codes, so it needs a factor proven in a login or step-up, like adding a factor.
SELECT mfa.recovery_codes_rotate('initech', 'peter');
SELECT mfa.step_up_start('initech', 'peter') ->> 'intermediate_session_token' AS step_up \gset
SELECT jsonb_array_elements_text(:'created'::jsonb -> 'recovery_codes') AS step_up_code OFFSET 2 LIMIT 1 \gset
SELECT mfa.recovery_codes_recover('initech', 'peter', :'step_up_code', :'step_up') AS proven \gset
-- The factor names the code it spent (Stytch's recovery_code_factor): a UUID, not the code.
SELECT :'proven'::jsonb ->> 'status_code' AS status, f ->> 'delivery_method' AS delivery_method,
       jsonb_object_keys(f -> 'recovery_code_factor') AS sub_object,
       (f -> 'recovery_code_factor' ->> 'totp_recovery_code_id') ~ '^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS a_uuid,
       position(replace(:'step_up_code', '-', '') IN :'proven') = 0 AND position(:'step_up_code' IN :'proven') = 0 AS no_code
  FROM jsonb_array_elements(:'proven'::jsonb -> 'authentication_factors') f
 WHERE f ->> 'type' = 'recovery_codes';
SELECT mfa.recovery_codes_rotate('initech', 'peter', :'step_up') -> 'recovery_codes' ->> 0 AS new_code \gset
SELECT jsonb_array_elements_text(:'created'::jsonb -> 'recovery_codes') AS old_code OFFSET 1 LIMIT 1 \gset
SELECT mfa.recovery_codes_recover('initech', 'peter', :'old_code') ->> 'error_type' AS old_set;
SELECT mfa.recovery_codes_recover('initech', 'peter', :'new_code') ->> 'recovery_codes_remaining' AS remaining;

-- Removing the app removes its recovery codes; a pending registration expires.
SELECT mfa.member_delete_totp('initech', 'peter') -> 'totp_registration_id' AS registration;
SELECT count(*) AS recovery_codes FROM mfa.recovery_codes WHERE organization_id = 'initech';
SELECT mfa.totp_create('initech', 'peter', 5) ->> 'secret' AS secret2 \gset
-- (time passes: the registration's expiry is moved into the past)
UPDATE mfa.totp_registrations SET expires_at = now() - interval '1 minute' WHERE organization_id = 'initech';
\set code2 `oathtool --totp -b :secret2`
SELECT mfa.totp_authenticate('initech', 'peter', :'code2') ->> 'error_type' AS expired;
SELECT mfa.totp_create('initech', 'peter', 4);
SELECT mfa.totp_create('initech', 'peter') ->> 'status_code' AS new_registration_after_expiry;
SELECT mfa.organization_delete('initech');
