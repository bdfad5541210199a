-- A successful second-factor attempt, in one statement: the factor is spent, recorded on the login
-- (when the attempt came with one), the member's enrollment, default method and verified phone are
-- written (when they change), and the audit event. Each success runs only the parts it needs: every
-- table a statement names costs a lock even when it writes nothing there, and a backend keeps only
-- 16 in its fast path. store/attempts.rs makes the statement of each shape once, from the parts
-- below (a recovery code was spent by the statement that found it: no spend part).
--   $1 organization_id   $2 member_id   $3 request_id   $4 event_type   $5 event details
--   $6 the TOTP step the code matched   $7 the login's token hash   $8 the proven factor (Stytch
--   JSON)   $9 mfa_enrolled   $10 default_mfa_method   $11 mfa_phone_number_verified
--   $12 the clock
WITH
-- part spend_totp: the code's step becomes the last used one; a pending app becomes active
spent_totp AS (
    UPDATE mfa.totp_registrations
       SET last_used_step = $6, status = 'active', expires_at = NULL,
           activated_at = coalesce(activated_at, $12)
     WHERE organization_id = $1 AND member_id = $2),
-- part spend_sms_code: the code is used up
spent_sms_code AS (
    UPDATE mfa.sms_codes SET used_at = $12 WHERE organization_id = $1 AND member_id = $2),
-- part login: the factor is recorded on the login, with the time it was proven
proven AS (
    UPDATE mfa.intermediate_sessions
       SET proven_factors = proven_factors || jsonb_build_array($8::jsonb || jsonb_build_object('last_authenticated_at', $12))
     WHERE organization_id = $1 AND member_id = $2 AND token_hash = $7 AND consumed_at IS NULL
 RETURNING factors || proven_factors AS factors),
-- part member: the member's enrollment, default method and verified phone
changed AS (
    UPDATE mfa.members
       SET mfa_enrolled = $9, default_mfa_method = $10, mfa_phone_number_verified = $11,
           updated_at = $12
     WHERE organization_id = $1 AND member_id = $2
 RETURNING updated_at),
-- part audit
audited AS (
    INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
    VALUES ($1, $3::uuid, $4, $2, $5))
SELECT (SELECT factors FROM proven) AS factors, (SELECT updated_at FROM changed) AS updated_at
