-- mfa: the assurance of a session row, verified (0.10.0). The gate seals every factor it writes
-- to a session (a MAC with the server's key over the organization, the member and the factor);
-- these count only the factors whose seal verifies for the row's own organization and member,
-- so a row that got past the triggers, or factors copied from another member's session, carry
-- no assurance. For RLS policies:
--   USING (mfa.last_mfa_at(organization_id, member_id, authentication_factors) > now() - interval '5 minutes')
CREATE FUNCTION mfa.session_aal(organization_id text, member_id text, authentication_factors jsonb) RETURNS text
LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
    SELECT mfa.session_aal(mfa.session_verified_factors($1, $2, $3))
$$;

CREATE FUNCTION mfa.last_mfa_at(organization_id text, member_id text, authentication_factors jsonb) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
    SELECT mfa.last_mfa_at(mfa.session_verified_factors($1, $2, $3))
$$;

-- Phishing resistance and RFC 8176 method references of a session row, from its sealed factors:
--   USING (mfa.session_phishing_resistant(organization_id, member_id, authentication_factors))
CREATE FUNCTION mfa.session_phishing_resistant(organization_id text, member_id text, authentication_factors jsonb) RETURNS boolean
LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
    SELECT mfa.session_phishing_resistant(mfa.session_verified_factors($1, $2, $3))
$$;

CREATE FUNCTION mfa.session_amr(organization_id text, member_id text, authentication_factors jsonb) RETURNS text[]
LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
    SELECT mfa.session_amr(mfa.session_verified_factors($1, $2, $3))
$$;
