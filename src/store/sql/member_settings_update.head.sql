-- member_upsert's change: the member's new settings (NULL keeps a value), the end of a code sent to
-- a previous number (it must not verify the new one), and the audit event (audited.sql, between
-- this file and member_settings_update.tail.sql), in one statement.
--   $1 organization_id   $2 member_id   $3 request_id   $4 event_type   $5 event details
--   $6 the phone number changes   $7 the new number (E.164)   $8 its country (ISO alpha-2)
--   $9 mfa_enrolled   $10 is_breakglass   $11 default_mfa_method   $12 the new number's phone_id
-- (made by the caller: Citus takes no volatile function such as gen_random_uuid() in an UPDATE)
--   $13 mfa_phone_number_verified as imported (NULL: a new number is unverified)
WITH killed_code AS (
    DELETE FROM mfa.sms_codes WHERE $6 AND organization_id = $1 AND member_id = $2),
