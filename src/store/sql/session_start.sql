-- A new intermediate session (a login, or a step-up when there is no primary factor), expiring
-- on the clock. A login writes no event here: the session it ends in records its whole story
-- (session_decide.sql), and a login given up is recorded when its token dies. A step-up's start
-- is an event ($9). The member's expired tokens go; each login among them that no session
-- consumed is recorded as login.abandoned, with its story, under the request id of its start.
--   $1 organization_id   $2 the token's hash   $3 member_id   $4 the primary factor's method
--   (NULL: a step-up)   $5 locale   $6 the primary factor (Stytch JSON)   $7 lifetime in minutes
--   $8 request_id   $9 event_type (NULL: none)   $10 event details   $11 the remembered device
--   the login presented (Stytch JSON; NULL: none), proven with it   $12 the clock
WITH given_up AS (
    DELETE FROM mfa.intermediate_sessions
     WHERE organization_id = $1 AND member_id = $3 AND expires_at <= $12
 RETURNING organization_id, member_id, request_ids, factors || proven_factors AS factors,
           primary_factor IS NOT NULL AND consumed_at IS NULL AS abandoned),
audited AS (
    INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
    SELECT $1, $8::uuid, $9, $3, $10
     WHERE $9 IS NOT NULL),
-- logins_abandoned.sql
INSERT INTO mfa.intermediate_sessions
       (organization_id, token_hash, member_id, primary_factor, locale, factors, expires_at,
        proven_factors, request_ids)
VALUES ($1, $2, $3, $4, $5,
        CASE WHEN $4 IS NULL THEN '[]'::jsonb
             ELSE jsonb_build_array($6::jsonb || jsonb_build_object('last_authenticated_at', $12)) END,
        $12 + make_interval(mins => $7),
        CASE WHEN $11 IS NULL THEN '[]'::jsonb
             ELSE jsonb_build_array($11::jsonb || jsonb_build_object('last_authenticated_at', $12)) END,
        -- One request id for each factor the login starts with.
        array_fill($8::uuid, ARRAY[(($4 IS NOT NULL)::int + ($11 IS NOT NULL)::int)]))
