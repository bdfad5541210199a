-- A new SMS code: the member's live code (replacing the previous one), its message in the outbox
-- (the code encrypted beside a body that holds a placeholder), the audit event, and, when the
-- workers listen, the NOTIFY that wakes them at commit: an empty payload, a wake-up only (any
-- role may LISTEN; a message id would tell every tenant's send rate). One statement; nothing exists unless the
-- caller's transaction commits.
--   $1 organization_id   $2 member_id   $3 request_id   $4 event details (the message id is added)
--   $5 the number (E.164)   $6 its country   $7 its block   $8 locale   $9 the body
--   $10 the code's lifetime in seconds   $11 the code, encrypted   $12 the code's keyed hash
--   $13 the key's id   $14 the number is the member's own, verified   $15 notify the workers
--   $16 the clock
WITH live_code AS (
    INSERT INTO mfa.sms_codes (organization_id, member_id, code_hash, key_id, phone_number, created_at, expires_at)
    VALUES ($1, $2, $12, $13, $5, $16, $16 + make_interval(secs => $10))
    ON CONFLICT (organization_id, member_id) DO UPDATE
       SET code_hash = EXCLUDED.code_hash, key_id = EXCLUDED.key_id, phone_number = EXCLUDED.phone_number,
           created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, used_at = NULL),
queued AS (
    INSERT INTO mfa.sms_outbox (organization_id, member_id, phone_number, country_code,
                                rate_limit_prefix, locale, body, code_ciphertext, created_at, expires_at,
                                to_verified_number)
    VALUES ($1, $2, $5, $6, $7, $8, $9, $11, $16, $16 + make_interval(secs => $10), $14)
    RETURNING message_id),
audited AS (
    INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
    SELECT $1, $3::uuid, 'sms_otp.sent', $2, $4::jsonb || jsonb_build_object('message_id', message_id)
      FROM queued)
SELECT message_id, CASE WHEN $15 THEN pg_notify('mfa_sms_outbox', '') END
  FROM queued
