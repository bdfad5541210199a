-- The support desk's reset of a member's MFA: every factor goes (authenticator app, recovery
-- codes, passkeys and their challenges, the phone and its live code), and they are no longer
-- enrolled. Their logins in progress go after it (logins_end.sql).
--   $1 organization_id   $2 member_id   $3 the clock
WITH app AS (DELETE FROM mfa.totp_registrations WHERE organization_id = $1 AND member_id = $2),
     codes AS (DELETE FROM mfa.recovery_codes WHERE organization_id = $1 AND member_id = $2 RETURNING 1),
     passkeys AS (DELETE FROM mfa.webauthn_registrations WHERE organization_id = $1 AND member_id = $2),
     challenges AS (DELETE FROM mfa.webauthn_challenges WHERE organization_id = $1 AND member_id = $2),
     sms_code AS (DELETE FROM mfa.sms_codes WHERE organization_id = $1 AND member_id = $2),
     member AS (
         UPDATE mfa.members
            SET mfa_phone_number = NULL, mfa_phone_country = NULL, phone_id = NULL,
                mfa_phone_number_verified = false, mfa_enrolled = false, default_mfa_method = NULL,
                webauthn_registrations = 0, updated_at = $3
          WHERE organization_id = $1 AND member_id = $2)
SELECT (SELECT count(*) FROM codes) AS recovery_codes
