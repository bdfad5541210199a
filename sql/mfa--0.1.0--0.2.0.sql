-- mfa 0.1.0 → 0.2.0
--  * the member and organization objects are built by the functions' own statements (kept plans)
--    instead of SQL functions that were planned again at every call;
--  * retiring expired outbox messages uses an index on their expiry;
--  * the session gate runs as the extension's owner, so that the application's role can insert
--    its sessions without reading the extension's tables;
--  * totp_verify: checks a code against a secret the caller holds.

DROP FUNCTION mfa.member_object(text, text);
DROP FUNCTION mfa.organization_object(text);

CREATE INDEX sms_outbox_expiring ON mfa.sms_outbox (expires_at) WHERE status = 'pending';

ALTER FUNCTION mfa.enforce_session_policy() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION mfa."totp_verify"(
    "secret" TEXT,
    "code" TEXT,
    "at" timestamp with time zone DEFAULT now()
) RETURNS bool
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'totp_verify_wrapper';
REVOKE ALL ON FUNCTION mfa.totp_verify(text, text, timestamp with time zone) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mfa.totp_verify(text, text, timestamp with time zone) TO mfa_admin, mfa_app;
COMMENT ON FUNCTION mfa.totp_verify(text, text, timestamp with time zone) IS
    'mfa: whether a code matches a base32 secret the caller holds (e.g. before totp_migrate), within mfa.totp_skew_steps; stores and counts nothing.';
