-- A member's logins end: all of them ($3 NULL: a factor they may have proved with is gone), or
-- those expired at $3 (a new login starts). What each told, for login_abandoned.sql: its story,
-- whether it was a login (or a step-up), and whether it was given up (no session consumed it, and
-- it proved something: a login its primary factor, a step-up a second factor). Their rows are
-- taken in their key's order, so that two of the member's logins starting at once wait for each
-- other instead of deadlocking. One router query on Citus.
--   $1 organization_id   $2 member_id   $3 the clock, or NULL
DELETE FROM mfa.intermediate_sessions
 WHERE organization_id = $1 AND member_id = $2
   AND token_hash IN (SELECT token_hash FROM mfa.intermediate_sessions
                       WHERE organization_id = $1 AND member_id = $2
                         AND ($3::timestamptz IS NULL OR expires_at <= $3)
                       ORDER BY token_hash
                         FOR UPDATE)
RETURNING organization_id, member_id, request_ids::text[] AS request_ids, factors || proven_factors AS factors,
          primary_factor IS NOT NULL AS login,
          consumed_at IS NULL AND (primary_factor IS NOT NULL OR proven_factors <> '[]') AS abandoned
