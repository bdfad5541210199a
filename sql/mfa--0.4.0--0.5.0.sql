-- mfa 0.4.0 → 0.5.0
--  * Failed attempts are counted in the attempt ledger (shared memory) before a code is checked and
--    written by the ledger's worker in transactions of its own: rollbacks, savepoints, exceptions
--    and parallel attempts no longer undo or dodge a failure. Requires
--    shared_preload_libraries = 'mfa' (authentications are refused without it).
--  * The lock state moves from mfa.members to mfa.member_lockouts (written only by the worker, so
--    it never waits for a member's row lock); a window for failures (mfa.lock_minutes), growing
--    locks (mfa.lock_max_minutes), a per-member rate (mfa.member_checks_per_second) and a per-code
--    cap for SMS codes (mfa.sms_code_max_attempts).
--  * Denied session decisions are durable audit events (session.denied).
--  * attempt_ledger_stats() for monitoring.
\echo Use "ALTER EXTENSION mfa UPDATE TO '0.5.0'" to load this file. \quit

CREATE TABLE mfa.member_lockouts (
    organization_id           text        NOT NULL,
    member_id                 text        NOT NULL,
    failed_attempts           integer     NOT NULL DEFAULT 0,
    failure_window_started_at timestamptz,
    lock_created_at           timestamptz,
    lock_expires_at           timestamptz,
    lock_count                integer     NOT NULL DEFAULT 0,
    updated_at                timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (organization_id, member_id),
    FOREIGN KEY (organization_id, member_id) REFERENCES mfa.members ON DELETE CASCADE,
    CONSTRAINT counts_not_negative CHECK (failed_attempts >= 0 AND lock_count >= 0)
);
COMMENT ON TABLE mfa.member_lockouts IS
    'mfa: durable lockout state of members who failed an attempt (failures in the current window, the lock, consecutive locks), written by the attempt ledger''s worker; the ledger in shared memory is the live copy.';
REVOKE ALL ON mfa.member_lockouts FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('mfa.member_lockouts', '');

-- Locks and counts carry over; a count's window starts now.
INSERT INTO mfa.member_lockouts (organization_id, member_id, failed_attempts, failure_window_started_at,
                                 lock_created_at, lock_expires_at, lock_count)
SELECT organization_id, member_id, failed_attempts,
       CASE WHEN failed_attempts > 0 THEN clock_timestamp() END,
       lock_created_at, lock_expires_at,
       CASE WHEN lock_expires_at > clock_timestamp() THEN 1 ELSE 0 END
  FROM mfa.members
 WHERE failed_attempts > 0 OR lock_expires_at > clock_timestamp();

ALTER TABLE mfa.members
    DROP CONSTRAINT failed_attempts_not_negative,
    DROP COLUMN failed_attempts,
    DROP COLUMN lock_created_at,
    DROP COLUMN lock_expires_at;
COMMENT ON TABLE mfa.members IS
    'mfa: MFA settings of each member; the phone number is E.164, unverified until an SMS code from it is authenticated. Their lock state is in mfa.member_lockouts.';

CREATE FUNCTION mfa.attempt_ledger_stats() RETURNS jsonb /* Jsonb */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'attempt_ledger_stats_wrapper';
REVOKE ALL ON FUNCTION mfa.attempt_ledger_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mfa.attempt_ledger_stats() TO mfa_admin;
COMMENT ON FUNCTION mfa.attempt_ledger_stats() IS
    'mfa: occupancy of the attempt ledger (shared memory): members tracked and configured, records queued for its worker, records dropped.';
COMMENT ON FUNCTION mfa.member_unlock(text, text) IS 'mfa: lifts a member''s lock and resets their failed-attempt count, at once (in the attempt ledger), whatever the caller''s transaction does next.';
