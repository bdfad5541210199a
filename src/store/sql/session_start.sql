-- A new intermediate session (a login, or a step-up when there is no primary factor), expiring
-- on the clock. It writes no event: a login's is written when it ends (the session's, or
-- login.abandoned when its token dies), a step-up's start by the caller. The member's expired
-- tokens went just before (logins_give_up.sql).
--   $1 organization_id   $2 the token's hash   $3 member_id   $4 the primary factor's method
--   (NULL: a step-up)   $5 locale   $6 the primary factor (Stytch JSON)   $7 lifetime in minutes
--   $8 request_id   $9 the remembered device the login presented (Stytch JSON; NULL: none),
--   proven with it   $10 the clock
INSERT INTO mfa.intermediate_sessions
       (organization_id, token_hash, member_id, primary_factor, locale, factors, expires_at,
        proven_factors, request_ids)
VALUES ($1, $2, $3, $4, $5,
        CASE WHEN $4 IS NULL THEN '[]'::jsonb
             ELSE jsonb_build_array($6::jsonb || jsonb_build_object('last_authenticated_at', $10)) END,
        $10 + make_interval(mins => $7),
        CASE WHEN $9 IS NULL THEN '[]'::jsonb
             ELSE jsonb_build_array($9::jsonb || jsonb_build_object('last_authenticated_at', $10)) END,
        -- One request id for each factor the login starts with.
        array_fill($8::uuid, ARRAY[(($4 IS NOT NULL)::int + ($9 IS NOT NULL)::int)]))
