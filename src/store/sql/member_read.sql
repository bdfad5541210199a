-- A member with their organization's policy, their lockout row (the attempt ledger's durable
-- copy) and their authenticator app (active or pending): a snapshot read of primary-key lookups.
-- The SMS code's columns are NULL: only member_lock_with_sms_code.sql reads the code (every table
-- a statement names costs a lock, and a backend keeps only 16 of them in its fast path).
-- member_lock.sql and member_lock_with_sms_code.sql return the same columns.
--   $1 organization_id   $2 member_id
SELECT m.organization_id, m.member_id, m.mfa_enrolled, m.mfa_phone_number, m.mfa_phone_country,
       m.mfa_phone_number_verified, m.phone_id::text AS phone_id, m.default_mfa_method,
       m.is_breakglass, m.created_at, m.updated_at, m.webauthn_registrations,
       o.mfa_policy, o.mfa_methods, o.allowed_mfa_methods, o.remember_device_days,
       o.created_at AS organization_created_at, o.updated_at AS organization_updated_at,
       l.failed_attempts, l.failure_window_started_at, l.lock_created_at, l.lock_expires_at,
       l.lock_count,
       t.totp_registration_id, t.secret_ciphertext, t.totp_active, t.totp_expired, t.last_used_step,
       NULL::bytea AS sms_code_hash, NULL::text AS sms_code_phone_number,
       NULL::bool AS sms_code_expired, NULL::bool AS sms_code_used, NULL::text AS sms_code_key_id
  FROM mfa.members m
  JOIN mfa.organizations o ON o.organization_id = $1
  LEFT JOIN mfa.member_lockouts l ON l.organization_id = $1 AND l.member_id = m.member_id
  LEFT JOIN LATERAL (
       SELECT totp_registration_id::text AS totp_registration_id, secret_ciphertext,
              status = 'active' AS totp_active,
              coalesce(expires_at <= clock_timestamp(), false) AS totp_expired, last_used_step
         FROM mfa.totp_registrations
        WHERE organization_id = $1 AND member_id = m.member_id) t ON true
 WHERE m.organization_id = $1 AND m.member_id = $2
