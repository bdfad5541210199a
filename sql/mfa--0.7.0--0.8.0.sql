\echo Use "ALTER EXTENSION mfa UPDATE TO '0.8.0'" to load this file. \quit
-- mfa 0.7.0 → 0.8.0: remembered devices (adaptive MFA, issue 18).
--  * organizations.remember_device_days (0, the default: off; up to 90).
--  * mfa.remembered_devices and the tokens they rotated away; remembered_device_create,
--    remembered_devices_get, remembered_device_revoke; primary_authenticate takes a device token
--    and its fingerprint.
--  * Where devices are remembered, the session gate marks a consumed token (consumed_at) instead
--    of deleting its row, so that remembered_device_create still finds the login until it expires.
--  * organization_upsert and primary_authenticate gain arguments: their old signatures go (calls
--    by name or position keep working; a view or function of yours that names the old signature
--    must be recreated).

ALTER TABLE mfa.organizations
    ADD COLUMN remember_device_days integer NOT NULL DEFAULT 0
        CONSTRAINT remember_device_days_range CHECK (remember_device_days BETWEEN 0 AND 90);

ALTER TABLE mfa.intermediate_sessions ADD COLUMN consumed_at timestamptz;

CREATE TABLE mfa.remembered_devices (
    organization_id  text        NOT NULL,
    member_id        text        NOT NULL,
    device_id        uuid        NOT NULL DEFAULT gen_random_uuid(),
    token_hash       bytea       NOT NULL,
    fingerprint_hash bytea,
    device_name      text,
    login_token_hash bytea       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_used_at     timestamptz,
    expires_at       timestamptz NOT NULL,
    PRIMARY KEY (organization_id, member_id, device_id),
    CONSTRAINT remembered_devices_token UNIQUE (organization_id, token_hash),
    CONSTRAINT remembered_devices_login UNIQUE (organization_id, login_token_hash),
    FOREIGN KEY (organization_id, member_id) REFERENCES mfa.members ON DELETE CASCADE,
    CONSTRAINT device_name_length CHECK (char_length(device_name) BETWEEN 1 AND 200)
);
COMMENT ON TABLE mfa.remembered_devices IS
    'mfa: devices a member chose to remember after a second factor: a login presenting the device''s current token (SHA-256 here; the token rotates on every use) skips MFA until expires_at. One device per login (login_token_hash).';
COMMENT ON COLUMN mfa.remembered_devices.fingerprint_hash IS
    'mfa: SHA-256 of the fingerprint the device was bound to (NULL: not bound); a login must present the same one.';

-- The tokens a device rotated away: one presented again is a copied cookie, and revokes every
-- device of its member. They go with their device.
CREATE TABLE mfa.remembered_device_retired_tokens (
    organization_id text        NOT NULL,
    token_hash      bytea       NOT NULL,
    member_id       text        NOT NULL,
    device_id       uuid        NOT NULL,
    retired_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (organization_id, token_hash),
    FOREIGN KEY (organization_id, member_id, device_id) REFERENCES mfa.remembered_devices ON DELETE CASCADE
);
COMMENT ON TABLE mfa.remembered_device_retired_tokens IS
    'mfa: SHA-256 of every token a remembered device rotated away, until the device goes: presented again, it revokes the member''s remembered devices (suspected theft).';
CREATE INDEX remembered_device_retired_tokens_device
    ON mfa.remembered_device_retired_tokens (organization_id, member_id, device_id);

REVOKE ALL ON mfa.remembered_devices, mfa.remembered_device_retired_tokens FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('mfa.remembered_devices', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.remembered_device_retired_tokens', '');

DROP FUNCTION mfa.organization_upsert(text, text, text, text[]);
DROP FUNCTION mfa.primary_authenticate(text, text, text, text);

CREATE FUNCTION mfa.organization_upsert(
	"organization_id" TEXT,
	"mfa_policy" TEXT DEFAULT NULL,
	"mfa_methods" TEXT DEFAULT NULL,
	"allowed_mfa_methods" TEXT[] DEFAULT NULL,
	"remember_device_days" INT DEFAULT NULL
) RETURNS jsonb
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'organization_upsert_wrapper';

CREATE FUNCTION mfa.primary_authenticate(
	"organization_id" TEXT,
	"member_id" TEXT,
	"method" TEXT DEFAULT 'password',
	"locale" TEXT DEFAULT 'en',
	"device_token" TEXT DEFAULT NULL,
	"device_fingerprint" TEXT DEFAULT NULL
) RETURNS jsonb
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'primary_authenticate_wrapper';

CREATE FUNCTION mfa.remembered_device_create(
	"organization_id" TEXT,
	"member_id" TEXT,
	"intermediate_session_token" TEXT,
	"device_fingerprint" TEXT DEFAULT NULL,
	"device_name" TEXT DEFAULT NULL
) RETURNS jsonb
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'remembered_device_create_wrapper';

CREATE FUNCTION mfa.remembered_devices_get(
	"organization_id" TEXT,
	"member_id" TEXT
) RETURNS jsonb
STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'remembered_devices_get_wrapper';

CREATE FUNCTION mfa.remembered_device_revoke(
	"organization_id" TEXT,
	"member_id" TEXT,
	"device_id" TEXT DEFAULT NULL
) RETURNS jsonb
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'remembered_device_revoke_wrapper';

REVOKE ALL ON FUNCTION
    mfa.organization_upsert(text, text, text, text[], integer),
    mfa.primary_authenticate(text, text, text, text, text, text),
    mfa.remembered_device_create(text, text, text, text, text),
    mfa.remembered_devices_get(text, text),
    mfa.remembered_device_revoke(text, text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mfa.organization_upsert(text, text, text, text[], integer) TO mfa_admin;
GRANT EXECUTE ON FUNCTION
    mfa.primary_authenticate(text, text, text, text, text, text),
    mfa.remembered_device_create(text, text, text, text, text)
TO mfa_app;
GRANT EXECUTE ON FUNCTION
    mfa.remembered_devices_get(text, text),
    mfa.remembered_device_revoke(text, text, text)
TO mfa_admin, mfa_app;
COMMENT ON FUNCTION mfa.remembered_device_create(text, text, text, text, text) IS
    'mfa: remembers the device of a login that proved a second factor (before or after its session, while its token is unexpired; one device per login) for the organization''s remember_device_days; returns device_id and device_token (shown once, stored hashed), optionally bound to a fingerprint.';
COMMENT ON FUNCTION mfa.remembered_devices_get(text, text) IS
    'mfa: the member''s unexpired remembered devices (device_id, device_name, created_at, last_used_at, expires_at); never a token.';
COMMENT ON FUNCTION mfa.remembered_device_revoke(text, text, text) IS
    'mfa: revokes one of the member''s remembered devices, or all of them when device_id is NULL; returns how many. Audited.';
COMMENT ON FUNCTION mfa.organization_upsert(text, text, text, text[], integer) IS
    'mfa: creates an organization or changes its MFA settings (mfa_policy REQUIRED_FOR_ALL|OPTIONAL, mfa_methods ALL_ALLOWED|RESTRICTED, allowed_mfa_methods ⊆ {sms_otp,totp}, remember_device_days 0 (off) to 90; turning it off revokes every remembered device); NULL keeps a value.';
COMMENT ON FUNCTION mfa.primary_authenticate(text, text, text, text, text, text) IS
    'mfa: starts a login after the application''s own primary check; returns the intermediate session token (shown once) and what MFA the login needs; sends the SMS code at once when SMS is the member''s method. A remembered device''s token (and its fingerprint) stands in for MFA and is rotated: the answer carries its new device_token; any other token is ignored, and one that was rotated away revokes the member''s remembered devices.';

-- A remembered device meets the policy (aal2); mfa.last_mfa_at still ignores it.
CREATE OR REPLACE FUNCTION mfa.session_aal(authentication_factors jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN EXISTS (
               SELECT FROM jsonb_array_elements(CASE jsonb_typeof($1) WHEN 'array' THEN $1 ELSE '[]' END) AS f
                WHERE f ->> 'type' IN ('totp', 'recovery_codes', 'remembered_device')
                   OR (f ->> 'type' = 'otp' AND f ->> 'delivery_method' = 'sms'))
           THEN 'aal2' ELSE 'aal1' END
$$;
COMMENT ON FUNCTION mfa.session_aal(jsonb) IS
    'mfa: the assurance level of a session from its gate-written factors column: aal2 when it carries a second factor or a remembered device, else aal1.';
COMMENT ON FUNCTION mfa.last_mfa_at(jsonb) IS
    'mfa: when the newest second factor of a session''s gate-written factors column was proven (NULL when none; a remembered device is not one): for RLS policies such as last_mfa_at(f) > now() - interval ''15 minutes''.';

-- DDL is refused only for the guarded tables the role running it could have changed: a guard a
-- superuser broke on one owner's table no longer refuses every other owner's DDL.
CREATE OR REPLACE FUNCTION mfa._session_guard_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g record;
    problem text;
    invoker text;
BEGIN
    -- is_superuser follows SET ROLE and SET SESSION AUTHORIZATION, not this function's owner.
    IF current_setting('is_superuser')::boolean THEN
        FOR g IN DELETE FROM mfa.guarded_session_tables d
                  WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = d.session_table)
                 RETURNING d.table_name LOOP
            INSERT INTO mfa.events (organization_id, request_id, event_type, details)
            VALUES ('', gen_random_uuid(), 'session_table.dropped', jsonb_build_object('session_table', g.table_name));
        END LOOP;
        RETURN;
    END IF;
    -- Only the tables this role could have changed: those of a role it belongs to, or on which
    -- it may create triggers (and any that is gone). A guard broken on another owner's table (a
    -- superuser may) is not this command's doing and must not refuse it.
    invoker := CASE current_setting('role') WHEN 'none' THEN session_user::text ELSE current_setting('role') END;
    FOR g IN SELECT d.session_table, d.table_name FROM mfa.guarded_session_tables d
               LEFT JOIN pg_catalog.pg_class c ON c.oid = d.session_table
              WHERE c.oid IS NULL OR pg_catalog.pg_has_role(invoker, c.relowner, 'MEMBER')
                 OR pg_catalog.has_table_privilege(invoker, c.oid, 'TRIGGER') LOOP
        problem := mfa.session_table_guard_check(g.session_table);
        IF problem IS NOT NULL THEN
            -- The error rolls the command back, audit rows with it: the server log keeps the refusal.
            RAISE LOG 'mfa: refused % by role % (session user %): %', tg_tag, current_setting('role'), session_user, problem;
            RAISE EXCEPTION 'insufficient_privilege: % refused: %', tg_tag, problem
                USING ERRCODE = '42501',
                      HINT = 'Only mfa.session_table_unguard (mfa_admin) takes a sessions table''s guard off.';
        END IF;
    END LOOP;
END
$$;
