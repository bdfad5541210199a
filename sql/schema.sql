\echo Use "CREATE EXTENSION mfa" to load this file. \quit
-- mfa: roles, tables, indexes and their documentation (loaded first, before any function).
--
-- Every per-organization table leads its primary key with organization_id, the distribution
-- column should the schema ever be spread over a Citus cluster. No role but the extension's
-- owner reads or writes these tables: everything goes through SECURITY DEFINER functions.

-- Group roles (cluster-wide, so created only if missing; never dropped by the extension).
DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['mfa_admin', 'mfa_app', 'mfa_sms_worker'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$roles$;

COMMENT ON ROLE mfa_admin IS 'mfa: manages organizations, members, factors and the SMS country allowlist.';
COMMENT ON ROLE mfa_app IS 'mfa: runs logins (primary_authenticate, second factors, check_session_policy).';
COMMENT ON ROLE mfa_sms_worker IS 'mfa: SMS delivery workers; may only claim, complete and fail outbox messages.';

REVOKE ALL ON SCHEMA mfa FROM PUBLIC;
GRANT USAGE ON SCHEMA mfa TO mfa_admin, mfa_app, mfa_sms_worker;

CREATE TABLE mfa.organizations (
    organization_id     text        NOT NULL,
    mfa_policy          text        NOT NULL DEFAULT 'OPTIONAL',
    mfa_methods         text        NOT NULL DEFAULT 'ALL_ALLOWED',
    allowed_mfa_methods text[]      NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    remember_device_days integer    NOT NULL DEFAULT 0
        CONSTRAINT remember_device_days_range CHECK (remember_device_days BETWEEN 0 AND 90),
    PRIMARY KEY (organization_id),
    CONSTRAINT organization_id_length CHECK (length(organization_id) BETWEEN 1 AND 128),
    CONSTRAINT mfa_policy_value CHECK (mfa_policy IN ('REQUIRED_FOR_ALL', 'OPTIONAL')),
    CONSTRAINT mfa_methods_value CHECK (mfa_methods IN ('ALL_ALLOWED', 'RESTRICTED')),
    CONSTRAINT allowed_mfa_methods_values CHECK (allowed_mfa_methods <@ ARRAY['sms_otp', 'totp', 'webauthn']),
    CONSTRAINT restricted_needs_methods
        CHECK (mfa_methods <> 'RESTRICTED' OR cardinality(allowed_mfa_methods) > 0)
);
COMMENT ON TABLE mfa.organizations IS
    'mfa: the MFA policy of each organization of the application (ids are the application''s own).';

CREATE TABLE mfa.members (
    organization_id           text        NOT NULL REFERENCES mfa.organizations ON DELETE CASCADE,
    member_id                 text        NOT NULL,
    mfa_enrolled              boolean     NOT NULL DEFAULT false,
    mfa_phone_number          text,
    mfa_phone_country         text,
    mfa_phone_number_verified boolean     NOT NULL DEFAULT false,
    phone_id                  uuid,
    default_mfa_method        text,
    is_breakglass             boolean     NOT NULL DEFAULT false,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    webauthn_user_handle      bytea,
    webauthn_registrations    integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, member_id),
    CONSTRAINT member_id_length CHECK (length(member_id) BETWEEN 1 AND 128),
    CONSTRAINT default_mfa_method_value CHECK (default_mfa_method IN ('sms_otp', 'totp', 'webauthn')),
    CONSTRAINT webauthn_user_handle_length CHECK (octet_length(webauthn_user_handle) = 32),
    CONSTRAINT webauthn_registrations_not_negative CHECK (webauthn_registrations >= 0),
    CONSTRAINT phone_is_e164 CHECK (mfa_phone_number ~ '^\+[1-9][0-9]{6,14}$'),
    CONSTRAINT phone_has_id CHECK ((mfa_phone_number IS NULL) = (phone_id IS NULL))
);
COMMENT ON TABLE mfa.members IS
    'mfa: MFA settings of each member; the phone number is E.164, unverified until an SMS code from it is authenticated. Their lock state is in mfa.member_lockouts.';
COMMENT ON COLUMN mfa.members.webauthn_user_handle IS
    'mfa: the member''s WebAuthn user handle (random, made at their first passkey registration): what authenticators store for them, never the member id.';
COMMENT ON COLUMN mfa.members.webauthn_registrations IS
    'mfa: how many passkeys the member has (kept by the statements that add and remove them), so that loading a member reads no other table for it.';

-- Written only by the attempt ledger's worker, in transactions of its own: a failure counts
-- whatever the caller's transaction does. A row of its own, so that the worker never waits for a
-- member's row lock (held by an attempt until its caller commits).
CREATE TABLE mfa.member_lockouts (
    organization_id           text        NOT NULL,
    member_id                 text        NOT NULL,
    failed_attempts           integer     NOT NULL DEFAULT 0,
    failure_window_started_at timestamptz,
    lock_created_at           timestamptz,
    lock_expires_at           timestamptz,
    lock_count                integer     NOT NULL DEFAULT 0,
    updated_at                timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Set by the worker on a lock or a suspected theft (0.9.0): a remembered device created then
    -- or before is never honoured, even one whose revocation a caller's row lock made it skip.
    devices_revoked_before    timestamptz,
    PRIMARY KEY (organization_id, member_id),
    FOREIGN KEY (organization_id, member_id) REFERENCES mfa.members ON DELETE CASCADE,
    CONSTRAINT counts_not_negative CHECK (failed_attempts >= 0 AND lock_count >= 0)
);
COMMENT ON TABLE mfa.member_lockouts IS
    'mfa: durable lockout state of members who failed an attempt (failures in the current window, the lock, consecutive locks), written by the attempt ledger''s worker; the ledger in shared memory is the live copy.';
-- mfa.metrics() counts the members locked now from the members with a lock only. A failure that
-- locks nobody leaves lock_expires_at as it was: the writer's update stays HOT.
CREATE INDEX member_lockouts_locked ON mfa.member_lockouts (lock_expires_at)
    WHERE lock_expires_at IS NOT NULL;
COMMENT ON COLUMN mfa.member_lockouts.devices_revoked_before IS
    'mfa: remembered devices created at or before this time (a lock, a suspected theft) are revoked: never honoured nor listed, whatever row locks kept the worker from deleting them.';

CREATE TABLE mfa.totp_registrations (
    organization_id      text        NOT NULL,
    member_id            text        NOT NULL,
    totp_registration_id uuid        NOT NULL DEFAULT gen_random_uuid(),
    secret_ciphertext    bytea       NOT NULL,
    status               text        NOT NULL,
    expires_at           timestamptz,
    last_used_step       bigint,
    created_at           timestamptz NOT NULL DEFAULT now(),
    activated_at         timestamptz,
    PRIMARY KEY (organization_id, totp_registration_id),
    UNIQUE (organization_id, member_id),
    FOREIGN KEY (organization_id, member_id) REFERENCES mfa.members ON DELETE CASCADE,
    CONSTRAINT status_value CHECK (status IN ('pending', 'active')),
    CONSTRAINT pending_expires CHECK ((status = 'pending') = (expires_at IS NOT NULL))
) WITH (fillfactor = 90);  -- room for the HOT update of every successful code
COMMENT ON TABLE mfa.totp_registrations IS
    'mfa: one authenticator-app registration per member, pending until its first code; the secret is AEAD-encrypted and bound to its row; last_used_step makes every code single-use.';

-- Passkeys (WebAuthn): the origins the project's pages are served from, each member's
-- registered credentials, and the challenges handed to browsers.
CREATE TABLE mfa.webauthn_allowed_origins (
    origin   text        NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (origin),
    CONSTRAINT origin_length CHECK (length(origin) BETWEEN 1 AND 512)
);
COMMENT ON TABLE mfa.webauthn_allowed_origins IS
    'mfa: project-wide origins (https://host[:port]; http only for localhost and 127.0.0.1) whose pages may register and use passkeys; a relying-party domain must be the host of one of them or a registrable suffix of it.';

CREATE TABLE mfa.webauthn_registrations (
    organization_id          text        NOT NULL,
    webauthn_registration_id uuid        NOT NULL,
    member_id                text        NOT NULL,
    credential_id            bytea       NOT NULL,
    public_key               bytea       NOT NULL,
    algorithm                integer     NOT NULL,
    sign_count               bigint      NOT NULL DEFAULT 0,
    domain                   text        NOT NULL,
    name                     text,
    user_agent               text,
    authenticator_type       text,
    aaguid                   uuid        NOT NULL,
    attestation_format       text        NOT NULL,
    transports               text[]      NOT NULL DEFAULT '{}',
    user_verified            boolean     NOT NULL,
    backup_eligible          boolean     NOT NULL,
    backed_up                boolean     NOT NULL,
    clone_suspected_at       timestamptz,
    created_at               timestamptz NOT NULL DEFAULT now(),
    last_authenticated_at    timestamptz,
    PRIMARY KEY (organization_id, webauthn_registration_id),
    FOREIGN KEY (organization_id, member_id) REFERENCES mfa.members ON DELETE CASCADE,
    CONSTRAINT credential_id_length CHECK (octet_length(credential_id) BETWEEN 16 AND 1023),
    CONSTRAINT algorithm_value CHECK (algorithm IN (-7, -8, -257)),
    CONSTRAINT sign_count_range CHECK (sign_count BETWEEN 0 AND 4294967295),
    CONSTRAINT name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    CONSTRAINT user_agent_length CHECK (char_length(user_agent) <= 512),
    CONSTRAINT authenticator_type_value CHECK (authenticator_type IN ('platform', 'cross-platform'))
);
COMMENT ON TABLE mfa.webauthn_registrations IS
    'mfa: members'' passkeys: the credential id, its COSE public key and signature counter (WebAuthn §6.1.1: a counter that does not move forward sets clone_suspected_at, and the passkey is refused from then on).';
-- A credential is registered once in the whole project (on Citus: once per organization, see
-- mfa.distribute()).
CREATE UNIQUE INDEX webauthn_registrations_credential ON mfa.webauthn_registrations (credential_id);
CREATE INDEX webauthn_registrations_member ON mfa.webauthn_registrations (organization_id, member_id);

CREATE TABLE mfa.webauthn_challenges (
    organization_id    text        NOT NULL,
    member_id          text        NOT NULL,
    challenge_hash     bytea       NOT NULL,
    ceremony           text        NOT NULL,
    token_hash         bytea,
    domain             text        NOT NULL,
    user_verification  text        NOT NULL,
    authenticator_type text,
    user_agent         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    PRIMARY KEY (organization_id, member_id, challenge_hash),
    FOREIGN KEY (organization_id, member_id) REFERENCES mfa.members ON DELETE CASCADE,
    CONSTRAINT ceremony_value CHECK (ceremony IN ('registration', 'authentication')),
    CONSTRAINT user_verification_value CHECK (user_verification IN ('required', 'preferred', 'discouraged'))
);
COMMENT ON TABLE mfa.webauthn_challenges IS
    'mfa: challenges handed to browsers (SHA-256 only), each bound to its member, ceremony and intermediate session token, single use: the first verification that presents one deletes it.';

CREATE TABLE mfa.recovery_codes (
    organization_id text        NOT NULL,
    member_id       text        NOT NULL,
    code_hash       bytea       NOT NULL,
    key_id          text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    used_at         timestamptz,
    PRIMARY KEY (organization_id, member_id, code_hash),
    FOREIGN KEY (organization_id, member_id) REFERENCES mfa.members ON DELETE CASCADE
);
COMMENT ON TABLE mfa.recovery_codes IS
    'mfa: recovery codes as keyed hashes (NIST 800-63B look-up secrets); each works once.';

CREATE TABLE mfa.sms_codes (
    organization_id text        NOT NULL,
    member_id       text        NOT NULL,
    code_hash       bytea       NOT NULL,
    phone_number    text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz,
    key_id          text,
    PRIMARY KEY (organization_id, member_id),
    FOREIGN KEY (organization_id, member_id) REFERENCES mfa.members ON DELETE CASCADE
) WITH (fillfactor = 90);  -- room for the HOT update of every successful code
COMMENT ON TABLE mfa.sms_codes IS
    'mfa: the one live SMS code of each member, as a keyed hash; a new send replaces it.';
COMMENT ON COLUMN mfa.sms_codes.key_id IS
    'mfa: fingerprint of the master key that hashed the code (NULL: sent before 0.6.0, checked against every known key).';

CREATE TABLE mfa.sms_outbox (
    organization_id     text        NOT NULL,
    message_id          bigint      GENERATED ALWAYS AS IDENTITY,
    member_id           text        NOT NULL,
    phone_number        text        NOT NULL,
    country_code        text        NOT NULL,
    rate_limit_prefix   text        NOT NULL,
    locale              text        NOT NULL,
    body                text        NOT NULL,
    code_ciphertext     bytea,
    status              text        NOT NULL DEFAULT 'pending',
    attempts            integer     NOT NULL DEFAULT 0,
    visible_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    provider_message_id text,
    last_error          text,
    to_verified_number  boolean     NOT NULL DEFAULT false,
    receipt_hash        bytea,
    claimed_by          name,
    PRIMARY KEY (organization_id, message_id),
    FOREIGN KEY (organization_id, member_id) REFERENCES mfa.members ON DELETE CASCADE,
    CONSTRAINT status_value CHECK (status IN ('pending', 'sent', 'dead', 'expired'))
);
COMMENT ON TABLE mfa.sms_outbox IS
    'mfa: SMS messages for delivery workers (claim with SKIP LOCKED, complete, fail). The body holds ****** where the code goes; the code itself is AEAD-encrypted in code_ciphertext, put into the text only by sms_outbox_claim, and erased once the message is sent, dead or expired.';
-- Only pending messages are ever claimed: the partial index stays small however many are delivered.
CREATE INDEX sms_outbox_deliverable ON mfa.sms_outbox (visible_at) WHERE status = 'pending';
-- A tenant's own worker (sms_outbox_claim's for_organization) reads only its organization's.
CREATE INDEX sms_outbox_organization_deliverable ON mfa.sms_outbox (organization_id, visible_at)
    WHERE status = 'pending';
-- Retiring expired messages stops at the first one that is still alive.
CREATE INDEX sms_outbox_expiring ON mfa.sms_outbox (expires_at) WHERE status = 'pending';
-- mfa.metrics() counts the dead messages (kept for operators, few) without reading the delivered ones.
CREATE INDEX sms_outbox_dead ON mfa.sms_outbox (organization_id) WHERE status = 'dead';
CREATE INDEX sms_outbox_message_id ON mfa.sms_outbox (message_id);
CREATE INDEX sms_outbox_phone_recent ON mfa.sms_outbox (phone_number, created_at);
CREATE INDEX sms_outbox_prefix_recent ON mfa.sms_outbox (rate_limit_prefix, created_at);
COMMENT ON COLUMN mfa.sms_outbox.to_verified_number IS
    'mfa: sent to a number the member had proven: counted by the member''s own limits only, never by the global per-number and per-block guards (which another organization could otherwise fill).';
COMMENT ON COLUMN mfa.sms_outbox.receipt_hash IS
    'mfa: SHA-256 of the receipt handed out by the message''s latest claim; complete and fail need the receipt, while the claim lasts.';
-- The per-member send limits.
CREATE INDEX sms_outbox_member_recent ON mfa.sms_outbox (organization_id, member_id, created_at);

CREATE TABLE mfa.sms_worker_grants (
    organization_id text        NOT NULL REFERENCES mfa.organizations ON DELETE CASCADE,
    role_name       name        NOT NULL,
    granted_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    role_oid        oid,
    PRIMARY KEY (organization_id, role_name)
);
COMMENT ON TABLE mfa.sms_worker_grants IS
    'mfa: tenant-operated SMS workers: a role listed here claims, completes and fails the messages of its organizations only (a worker role not listed serves every organization).';
COMMENT ON COLUMN mfa.sms_worker_grants.role_oid IS
    'mfa: the bound role itself. A row serves its organization to the role with this oid and name; a role matching either is bound (so a renamed, dropped-and-recreated or restored role serves nothing until sms_worker_grant names it again).';
CREATE INDEX sms_worker_grants_role ON mfa.sms_worker_grants (role_name);
CREATE INDEX sms_worker_grants_role_oid ON mfa.sms_worker_grants (role_oid);

CREATE TABLE mfa.intermediate_sessions (
    organization_id text        NOT NULL,
    token_hash      bytea       NOT NULL,
    member_id       text        NOT NULL,
    primary_factor  text,
    locale          text        NOT NULL DEFAULT 'en',
    factors         jsonb       NOT NULL DEFAULT '[]',
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    -- Last in the row: adding a factor then rewrites only the end of the row, and the update's WAL
    -- record carries just that (the unchanged beginning is left out).
    proven_factors  jsonb       NOT NULL DEFAULT '[]',
    -- Set (instead of deleting the row) when the gate consumes the token of an organization that
    -- remembers devices: remembered_device_create still needs the login until it expires.
    consumed_at     timestamptz,
    -- The request ids of the login's steps: its start, then each factor proven with it (in the
    -- order of factors || proven_factors), for the one audit event of the login (its story).
    request_ids     uuid[]      NOT NULL DEFAULT '{}',
    PRIMARY KEY (organization_id, member_id, token_hash),
    FOREIGN KEY (organization_id, member_id) REFERENCES mfa.members ON DELETE CASCADE
) WITH (fillfactor = 80);  -- room for the factor a login adds, without new index entries
COMMENT ON TABLE mfa.intermediate_sessions IS
    'mfa: logins in progress: the SHA-256 of each intermediate session token and the factors proven with it. The session gate consumes a token by deleting its row (the audit trail keeps the login); expired tokens go when the member''s next login starts or at the database''s upkeep (the attempt ledger''s writer), each login that no session consumed recorded then as login.abandoned. A step-up token (step_up_start) has no primary_factor and can only raise an existing session''s assurance.';
COMMENT ON COLUMN mfa.intermediate_sessions.factors IS
    'mfa: the factor the login started with (Stytch JSON; empty for a step-up); proven_factors holds those proven with the token since.';

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

CREATE TABLE mfa.events (
    organization_id text        NOT NULL,
    event_id        bigint      GENERATED ALWAYS AS IDENTITY,
    occurred_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    request_id      uuid        NOT NULL,
    event_type      text        NOT NULL,
    member_id       text,
    actor           text        NOT NULL DEFAULT session_user,
    details         jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (organization_id, event_id)
);
COMMENT ON TABLE mfa.events IS
    'mfa: audit trail of every state change and authentication decision (organization_id '''' for project-wide events); never holds a secret.';
-- Request ids are time-ordered (UUID version 7): a block range index finds a request's events
-- for a few bytes per thousand rows, where a B-tree cost each audit row ~30 bytes and a leaf
-- entry in the WAL.
CREATE INDEX events_request ON mfa.events USING brin (request_id) WITH (autosummarize = on);
-- A member's events, newest first: events_search's member filter and members_search's last MFA
-- (a B-tree entry per event that names a member).
CREATE INDEX events_member ON mfa.events (organization_id, member_id, event_id)
    WHERE member_id IS NOT NULL;

-- NOTIFY mfa_events at commit for the security-relevant events, whoever writes them (a call in
-- its caller's transaction, the attempt ledger's worker in its own): a factor added or removed
-- (details.factor_added / factor_removed), a member locked (details.lock_started), a suspected
-- theft of a remembered device, a session's step-up. The payload names the event, its
-- organization and type and why it was sent, never a member or a detail: any role that can
-- connect may LISTEN.
CREATE FUNCTION mfa._events_notify() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('mfa_events', pg_catalog.json_build_object(
        'event_id', NEW.event_id,
        'organization_id', NEW.organization_id,
        'event_type', NEW.event_type,
        'notice', CASE WHEN NEW.details ? 'lock_started' THEN 'member_locked'
                       WHEN NEW.details ? 'factor_added' THEN 'factor_added'
                       WHEN NEW.details ? 'factor_removed' THEN 'factor_removed'
                       WHEN NEW.event_type = 'remembered_device.theft_suspected' THEN 'theft_suspected'
                       ELSE 'step_up' END)::text);
    RETURN NULL;
END
$$;
-- The WHEN clause keeps every other event free of a trigger call.
CREATE TRIGGER mfa_events_notify AFTER INSERT ON mfa.events FOR EACH ROW
    WHEN (NEW.event_type IN ('remembered_device.theft_suspected', 'session.stepped_up')
          OR NEW.details ?| ARRAY['factor_added', 'factor_removed', 'lock_started'])
    EXECUTE FUNCTION mfa._events_notify();
COMMENT ON TRIGGER mfa_events_notify ON mfa.events IS
    'mfa: NOTIFY mfa_events (JSON payload: event_id, organization_id, event_type, notice) at commit for a factor added or removed, a member locked, a suspected theft of a remembered device, a session step-up.';

CREATE TABLE mfa.country_code_allowlist (
    country_code text PRIMARY KEY,
    added_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT country_code_shape CHECK (country_code ~ '^[A-Z]{2}$')
);
COMMENT ON TABLE mfa.country_code_allowlist IS
    'mfa: project-wide countries SMS may be sent to; while empty, the default {CA,US} applies (so a dump restores cleanly over a fresh CREATE EXTENSION).';

CREATE TABLE mfa.database_keys (
    key_id     text        PRIMARY KEY,
    key        bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT key_length CHECK (octet_length(key) = 32)
);
COMMENT ON TABLE mfa.database_keys IS
    'mfa: per-database master keys for development, generated when the server has no key of its own (mfa.encryption_key_file); they always decrypt, and the oldest encrypts while the server has no key. Readable by the owner only, but kept in dumps.';

CREATE TABLE mfa.sms_number_blocks (
    number_block text NOT NULL,
    PRIMARY KEY (number_block),
    CONSTRAINT number_block_shape CHECK (number_block ~ '^\+[0-9]{1,14}$')
);
COMMENT ON TABLE mfa.sms_number_blocks IS
    'mfa: one row per block of 10,000 phone numbers (an E.164 number but its last four digits) that codes were sent to; a send locks its block''s row, so the send limits count every earlier send. Only the extension can take these locks.';

REVOKE ALL ON ALL TABLES IN SCHEMA mfa FROM PUBLIC;

-- pg_dump keeps the rows of these extension tables.
SELECT pg_catalog.pg_extension_config_dump('mfa.organizations', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.members', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.member_lockouts', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.totp_registrations', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.recovery_codes', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.sms_codes', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.sms_outbox', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.intermediate_sessions', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.events', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.remembered_devices', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.remembered_device_retired_tokens', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.country_code_allowlist', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.database_keys', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.sms_worker_grants', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.webauthn_allowed_origins', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.webauthn_registrations', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.webauthn_challenges', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.sms_outbox_message_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.events_event_id_seq', '');
