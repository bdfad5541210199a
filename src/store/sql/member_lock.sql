-- member_read.sql, with the member's row, then their authenticator app, locked until the end of
-- the transaction (an SMS code attempt uses member_lock_with_sms_code.sql, which locks the code
-- too). Every writer of a member's factors takes the member's lock first, which serializes
-- attempts, sends and changes on one member (the lateral reads after the member's row is locked:
-- the same order on every path). FOR NO KEY UPDATE: the attempt ledger's worker, inserting a
-- lockout row, only needs the member's key to stay. A locked row that changed since the statement
-- began is read as it is now (so the TOTP step a concurrent attempt used is seen); the policy and
-- the lockout row are read as of the statement's start.
-- Every table is filtered on the organization itself ($1), not through the join: Citus routes a
-- locking statement to one shard only then.
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
