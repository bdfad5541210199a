-- member_lock.sql for an SMS code attempt: the member's row, then their authenticator app and
-- their live SMS code, locked until the end of the transaction, in this order (as every writer of
-- a member's factors takes them); the code's columns are read. Columns as in member_read.sql.
--   $1 organization_id   $2 member_id
SELECT m.organization_id, m.member_id, m.mfa_enrolled, m.mfa_phone_number, m.mfa_phone_country,
       m.mfa_phone_number_verified, m.phone_id::text AS phone_id, m.default_mfa_method,
       m.is_breakglass, m.created_at, m.updated_at, m.webauthn_registrations,
       o.mfa_policy, o.mfa_methods, o.allowed_mfa_methods, o.remember_device_days,
       o.created_at AS organization_created_at, o.updated_at AS organization_updated_at,
       l.failed_attempts, l.failure_window_started_at, l.lock_created_at, l.lock_expires_at,
       l.lock_count,
       t.totp_registration_id, t.secret_ciphertext, t.totp_active, t.totp_expired, t.last_used_step,
       c.sms_code_hash, c.sms_code_phone_number, c.sms_code_expired, c.sms_code_used,
       c.sms_code_key_id
  FROM (SELECT * FROM mfa.members WHERE organization_id = $1 AND member_id = $2
           FOR NO KEY UPDATE) m
  JOIN mfa.organizations o ON o.organization_id = $1
  LEFT JOIN mfa.member_lockouts l ON l.organization_id = $1 AND l.member_id = m.member_id
  LEFT JOIN LATERAL (
       SELECT totp_registration_id::text AS totp_registration_id, secret_ciphertext,
              status = 'active' AS totp_active,
              coalesce(expires_at <= clock_timestamp(), false) AS totp_expired, last_used_step
         FROM mfa.totp_registrations
        WHERE organization_id = $1 AND member_id = m.member_id
          FOR NO KEY UPDATE) t ON true
  LEFT JOIN LATERAL (
       SELECT code_hash AS sms_code_hash, phone_number AS sms_code_phone_number,
              expires_at <= clock_timestamp() AS sms_code_expired,
              used_at IS NOT NULL AS sms_code_used, key_id AS sms_code_key_id
         FROM mfa.sms_codes
        WHERE organization_id = $1 AND member_id = m.member_id
          FOR NO KEY UPDATE) c ON true
