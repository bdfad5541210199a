-- The session gate's side of a new session: the member's policy inputs, and their login's token
-- consumed (when it is this member's, unconsumed and unexpired on the clock, so that a token
-- serves one session) with its audit event, in one statement. Consuming deletes the row, unless
-- the organization remembers devices: then the row stays, marked, until it expires
-- (remembered_device_create still needs the login). No row when there is no such member;
-- `factors` is NULL when nothing was consumed. The event is the login's only one when it succeeds:
-- it tells the login's story (mfa._login_story).
--   $1 organization_id   $2 member_id   $3 the token's hash (NULL: none presented)   $4 request_id
--   $5 the clock
WITH member AS (
    SELECT m.mfa_enrolled, m.is_breakglass, o.mfa_policy, o.mfa_methods, o.allowed_mfa_methods,
           o.remember_device_days
      FROM mfa.members m JOIN mfa.organizations o ON o.organization_id = $1
     WHERE m.organization_id = $1 AND m.member_id = $2),
deleted AS (
    DELETE FROM mfa.intermediate_sessions
     WHERE organization_id = $1 AND member_id = $2 AND token_hash = $3
       AND expires_at > $5 AND consumed_at IS NULL
       AND EXISTS (SELECT FROM member WHERE remember_device_days = 0)
 RETURNING factors || proven_factors AS factors,
           primary_factor IS NOT NULL AS has_primary, request_ids),
marked AS (
    UPDATE mfa.intermediate_sessions SET consumed_at = $5
     WHERE organization_id = $1 AND member_id = $2 AND token_hash = $3
       AND expires_at > $5 AND consumed_at IS NULL
       AND EXISTS (SELECT FROM member WHERE remember_device_days > 0)
 RETURNING factors || proven_factors AS factors,
           primary_factor IS NOT NULL AS has_primary, request_ids),
consumed AS (
    SELECT * FROM deleted UNION ALL SELECT * FROM marked),
audited AS (
    INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
    SELECT $1, $4::uuid, 'session.allowed', $2, mfa._login_story(factors, request_ids)
      FROM consumed)
SELECT member.*, (SELECT factors FROM consumed) AS factors,
       (SELECT has_primary FROM consumed) AS has_primary
  FROM member
