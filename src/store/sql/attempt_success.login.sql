-- A success with a login: the factor is recorded on the login, with the time it was proven and
-- the request that proved it
proven AS (
    UPDATE mfa.intermediate_sessions
       SET proven_factors = proven_factors || jsonb_build_array($8::jsonb || jsonb_build_object('last_authenticated_at', $12)),
           request_ids = request_ids || $3::uuid
     WHERE organization_id = $1 AND member_id = $2 AND token_hash = $7 AND consumed_at IS NULL
 RETURNING factors || proven_factors AS factors)
