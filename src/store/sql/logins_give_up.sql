-- A member's logins end: all of them ($3 NULL: a factor they may have proved with is gone), or
-- those expired at $3 (a new login starts). What each told, for logins_abandoned.sql: its story
-- and whether no session consumed it (a login given up). One router query on Citus: no CTE.
--   $1 organization_id   $2 member_id   $3 the clock, or NULL
DELETE FROM mfa.intermediate_sessions
 WHERE organization_id = $1 AND member_id = $2 AND ($3::timestamptz IS NULL OR expires_at <= $3)
RETURNING organization_id, member_id, request_ids, factors || proven_factors AS factors,
          primary_factor IS NOT NULL AND consumed_at IS NULL AS abandoned
