-- Removes one of the member's passkeys and uncounts it. With their last passkey go `webauthn` as
-- their default method and, unless an authenticator app still stands behind them, their
-- recovery codes.
--   $1 organization_id   $2 member_id   $3 webauthn_registration_id   $4 the clock
WITH deleted AS (
    DELETE FROM mfa.webauthn_registrations
     WHERE organization_id = $1 AND member_id = $2 AND webauthn_registration_id = $3::uuid
 RETURNING 1),
uncounted AS (
    UPDATE mfa.members
       SET webauthn_registrations = webauthn_registrations - 1,
           default_mfa_method = CASE WHEN webauthn_registrations = 1
                                     THEN NULLIF(default_mfa_method, 'webauthn')
                                     ELSE default_mfa_method END,
           updated_at = $4
     WHERE organization_id = $1 AND member_id = $2 AND EXISTS (SELECT FROM deleted)
 RETURNING webauthn_registrations),
codes AS (
    DELETE FROM mfa.recovery_codes
     WHERE organization_id = $1 AND member_id = $2
       AND (SELECT webauthn_registrations FROM uncounted) = 0
       AND NOT EXISTS (SELECT FROM mfa.totp_registrations
                        WHERE organization_id = $1 AND member_id = $2 AND status = 'active'))
SELECT EXISTS (SELECT FROM deleted)
