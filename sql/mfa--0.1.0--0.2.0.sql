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

-- SMS codes are kept encrypted in the outbox and put into the text only when a worker claims the
-- message; sms_outbox_claim can serve one organization's worker. Messages queued by 0.1.0 keep
-- their code in the body (code_ciphertext NULL) and are handed out and erased as before.
ALTER TABLE mfa.sms_outbox ADD COLUMN code_ciphertext bytea;
COMMENT ON TABLE mfa.sms_outbox IS
    'mfa: SMS messages for delivery workers (claim with SKIP LOCKED, complete, fail). The body holds ****** where the code goes; the code itself is AEAD-encrypted in code_ciphertext, put into the text only by sms_outbox_claim, and erased once the message is sent, dead or expired.';
DROP FUNCTION mfa.sms_outbox_claim(integer, interval);
CREATE FUNCTION mfa."sms_outbox_claim"(
    "batch_size" INT DEFAULT 10,
    "visibility_timeout" interval DEFAULT '30 seconds',
    "for_organization" TEXT DEFAULT NULL
) RETURNS TABLE (
    "id" bigint,
    "organization_id" TEXT,
    "phone_number" TEXT,
    "country_code" TEXT,
    "locale" TEXT,
    "body" TEXT,
    "attempts" INT,
    "created_at" timestamp with time zone,
    "expires_at" timestamp with time zone
)
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'sms_outbox_claim_wrapper';
REVOKE ALL ON FUNCTION mfa.sms_outbox_claim(integer, interval, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mfa.sms_outbox_claim(integer, interval, text) TO mfa_sms_worker;
COMMENT ON FUNCTION mfa.sms_outbox_claim(integer, interval, text) IS
    'mfa: hands up to batch_size deliverable SMS messages (of one organization when for_organization is given) to one worker (FOR UPDATE SKIP LOCKED), with their codes decrypted into the text, and hides them for visibility_timeout.';
COMMENT ON FUNCTION mfa.sms_outbox_complete(bigint, text) IS 'mfa: marks a message sent, records the provider id, erases its code.';
