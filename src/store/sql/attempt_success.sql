-- A successful second-factor attempt, in one statement: the factor is spent, recorded on the login
-- (when the attempt came with one), the member's enrollment, default method and verified phone are
-- written (when they change), and the audit event. A recovery code was spent by the statement that
-- found it. A part with nothing to do writes nothing.
--   $1 organization_id   $2 member_id   $3 request_id   $4 event_type   $5 event details
--   $6 the proven method: 'totp', 'sms_otp' or 'recovery_code'   $7 the TOTP step the code matched
--   $8 the login's token hash (NULL: no login)   $9 the proven factor (Stytch JSON)
--   $10 the member changes   $11 mfa_enrolled   $12 default_mfa_method   $13 mfa_phone_number_verified
WITH spent_totp AS (
    UPDATE mfa.totp_registrations
       SET last_used_step = $7, status = 'active', expires_at = NULL,
           activated_at = coalesce(activated_at, now())
     WHERE $6 = 'totp' AND organization_id = $1 AND member_id = $2),
spent_sms_code AS (
    UPDATE mfa.sms_codes SET used_at = now()
     WHERE $6 = 'sms_otp' AND organization_id = $1 AND member_id = $2),
proven AS (
    UPDATE mfa.intermediate_sessions
       SET factors = factors || jsonb_build_array($9::jsonb || jsonb_build_object('last_authenticated_at', clock_timestamp()))
     WHERE organization_id = $1 AND token_hash = $8
 RETURNING factors),
changed AS (
    UPDATE mfa.members
       SET mfa_enrolled = $11, default_mfa_method = $12, mfa_phone_number_verified = $13,
           updated_at = now()
     WHERE $10 AND organization_id = $1 AND member_id = $2
 RETURNING updated_at),
audited AS (
    INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
    VALUES ($1, $3::uuid, $4, $2, $5))
SELECT (SELECT factors FROM proven) AS factors, (SELECT updated_at FROM changed) AS updated_at
