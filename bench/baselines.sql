-- The baselines `make bench` measures the extension against, and the data set it runs on.
-- Loaded into the benchmark database only; nothing here is part of the extension.
--
-- Data set (members are numbered n = 0 … :members - 1):
--   organization 'o' || n / 10 (ten members each); every tenth organization requires MFA;
--   member 'm' || n; even n: TOTP enrolled (all with one shared secret, so one code per time
--   step serves every member); n % 4 = 1: a verified US phone; n % 4 = 3: no factor.
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE SCHEMA IF NOT EXISTS bench;

-- The shared TOTP secret of the data set and its code at each time step.
CREATE TABLE IF NOT EXISTS bench.totp_codes (step bigint PRIMARY KEY, code text NOT NULL);
CREATE SEQUENCE IF NOT EXISTS bench.totp_cursor;
-- The TOTP baselines walk the members with a cursor of their own, so that the extension's cursor
-- comes back to a member only long after (a code is good for one step only).
CREATE SEQUENCE IF NOT EXISTS bench.baseline_cursor;
-- The failure runs walk a pool of their own (see bench/run.py: FAILURE_MEMBERS).
CREATE SEQUENCE IF NOT EXISTS bench.failure_cursor;
CREATE SEQUENCE IF NOT EXISTS bench.sms_send_cursor;
CREATE SEQUENCE IF NOT EXISTS bench.ready_cursor;

-- What people use today: TOTP in PL/pgSQL with pgcrypto's hmac(), secrets stored in base32.
CREATE OR REPLACE FUNCTION bench.base32_decode(secret text) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    alphabet constant text := 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
    cleaned text := upper(replace(rtrim(secret, '='), ' ', ''));
    buffer bigint := 0;
    bits int := 0;
    value int;
    decoded bytea := '';
BEGIN
    FOR i IN 1 .. length(cleaned) LOOP
        value := strpos(alphabet, substr(cleaned, i, 1)) - 1;
        IF value < 0 THEN
            RAISE EXCEPTION 'invalid base32 character';
        END IF;
        buffer := ((buffer << 5) | value) & x'FFFFFFFF'::bigint;
        bits := bits + 5;
        IF bits >= 8 THEN
            bits := bits - 8;
            decoded := decoded || set_byte('\x00'::bytea, 0, ((buffer >> bits) & 255)::int);
        END IF;
    END LOOP;
    RETURN decoded;
END
$$;

CREATE OR REPLACE FUNCTION bench.hotp(key bytea, counter bigint) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    mac bytea := hmac(int8send(counter), key, 'sha1');
    offs int := get_byte(mac, 19) & 15;
    binary_code bigint;
BEGIN
    binary_code := ((get_byte(mac, offs) & 127)::bigint << 24) | (get_byte(mac, offs + 1) << 16)
                 | (get_byte(mac, offs + 2) << 8) | get_byte(mac, offs + 3);
    RETURN lpad((binary_code % 1000000)::text, 6, '0');
END
$$;

-- The step a code matches within ±1 step of `now_step` and after `last_step`, or NULL.
CREATE OR REPLACE FUNCTION bench.plpgsql_totp_match(secret text, code text, now_step bigint, last_step bigint)
RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    key bytea := bench.base32_decode(secret);
BEGIN
    FOR step IN now_step - 1 .. now_step + 1 LOOP
        IF (last_step IS NULL OR step > last_step) AND bench.hotp(key, step) = code THEN
            RETURN step;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TABLE IF NOT EXISTS bench.plpgsql_totp (
    organization_id text NOT NULL,
    member_id       text NOT NULL,
    secret          text NOT NULL,
    last_used_step  bigint,
    PRIMARY KEY (organization_id, member_id)
);

CREATE OR REPLACE FUNCTION bench.plpgsql_totp_authenticate(p_organization_id text, p_member_id text, p_code text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    registration record;
    matched bigint;
BEGIN
    SELECT secret, last_used_step INTO registration FROM bench.plpgsql_totp
     WHERE organization_id = p_organization_id AND member_id = p_member_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    matched := bench.plpgsql_totp_match(registration.secret, p_code,
                                        floor(extract(epoch FROM clock_timestamp()) / 30)::bigint,
                                        registration.last_used_step);
    IF matched IS NULL THEN
        RETURN false;
    END IF;
    UPDATE bench.plpgsql_totp SET last_used_step = matched
     WHERE organization_id = p_organization_id AND member_id = p_member_id;
    RETURN true;
END
$$;

-- Floors: the same row work as the extension's function, without any cryptography.
CREATE TABLE IF NOT EXISTS bench.floor_totp (LIKE mfa.totp_registrations INCLUDING ALL);

CREATE OR REPLACE FUNCTION bench.floor_totp_authenticate(p_organization_id text, p_member_id text, p_code text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    registration record;
BEGIN
    SELECT secret_ciphertext, last_used_step INTO registration FROM bench.floor_totp
     WHERE organization_id = p_organization_id AND member_id = p_member_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE bench.floor_totp SET last_used_step = coalesce(registration.last_used_step, 0) + 1
     WHERE organization_id = p_organization_id AND member_id = p_member_id;
    RETURN true;
END
$$;

-- Ordered request ids for the bookkeeping baseline, as the extension's (time-ordered UUIDs) are:
-- each audit event lands at the right edge of events_request. A sequence makes them for almost
-- nothing; a UUIDv7 built in SQL cost more than the statements it stands beside.
CREATE SEQUENCE IF NOT EXISTS bench.request_ids;

-- The extension's own bookkeeping for a returning member's TOTP success, written in PL/pgSQL and
-- without any cryptography: the same member + policy + authenticator load (both rows locked), the
-- same spend of the code and audit event in one statement, the same answer. Against it, the
-- extension measures what its Rust layer costs; against the floor, this measures what the
-- bookkeeping costs. It writes the real tables, the step unchanged: the extension's own runs need
-- the members' replay state as their successes left it.
CREATE OR REPLACE FUNCTION bench.bookkeeping_totp_authenticate(p_organization_id text, p_member_id text, p_code text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r record;
    request uuid := lpad(to_hex(nextval('bench.request_ids')), 32, '0')::uuid;
BEGIN
    SELECT m.organization_id, m.member_id, m.mfa_enrolled, m.mfa_phone_number, m.mfa_phone_country,
           m.mfa_phone_number_verified, m.phone_id::text AS phone_id, m.default_mfa_method, m.is_breakglass,
           coalesce(l.lock_expires_at > now(), false) AS is_locked, l.lock_created_at, l.lock_expires_at,
           m.created_at, m.updated_at, o.mfa_policy, o.mfa_methods, o.allowed_mfa_methods,
           t.totp_registration_id::text AS totp_registration_id, t.secret_ciphertext, t.status = 'active' AS active,
           coalesce(t.expires_at <= now(), false) AS expired, t.last_used_step, l.failed_attempts
      INTO r
      FROM mfa.members m
      JOIN mfa.organizations o ON o.organization_id = m.organization_id
      JOIN mfa.totp_registrations t ON t.organization_id = m.organization_id AND t.member_id = m.member_id
      LEFT JOIN mfa.member_lockouts l ON l.organization_id = m.organization_id AND l.member_id = m.member_id
     WHERE m.organization_id = p_organization_id AND m.member_id = p_member_id
       FOR NO KEY UPDATE OF m, t;
    IF NOT FOUND OR r.is_locked OR r.expired THEN
        RETURN NULL;
    END IF;
    WITH spent AS (
        UPDATE mfa.totp_registrations
           SET last_used_step = last_used_step, status = 'active',
               expires_at = NULL, activated_at = coalesce(activated_at, now())
         WHERE organization_id = p_organization_id AND member_id = p_member_id)
    INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
    VALUES (p_organization_id, request, 'bench.bookkeeping', p_member_id,
            jsonb_build_object('outcome', 'success', 'mfa_enrolled', NULL, 'with_intermediate_session', false));
    RETURN jsonb_build_object(
        'status_code', 200, 'request_id', request, 'organization_id', r.organization_id,
        'member_id', r.member_id, 'totp_registration_id', r.totp_registration_id,
        'member', jsonb_build_object(
            'organization_id', r.organization_id, 'member_id', r.member_id, 'mfa_enrolled', r.mfa_enrolled,
            'mfa_phone_number', r.mfa_phone_number, 'mfa_phone_number_verified', r.mfa_phone_number_verified,
            'default_mfa_method', r.default_mfa_method, 'totp_registration_id', r.totp_registration_id,
            'is_breakglass', r.is_breakglass, 'is_locked', r.is_locked, 'lock_created_at', NULL,
            'lock_expires_at', NULL, 'created_at', r.created_at, 'updated_at', r.updated_at));
END
$$;

CREATE TABLE IF NOT EXISTS bench.floor_sms_codes (LIKE mfa.sms_codes INCLUDING ALL);
CREATE TABLE IF NOT EXISTS bench.floor_sms_outbox (LIKE mfa.sms_outbox INCLUDING ALL);

CREATE OR REPLACE FUNCTION bench.floor_sms_authenticate(p_organization_id text, p_member_id text, p_code text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    live record;
BEGIN
    SELECT code_hash, expires_at, used_at INTO live FROM bench.floor_sms_codes
     WHERE organization_id = p_organization_id AND member_id = p_member_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE bench.floor_sms_codes SET used_at = now()
     WHERE organization_id = p_organization_id AND member_id = p_member_id;
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION bench.floor_sms_send(p_organization_id text, p_member_id text, p_phone text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench.floor_sms_codes (organization_id, member_id, code_hash, phone_number, expires_at)
    VALUES (p_organization_id, p_member_id, '\x00', p_phone, now() + interval '2 minutes')
    ON CONFLICT (organization_id, member_id) DO UPDATE
       SET code_hash = EXCLUDED.code_hash, created_at = now(), expires_at = EXCLUDED.expires_at, used_at = NULL;
    INSERT INTO bench.floor_sms_outbox (organization_id, member_id, phone_number, country_code,
                                        rate_limit_prefix, locale, body, expires_at)
    VALUES (p_organization_id, p_member_id, p_phone, 'US', left(p_phone, -4), 'en',
            'Your verification code is 000000. It expires in 2 minutes. Do not share it.',
            now() + interval '2 minutes');
    RETURN true;
END
$$;

-- The phone number of member n (n % 4 = 1): spread over many area codes and exchanges, so each
-- block of 10,000 numbers holds only a few members, as real numbers do.
CREATE OR REPLACE FUNCTION bench.phone_of(n bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT '+1' || (ARRAY[201,202,203,205,206,207,208,209,210,212,213,214,215,216,217,218,219,224,
                          225,228,229,231,234,239,240,248,251,252,253,254,256,260,262,267,269,270,
                          272,276,281,301,302,303,304,305,307,308,309,310,312,313])[1 + (n / 4) % 50]
                || (200 + (n / 200) % 800)::text
                || lpad(((n / 160000) % 10000)::text, 4, '0')
$$;

-- Codes sent by the extension, read back from the outbox, for the SMS authentication runs; and
-- login tokens for the session-insert runs.
CREATE TABLE IF NOT EXISTS bench.ready (
    k               bigint PRIMARY KEY,
    organization_id text NOT NULL,
    member_id       text NOT NULL,
    secret          text
);

-- The application's sessions table, with and without the gate (mfa.session_table_guard).
CREATE TABLE IF NOT EXISTS bench.sessions_enforced (
    session_id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id            text NOT NULL,
    member_id                  text NOT NULL,
    intermediate_session_token text,
    authentication_factors     jsonb,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    last_seen_at               timestamptz
);
CREATE TABLE IF NOT EXISTS bench.sessions_plain (LIKE bench.sessions_enforced INCLUDING ALL);
SELECT mfa.session_table_guard('bench.sessions_enforced');

-- A plain SKIP LOCKED queue of the outbox's shape (its indexes included).
CREATE TABLE IF NOT EXISTS bench.plain_queue (LIKE mfa.sms_outbox INCLUDING ALL);
