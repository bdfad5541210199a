-- The session gate's side of a new session: the member's policy inputs, and their login's token
-- consumed (when it is this member's, unconsumed and unexpired on the clock, so that a token
-- serves one session), in one statement: the policy inputs and the token come from one snapshot,
-- and the token is taken by the DELETE or UPDATE itself (`consumed_at IS NULL` is checked again
-- under the row's lock, so of two sessions presenting one token exactly one gets its row).
-- Consuming deletes the row, unless the organization remembers devices: then the row stays,
-- marked, until it expires (remembered_device_create still needs the login). No row when there is
-- no such member; `factors` (and the login's `request_ids`) NULL when nothing was consumed.
-- The audit event is session_decide.audited.sql, in the same transaction once the session row is
-- written (the guard's AFTER trigger; check_session_policy at once): on Citus an INSERT in a CTE
-- makes the whole statement a distributed plan whose CTEs become subplans, their results shipped
-- to every node in a two-phase commit; without it,
-- every table here filtered on $1, the statement is one router query on the organization's shard.
--   $1 organization_id   $2 member_id   $3 the token's hash (empty: none presented)   $4 the clock
WITH member AS (
    SELECT m.mfa_enrolled, m.is_breakglass, o.mfa_policy, o.mfa_methods, o.allowed_mfa_methods,
           o.remember_device_days
      FROM mfa.members m JOIN mfa.organizations o ON o.organization_id = $1
     WHERE m.organization_id = $1 AND m.member_id = $2),
deleted AS (
    DELETE FROM mfa.intermediate_sessions
     WHERE organization_id = $1 AND member_id = $2 AND token_hash = $3
       AND expires_at > $4 AND consumed_at IS NULL
       AND EXISTS (SELECT FROM member WHERE remember_device_days = 0)
 RETURNING factors || proven_factors AS factors,
           primary_factor IS NOT NULL AS has_primary, request_ids),
marked AS (
    UPDATE mfa.intermediate_sessions SET consumed_at = $4
     WHERE organization_id = $1 AND member_id = $2 AND token_hash = $3
       AND expires_at > $4 AND consumed_at IS NULL
       AND EXISTS (SELECT FROM member WHERE remember_device_days > 0)
 RETURNING factors || proven_factors AS factors,
           primary_factor IS NOT NULL AS has_primary, request_ids),
consumed AS (
    SELECT * FROM deleted UNION ALL SELECT * FROM marked)
SELECT member.*, (SELECT factors FROM consumed) AS factors,
       (SELECT has_primary FROM consumed) AS has_primary,
       (SELECT request_ids::text[] FROM consumed) AS request_ids
  FROM member
