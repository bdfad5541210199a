-- A challenge handed to a browser, stored as its SHA-256. The member's expired challenges and
-- their earlier one of the same ceremony and token go first: a login holds one live challenge
-- per ceremony, and a member no more than their logins do.
--   $1 organization_id   $2 member_id   $3 challenge_hash   $4 ceremony   $5 token_hash (NULL: a
--   registration without a login)   $6 domain   $7 user_verification   $8 authenticator_type
--   $9 user_agent   $10 lifetime in seconds   $11 the clock
WITH replaced AS (
    DELETE FROM mfa.webauthn_challenges
     WHERE organization_id = $1 AND member_id = $2
       AND (expires_at <= $11 OR (ceremony = $4 AND token_hash IS NOT DISTINCT FROM $5))
 RETURNING 1)
INSERT INTO mfa.webauthn_challenges (organization_id, member_id, challenge_hash, ceremony, token_hash,
                                     domain, user_verification, authenticator_type, user_agent,
                                     created_at, expires_at)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $11, $11 + make_interval(secs => $10)
  FROM (SELECT count(*) FROM replaced) AS replaced_first
