-- Loads members :from … :to - 1 of the benchmark data set (see baselines.sql), organizations
-- first. Organizations and members are bulk-inserted; phones go through mfa.member_upsert (so each
-- is validated); TOTP secrets are enrolled by run.py through mfa.totp_migrate (so each is encrypted
-- as in production), over two connections.
\set ON_ERROR_STOP on
INSERT INTO mfa.organizations (organization_id, mfa_policy)
SELECT 'o' || o, CASE WHEN o % 10 = 0 THEN 'REQUIRED_FOR_ALL' ELSE 'OPTIONAL' END
  FROM generate_series(:from / 10, (:to - 1) / 10) o
ON CONFLICT DO NOTHING;

INSERT INTO mfa.members (organization_id, member_id)
SELECT 'o' || n / 10, 'm' || n FROM generate_series(:from, :to - 1) n
ON CONFLICT DO NOTHING;

SELECT count(mfa.member_upsert('o' || n / 10, 'm' || n, mfa_phone_number => bench.phone_of(n)))
  FROM generate_series(:from, :to - 1) n WHERE n % 4 = 1;
UPDATE mfa.members SET mfa_phone_number_verified = true, mfa_enrolled = true, default_mfa_method = 'sms_otp'
 WHERE mfa_phone_number IS NOT NULL AND NOT mfa_phone_number_verified;
