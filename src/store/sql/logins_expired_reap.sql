-- Up to $2 expired intermediate sessions go (found by a scan: the table holds only the logins of
-- the last few minutes), and each login among them that no
-- session consumed is recorded as login.abandoned, with its story, under the request id of its
-- start (as session_start.sql records a member's own expired logins). Rows a login in progress
-- holds are left for the next round. Returns how many rows went.
--   $1 the clock   $2 rows at most
WITH expired AS (
    SELECT organization_id, member_id, token_hash
      FROM mfa.intermediate_sessions
     WHERE expires_at <= $1
     LIMIT $2
       FOR UPDATE SKIP LOCKED),
given_up AS (
    DELETE FROM mfa.intermediate_sessions s
     USING expired e
     WHERE s.organization_id = e.organization_id AND s.member_id = e.member_id
       AND s.token_hash = e.token_hash
 RETURNING s.organization_id, s.member_id, s.request_ids, s.factors || s.proven_factors AS factors,
           s.primary_factor IS NOT NULL AND s.consumed_at IS NULL AS abandoned),
-- logins_abandoned.sql
SELECT count(*) AS gone FROM given_up
