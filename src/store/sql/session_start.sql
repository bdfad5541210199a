-- A new intermediate session (a login, or a step-up when there is no primary factor), expiring
-- on the clock, with its audit event; the member's expired ones go (a consumed token has no row
-- left, so these are the logins given up).
--   $1 organization_id   $2 the token's hash   $3 member_id   $4 the primary factor's method
--   (NULL: a step-up)   $5 locale   $6 the primary factor (Stytch JSON)   $7 lifetime in minutes
--   $8 request_id   $9 event_type   $10 event details   $11 the remembered device the login
--   presented (Stytch JSON; NULL: none), proven with it   $12 the clock
WITH given_up AS (
    DELETE FROM mfa.intermediate_sessions
     WHERE organization_id = $1 AND member_id = $3 AND expires_at <= $12),
audited AS (
    INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
    VALUES ($1, $8::uuid, $9, $3, $10))
INSERT INTO mfa.intermediate_sessions
       (organization_id, token_hash, member_id, primary_factor, locale, factors, expires_at,
        proven_factors)
VALUES ($1, $2, $3, $4, $5,
        CASE WHEN $4 IS NULL THEN '[]'::jsonb
             ELSE jsonb_build_array($6::jsonb || jsonb_build_object('last_authenticated_at', $12)) END,
        $12 + make_interval(mins => $7),
        CASE WHEN $11 IS NULL THEN '[]'::jsonb
             ELSE jsonb_build_array($11::jsonb || jsonb_build_object('last_authenticated_at', $12)) END)
