-- Fills the baselines' tables from the loaded data set (run after every load).
\set ON_ERROR_STOP on
TRUNCATE bench.floor_totp, bench.plpgsql_totp, bench.floor_sms_codes;
INSERT INTO bench.floor_totp SELECT * FROM mfa.totp_registrations;
INSERT INTO bench.plpgsql_totp (organization_id, member_id, secret)
SELECT organization_id, member_id, :'secret' FROM mfa.totp_registrations;
INSERT INTO bench.floor_sms_codes (organization_id, member_id, code_hash, phone_number, expires_at)
SELECT organization_id, member_id, '\x00', mfa_phone_number, now() + interval '1 day'
  FROM mfa.members WHERE mfa_phone_number IS NOT NULL;
INSERT INTO bench.totp_codes (step, code)
SELECT s, bench.hotp(bench.base32_decode(:'secret'), s)
  FROM generate_series(floor(extract(epoch FROM now()) / 30)::bigint - 10,
                       floor(extract(epoch FROM now()) / 30)::bigint + 6 * 120) s
ON CONFLICT DO NOTHING;
VACUUM ANALYZE;
