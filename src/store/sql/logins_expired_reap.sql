-- Up to $2 expired intermediate sessions of organization $3 go (found by a scan of the
-- organization's rows: the table holds only the logins of the last few minutes), each with what it
-- told, for login_abandoned.sql (as logins_give_up.sql). Rows a login in progress holds are left
-- for the next round. One router query on Citus.
--   $1 the clock   $2 rows at most   $3 organization_id
WITH expired AS (
    SELECT organization_id, member_id, token_hash
      FROM mfa.intermediate_sessions
     WHERE organization_id = $3 AND expires_at <= $1
     LIMIT $2
       FOR UPDATE SKIP LOCKED)
DELETE FROM mfa.intermediate_sessions s
 USING expired e
 WHERE s.organization_id = $3 AND s.member_id = e.member_id AND s.token_hash = e.token_hash
RETURNING s.organization_id, s.member_id, s.request_ids::text[] AS request_ids, s.factors || s.proven_factors AS factors,
          s.primary_factor IS NOT NULL AS login,
          s.consumed_at IS NULL AND (s.primary_factor IS NOT NULL OR s.proven_factors <> '[]') AS abandoned
