-- How many secrets each key covers: every known key (in $1, the encrypting one first, with its
-- source in $2), and every key found in the data but not known ('missing': those secrets cannot
-- be read until the key is back), and hashes whose key was not recorded ('unrecorded': SMS codes
-- sent before 0.6.0, checked against every known key; they expire within minutes).
--   $1 known key fingerprints, the encrypting one first
--   $2 where each comes from (server, setting, database)
WITH known AS (
    SELECT key_id, source, position
      FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(key_id, source, position)),
used AS (
    SELECT encode(substring(secret_ciphertext FROM 2 FOR 8), 'hex') AS key_id, 'totp' AS what
      FROM mfa.totp_registrations
    UNION ALL
    SELECT encode(substring(code_ciphertext FROM 2 FOR 8), 'hex'), 'outbox'
      FROM mfa.sms_outbox WHERE code_ciphertext IS NOT NULL
    UNION ALL
    SELECT key_id, 'sms' FROM mfa.sms_codes WHERE used_at IS NULL AND expires_at > clock_timestamp()
    UNION ALL
    SELECT key_id, 'recovery' FROM mfa.recovery_codes WHERE used_at IS NULL),
counts AS (
    SELECT key_id,
           count(*) FILTER (WHERE what = 'totp') AS totp_secrets,
           count(*) FILTER (WHERE what = 'outbox') AS queued_sms_codes,
           count(*) FILTER (WHERE what = 'sms') AS sms_code_hashes,
           count(*) FILTER (WHERE what = 'recovery') AS recovery_code_hashes
      FROM used GROUP BY key_id)
SELECT coalesce(k.key_id, c.key_id),
       coalesce(k.source, CASE WHEN c.key_id IS NULL THEN 'unrecorded' ELSE 'missing' END),
       coalesce(k.position = 1, false),
       coalesce(c.totp_secrets, 0), coalesce(c.queued_sms_codes, 0),
       coalesce(c.sms_code_hashes, 0), coalesce(c.recovery_code_hashes, 0)
  FROM known k FULL JOIN counts c ON c.key_id = k.key_id
 ORDER BY k.position NULLS LAST, c.key_id NULLS LAST
