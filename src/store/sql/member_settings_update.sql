-- member_upsert's change: the member's new settings (NULL keeps a value), the end of a code sent to
-- a previous number (it must not verify the new one), and the audit event, in one statement.
--   $1 organization_id   $2 member_id   $3 request_id   $4 event_type   $5 event details
--   $6 the phone number changes   $7 the new number (E.164)   $8 its country (ISO alpha-2)
--   $9 mfa_enrolled   $10 is_breakglass   $11 default_mfa_method   $12 the new number's phone_id
-- (made by the caller: Citus takes no volatile function such as gen_random_uuid() in an UPDATE)
WITH killed_code AS (
    DELETE FROM mfa.sms_codes WHERE $6 AND organization_id = $1 AND member_id = $2),
audited AS (
    INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
    VALUES ($1, $3::uuid, $4, $2, $5))
UPDATE mfa.members SET
       mfa_phone_number = CASE WHEN $6 THEN $7 ELSE mfa_phone_number END,
       mfa_phone_country = CASE WHEN $6 THEN $8 ELSE mfa_phone_country END,
       mfa_phone_number_verified = CASE WHEN $6 THEN false ELSE mfa_phone_number_verified END,
       phone_id = CASE WHEN $6 THEN $12::uuid ELSE phone_id END,
       mfa_enrolled = coalesce($9, mfa_enrolled),
       is_breakglass = coalesce($10, is_breakglass),
       default_mfa_method = coalesce($11, default_mfa_method),
       updated_at = now()
 WHERE organization_id = $1 AND member_id = $2
