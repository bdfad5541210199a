-- Ends a member's logins in progress (and the consumed ones kept for remembering devices): what
-- they proved may have been proven with a factor that is gone. Each that no session consumed is
-- recorded as login.abandoned. Returns how many went.
--   $1 organization_id   $2 member_id
WITH given_up AS (
    DELETE FROM mfa.intermediate_sessions
     WHERE organization_id = $1 AND member_id = $2
 RETURNING organization_id, member_id, request_ids, factors || proven_factors AS factors,
           primary_factor IS NOT NULL AND consumed_at IS NULL AS abandoned),
-- logins_abandoned.sql
SELECT count(*) AS gone FROM given_up
