\echo Use "ALTER EXTENSION mfa UPDATE" to load this file. \quit
-- mfa 0.5.0 → 0.6.0
--  * Master keys come from the server: mfa.encryption_key_file or mfa.encryption_key_command
--    (server configuration only), read by the postmaster into shared memory and again at every
--    reload. The deprecated mfa.encryption_key setting is still honoured but shows only its
--    fingerprint, and can no longer be SET or stored with ALTER DATABASE/ROLE. Every ciphertext and
--    hash written before stays readable.
--  * Rotation: several keys at once (the last in the file encrypts, all decrypt);
--    encryption_key_rotate(batch_size) and encryption_keys() for mfa_admin; SMS code hashes
--    record their key.
--  * Outbox tenancy: each claim hands out a receipt; sms_outbox_complete and sms_outbox_fail need
--    it, while the claim lasts. sms_worker_grant/revoke bind a worker role to organizations.
--  * Send limits a tenant cannot turn against another: per member (mfa.sms_sends_per_member_per_hour,
--    the minimum interval), and per number and block counting the organization's own sends plus,
--    for an unproven number, every organization's sends to unproven numbers.
\echo Use "ALTER EXTENSION mfa UPDATE TO '0.6.0'" to load this file. \quit

ALTER TABLE mfa.sms_codes ADD COLUMN key_id text;
COMMENT ON COLUMN mfa.sms_codes.key_id IS
    'mfa: fingerprint of the master key that hashed the code (NULL: sent before 0.6.0, checked against every known key).';

ALTER TABLE mfa.sms_outbox
    ADD COLUMN to_verified_number boolean NOT NULL DEFAULT false,
    ADD COLUMN receipt_hash bytea,
    ADD COLUMN claimed_by name;
COMMENT ON COLUMN mfa.sms_outbox.to_verified_number IS
    'mfa: sent to a number the member had proven: counted by the member''s own limits only, never by the global per-number and per-block guards (which another organization could otherwise fill).';
COMMENT ON COLUMN mfa.sms_outbox.receipt_hash IS
    'mfa: SHA-256 of the receipt handed out by the message''s latest claim; complete and fail need the receipt, while the claim lasts.';
CREATE INDEX sms_outbox_member_recent ON mfa.sms_outbox (organization_id, member_id, created_at);

CREATE TABLE mfa.sms_worker_grants (
    organization_id text        NOT NULL REFERENCES mfa.organizations ON DELETE CASCADE,
    role_name       name        NOT NULL,
    granted_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (organization_id, role_name)
);
COMMENT ON TABLE mfa.sms_worker_grants IS
    'mfa: tenant-operated SMS workers: a role listed here claims, completes and fails the messages of its organizations only (a worker role not listed serves every organization).';
CREATE INDEX sms_worker_grants_role ON mfa.sms_worker_grants (role_name);
REVOKE ALL ON mfa.sms_worker_grants FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('mfa.sms_worker_grants', '');

COMMENT ON TABLE mfa.database_keys IS
    'mfa: per-database master keys for development, generated when the server has no key of its own (mfa.encryption_key_file); they always decrypt, and the oldest encrypts while the server has no key. Readable by the owner only, but kept in dumps.';
COMMENT ON FUNCTION mfa._initialize_database_key() IS
    'mfa (internal): generates the per-database (development) encryption key at CREATE EXTENSION, unless the server has keys of its own.';

-- The claim hands out receipts, which complete and fail need: the old signatures go (a worker
-- of 0.5.0 must be upgraded with the extension).
DROP FUNCTION mfa.sms_outbox_claim(integer, interval, text);
DROP FUNCTION mfa.sms_outbox_complete(bigint, text);
DROP FUNCTION mfa.sms_outbox_fail(bigint, text, boolean);

CREATE FUNCTION mfa.sms_outbox_claim(
	"batch_size" INT DEFAULT 10, /* Option < i32 > */
	"visibility_timeout" interval DEFAULT '30 seconds', /* Option < pgrx :: datum :: Interval > */
	"for_organization" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"id" bigint,  /* i64 */
	"organization_id" TEXT,  /* String */
	"phone_number" TEXT,  /* String */
	"country_code" TEXT,  /* String */
	"locale" TEXT,  /* String */
	"body" TEXT,  /* String */
	"attempts" INT,  /* i32 */
	"created_at" timestamp with time zone,  /* pgrx :: datum :: TimestampWithTimeZone */
	"expires_at" timestamp with time zone,  /* pgrx :: datum :: TimestampWithTimeZone */
	"receipt" TEXT  /* String */
)
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sms_outbox_claim_wrapper';

CREATE FUNCTION mfa.sms_outbox_complete(
	"id" bigint, /* Option < i64 > */
	"receipt" TEXT, /* Option < & str > */
	"provider_message_id" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS jsonb /* Jsonb */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sms_outbox_complete_wrapper';

CREATE FUNCTION mfa.sms_outbox_fail(
	"id" bigint, /* Option < i64 > */
	"receipt" TEXT, /* Option < & str > */
	"error" TEXT DEFAULT NULL, /* Option < & str > */
	"retry" bool DEFAULT true /* Option < bool > */
) RETURNS jsonb /* Jsonb */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sms_outbox_fail_wrapper';

CREATE FUNCTION mfa.encryption_key_rotate(
	"batch_size" INT DEFAULT 1000 /* Option < i32 > */
) RETURNS jsonb /* Jsonb */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'encryption_key_rotate_wrapper';

CREATE FUNCTION mfa.encryption_keys() RETURNS TABLE (
	"key_id" TEXT,  /* Option < String > */
	"source" TEXT,  /* String */
	"encrypts" bool,  /* bool */
	"totp_secrets" bigint,  /* i64 */
	"queued_sms_codes" bigint,  /* i64 */
	"sms_code_hashes" bigint,  /* i64 */
	"recovery_code_hashes" bigint  /* i64 */
)
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'encryption_keys_wrapper';

CREATE FUNCTION mfa.sms_worker_grant(
	"role_name" TEXT, /* Option < & str > */
	"organization_id" TEXT /* Option < & str > */
) RETURNS jsonb /* Jsonb */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sms_worker_grant_wrapper';

CREATE FUNCTION mfa.sms_worker_revoke(
	"role_name" TEXT, /* Option < & str > */
	"organization_id" TEXT /* Option < & str > */
) RETURNS jsonb /* Jsonb */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sms_worker_revoke_wrapper';

REVOKE ALL ON FUNCTION
    mfa.sms_outbox_claim(integer, interval, text),
    mfa.sms_outbox_complete(bigint, text, text),
    mfa.sms_outbox_fail(bigint, text, text, boolean),
    mfa.encryption_keys(),
    mfa.encryption_key_rotate(integer),
    mfa.sms_worker_grant(text, text),
    mfa.sms_worker_revoke(text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    mfa.sms_outbox_claim(integer, interval, text),
    mfa.sms_outbox_complete(bigint, text, text),
    mfa.sms_outbox_fail(bigint, text, text, boolean)
TO mfa_sms_worker;
GRANT EXECUTE ON FUNCTION
    mfa.encryption_keys(),
    mfa.encryption_key_rotate(integer),
    mfa.sms_worker_grant(text, text),
    mfa.sms_worker_revoke(text, text)
TO mfa_admin;
COMMENT ON FUNCTION mfa.sms_outbox_claim(integer, interval, text) IS
    'mfa: hands up to batch_size deliverable SMS messages (of the worker''s bound organizations, narrowed to for_organization when given) to one worker (FOR UPDATE SKIP LOCKED), with their codes decrypted into the text and a receipt each (shown once), and hides them for visibility_timeout.';
COMMENT ON FUNCTION mfa.sms_outbox_complete(bigint, text, text) IS
    'mfa: marks a message the caller holds (its receipt, while the claim lasts) sent, records the provider id, erases its code; idempotent with the same receipt.';
COMMENT ON FUNCTION mfa.sms_outbox_fail(bigint, text, text, boolean) IS
    'mfa: a failed delivery of a message the caller holds (its receipt, while the claim lasts): retried with back-off, or dead after mfa.outbox_max_attempts (or at once without retry).';
COMMENT ON FUNCTION mfa.encryption_keys() IS
    'mfa: every known master key (by fingerprint, the encrypting one first, with its source) and every key the data names, with the TOTP secrets, queued SMS codes and code hashes each still covers; a key that covers nothing can leave the key file.';
COMMENT ON FUNCTION mfa.encryption_key_rotate(integer) IS
    'mfa: re-encrypts up to batch_size TOTP secrets and queued SMS codes under the encrypting key (skipping rows a login holds); call until remaining is zero. Audited.';
COMMENT ON FUNCTION mfa.sms_worker_grant(text, text) IS
    'mfa: binds a worker role (or a group role of them) to an organization: it then claims, completes and fails that organization''s messages only (with its other grants). Audited.';
COMMENT ON FUNCTION mfa.sms_worker_revoke(text, text) IS
    'mfa: takes an organization from a worker role''s binding; refuses the last one while the role is still a worker (unbound, it would serve every organization). Audited.';
