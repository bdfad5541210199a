-- mfa: privileges and documentation of the functions (loaded last, after every function exists).
--
-- Functions run SECURITY DEFINER with search_path = pg_catalog, pg_temp; PostgreSQL grants EXECUTE
-- to PUBLIC by default, so everything is revoked first and granted back role by role.

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA mfa FROM PUBLIC;

-- Administration.
GRANT EXECUTE ON FUNCTION
    mfa.organization_upsert(text, text, text, text[], integer),
    mfa.organization_get(text),
    mfa.organization_delete(text),
    mfa.member_upsert(text, text, text, boolean, text, boolean, boolean, boolean),
    mfa.member_reset_mfa(text, text),
    mfa.member_get(text, text),
    mfa.member_delete(text, text),
    mfa.member_unlock(text, text),
    mfa.member_delete_mfa_phone_number(text, text, text)
TO mfa_admin;

COMMENT ON FUNCTION mfa.organization_upsert(text, text, text, text[], integer) IS
    'mfa: creates an organization or changes its MFA settings (mfa_policy REQUIRED_FOR_ALL|OPTIONAL, mfa_methods ALL_ALLOWED|RESTRICTED, allowed_mfa_methods ⊆ {sms_otp,totp,webauthn}, remember_device_days 0 (off) to 90; turning it off revokes every remembered device); NULL keeps a value.';
COMMENT ON FUNCTION mfa.organization_get(text) IS 'mfa: the organization object.';
COMMENT ON FUNCTION mfa.organization_delete(text) IS
    'mfa: deletes an organization and, by cascade, its members, factors, codes, messages and logins in progress.';
COMMENT ON FUNCTION mfa.member_upsert(text, text, text, boolean, text, boolean, boolean, boolean) IS
    'mfa: creates a member or changes mfa_phone_number (E.164, unverified until an SMS code is authenticated; a verified number is replaced only with replace_mfa_phone_number, and any new number revokes remembered devices), mfa_enrolled, default_mfa_method, is_breakglass, mfa_phone_number_verified (an import); NULL keeps a value.';
COMMENT ON FUNCTION mfa.member_get(text, text) IS 'mfa: the member object.';
COMMENT ON FUNCTION mfa.member_delete(text, text) IS 'mfa: deletes a member with their factors, codes and logins in progress.';
COMMENT ON FUNCTION mfa.member_unlock(text, text) IS 'mfa: lifts a member''s lock and resets their failed-attempt count, at once (in the attempt ledger), whatever the caller''s transaction does next.';
-- Monitoring: the administrators, and the roles of monitoring agents (pg_monitor's members).
-- pg_monitor may use the schema for this function: no table, and no other function, is granted to it.
GRANT USAGE ON SCHEMA mfa TO pg_monitor;
GRANT EXECUTE ON FUNCTION mfa.metrics(boolean) TO mfa_admin, pg_monitor;
COMMENT ON FUNCTION mfa.metrics(boolean) IS
    'mfa: one row per Prometheus sample (name, labels, value): logins started and second-factor attempts by method and outcome since this server started (shared memory: all its databases together, reset at restart, per node), the attempt ledger''s fill and queue, the SMS outbox (pending, claimed, dead, the oldest pending message''s age) and the members locked now; with per_organization, the outbox and lock figures of each organization that has any.';
GRANT EXECUTE ON FUNCTION mfa.attempt_ledger_stats() TO mfa_admin;
COMMENT ON FUNCTION mfa.attempt_ledger_stats() IS
    'mfa: occupancy of the attempt ledger (shared memory): members tracked and configured, records queued for its worker, records dropped.';
COMMENT ON FUNCTION mfa.member_delete_mfa_phone_number(text, text, text) IS
    'mfa: removes a member''s phone number and its live SMS code, and revokes their remembered devices: mfa_admin''s to do, or mfa_app''s with a token carrying a second factor proven with it; a member cannot remove the last factor their organization requires.';
-- Reports: an organization's members by MFA state, its audit trail.
GRANT EXECUTE ON FUNCTION
    mfa.members_search(text, jsonb, text, integer),
    mfa.events_search(text, jsonb, text, integer)
TO mfa_admin;
COMMENT ON FUNCTION mfa.members_search(text, jsonb, text, integer) IS
    'mfa: a page (page_size 1–1000, default 100) of an organization''s member objects in member_id order, those that pass filter (mfa_enrolled, has_totp, has_phone (verified), has_passkey, locked, breakglass, no_factor, last_mfa_before, last_mfa_after); results_metadata holds the total that pass and the next_cursor (NULL on the last page).';
COMMENT ON FUNCTION mfa.events_search(text, jsonb, text, integer) IS
    'mfa: a page (page_size 1–1000, default 100) of an organization''s audit events, newest first, those that pass filter (member_id, event_type: one or an array, after (inclusive), before (exclusive)); results_metadata.next_cursor is NULL on the last page. Events never hold a secret.';
COMMENT ON FUNCTION mfa._events_notify() IS
    'mfa (internal): the trigger of mfa.events that sends NOTIFY mfa_events (event_id, organization_id, event_type, notice) for the security-relevant events.';

-- Authenticator apps and recovery codes.
GRANT EXECUTE ON FUNCTION
    mfa.totp_migrate(text, text, text, text[]),
    mfa.member_delete_totp(text, text, text),
    mfa.country_code_allowlist_get(),
    mfa.country_code_allowlist_set(text[])
TO mfa_admin;
GRANT EXECUTE ON FUNCTION
    mfa.recovery_codes_get(text, text),
    mfa.recovery_codes_rotate(text, text, text),
    mfa.qr_code_text(text),
    mfa.totp_verify(text, text, timestamp with time zone),
    mfa.sms_country_supported(text),
    mfa.enforce_session_policy(),
    mfa.session_aal(jsonb),
    mfa.last_mfa_at(jsonb),
    mfa.session_aal(text, text, jsonb),
    mfa.last_mfa_at(text, text, jsonb),
    mfa.session_verified_factors(text, text, jsonb),
    mfa.session_phishing_resistant(jsonb),
    mfa.session_amr(jsonb),
    mfa.session_phishing_resistant(text, text, jsonb),
    mfa.session_amr(text, text, jsonb)
TO mfa_admin, mfa_app;

-- The guard of the application's sessions tables: installed and taken off by mfa_admin only.
-- mfa.session_gate() runs only as a trigger; PUBLIC may execute it because a partition created or
-- attached by the table's owner clones the guard's triggers, which PostgreSQL allows only to a
-- role that may execute their function. Extra triggers with it gate more, never less.
GRANT EXECUTE ON FUNCTION mfa.session_gate() TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    mfa.session_table_guard(regclass, name, name, name, name),
    mfa.session_table_unguard(regclass),
    mfa.session_table_guard_check(regclass)
TO mfa_admin;
ALTER FUNCTION mfa.session_gate() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- The session gate runs as the role inserting the application's session, which cannot read the
-- extension's tables: like every other entry point it runs as the owner, with a fixed search_path.
ALTER FUNCTION mfa.enforce_session_policy() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- The login flow.
GRANT EXECUTE ON FUNCTION
    mfa.primary_authenticate(text, text, text, text, text, text),
    mfa.otp_sms_send(text, text, text, text, text),
    mfa.otp_sms_authenticate(text, text, text, text, text, boolean),
    mfa.totp_create(text, text, integer, text),
    mfa.totp_authenticate(text, text, text, text, text, boolean),
    mfa.recovery_codes_recover(text, text, text, text),
    mfa.check_session_policy(text, text, text),
    mfa.step_up_start(text, text, text),
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

-- Delivery workers: the outbox and nothing else.
GRANT EXECUTE ON FUNCTION
    mfa.sms_outbox_claim(integer, interval, text),
    mfa.sms_outbox_complete(bigint, text, text),
    mfa.sms_outbox_fail(bigint, text, text, boolean)
TO mfa_sms_worker;

-- Keys and tenant workers: operators only.
GRANT EXECUTE ON FUNCTION
    mfa.encryption_keys(),
    mfa.encryption_key_rotate(integer),
    mfa.sms_worker_grant(text, text),
    mfa.sms_worker_revoke(text, text)
TO mfa_admin;
COMMENT ON FUNCTION mfa.encryption_keys() IS
    'mfa: every known master key (by fingerprint, the encrypting one first, with its source) and every key the data names, with the TOTP secrets, queued SMS codes and code hashes each still covers; a key that covers nothing can leave the key file.';
COMMENT ON FUNCTION mfa.encryption_key_rotate(integer) IS
    'mfa: re-encrypts up to batch_size TOTP secrets and queued SMS codes under the encrypting key (skipping rows a login holds); call until remaining is zero. Audited.';
COMMENT ON FUNCTION mfa.sms_worker_grant(text, text) IS
    'mfa: binds a worker role (or a group role of them) to an organization: it then claims, completes and fails that organization''s messages only (with its other grants). Audited.';
COMMENT ON FUNCTION mfa.sms_worker_revoke(text, text) IS
    'mfa: takes an organization from a worker role''s binding; refuses the last one while the role is still a worker (unbound, it would serve every organization). Audited.';

COMMENT ON FUNCTION mfa.totp_create(text, text, integer, text) IS
    'mfa: starts an authenticator-app registration (pending for expiration_minutes, 5–1440); returns the base32 secret, otpauth_uri, qr_code (PNG data URL) and 10 recovery codes, shown this once.';
COMMENT ON FUNCTION mfa.totp_authenticate(text, text, text, text, text, boolean) IS
    'mfa: verifies a TOTP code (SHA1, 6 digits, 30 s, ±mfa.totp_skew_steps); a step is never accepted twice. Failures are returned as {status_code, error_type, error_message}, not raised.';
COMMENT ON FUNCTION mfa.totp_migrate(text, text, text, text[]) IS
    'mfa: imports an existing authenticator (base32 secret, active at once) with its recovery codes, or new ones (returned this once) when none are given and the member has none.';
COMMENT ON FUNCTION mfa.member_delete_totp(text, text, text) IS
    'mfa: removes a member''s authenticator app and its recovery codes (a passkey''s stay): mfa_admin''s to do, or mfa_app''s with a token carrying a second factor proven with it; a member cannot remove the last factor their organization requires.';
COMMENT ON FUNCTION mfa.recovery_codes_get(text, text) IS
    'mfa: how many recovery codes remain and when they were minted (the codes are stored hashed).';
COMMENT ON FUNCTION mfa.recovery_codes_rotate(text, text, text) IS
    'mfa: invalidates all recovery codes and returns a new set, shown this once; needs an intermediate session token (a login''s or step_up_start''s) that carries a second factor proven with it.';
COMMENT ON FUNCTION mfa.recovery_codes_recover(text, text, text, text) IS
    'mfa: spends one recovery code as the second factor; returns recovery_codes_remaining. Failures are returned, not raised.';
COMMENT ON FUNCTION mfa.totp_verify(text, text, timestamp with time zone) IS
    'mfa: whether a code matches a base32 secret the caller holds (e.g. before totp_migrate), within mfa.totp_skew_steps; stores and counts nothing.';
COMMENT ON FUNCTION mfa.qr_code_text(text) IS 'mfa: renders text (an otpauth URI) as a QR code of Unicode blocks for a terminal.';
COMMENT ON FUNCTION mfa.otp_sms_send(text, text, text, text, text) IS
    'mfa: issues a 6-digit SMS code (the previous one dies; lives mfa.sms_code_lifetime_seconds) and queues its localized text in the outbox; checks the number, the allowlist and the send limits. Never returns the code.';
COMMENT ON FUNCTION mfa.otp_sms_authenticate(text, text, text, text, text, boolean) IS
    'mfa: verifies the member''s SMS code (once), verifies their phone, records the factor on the login. Failures are returned, not raised.';
COMMENT ON FUNCTION mfa.country_code_allowlist_get() IS 'mfa: the countries SMS codes may be sent to (default {CA,US}).';
COMMENT ON FUNCTION mfa.country_code_allowlist_set(text[]) IS
    'mfa: replaces the SMS country allowlist (ISO alpha-2, case-insensitive); refuses unknown codes and countries where SMS is never sent.';
COMMENT ON FUNCTION mfa.sms_country_supported(text) IS 'mfa: whether a country code may ever be put on the SMS allowlist.';
COMMENT ON FUNCTION mfa.sms_outbox_claim(integer, interval, text) IS
    'mfa: hands up to batch_size deliverable SMS messages (of the worker''s bound organizations, narrowed to for_organization when given) to one worker (FOR UPDATE SKIP LOCKED), with their codes decrypted into the text and a receipt each (shown once), and hides them for visibility_timeout.';
COMMENT ON FUNCTION mfa.sms_outbox_complete(bigint, text, text) IS
    'mfa: marks a message the caller holds (its receipt, while the claim lasts) sent, records the provider id, erases its code; idempotent with the same receipt.';
COMMENT ON FUNCTION mfa.sms_outbox_fail(bigint, text, text, boolean) IS
    'mfa: a failed delivery of a message the caller holds (its receipt, while the claim lasts): retried with back-off, or dead after mfa.outbox_max_attempts (or at once without retry).';
COMMENT ON FUNCTION mfa.primary_authenticate(text, text, text, text, text, text) IS
    'mfa: starts a login after the application''s own primary check; returns the intermediate session token (shown once) and what MFA the login needs; sends the SMS code at once when SMS is the member''s method. A remembered device''s token (and its fingerprint) stands in for MFA and is rotated: the answer carries its new device_token; any other token is ignored, and one that was rotated away revokes the member''s remembered devices.';
COMMENT ON FUNCTION mfa.check_session_policy(text, text, text) IS
    'mfa: the session gate: passes and consumes the token when the login carries what the policy demands, otherwise raises insufficient_factors (SQLSTATE 28000).';
COMMENT ON FUNCTION mfa.enforce_session_policy() IS
    'mfa: BEFORE INSERT FOR EACH ROW trigger for the application''s sessions table; arguments: organization, member and token column names, optionally a jsonb column for the factors.';

COMMENT ON FUNCTION mfa.step_up_start(text, text, text) IS
    'mfa: starts a step-up of an existing session: an intermediate session token without a primary factor (shown once) and the member''s options; prove a factor with it, then write it into a guarded sessions table''s token column to raise that session''s assurance. It can never create a session.';
COMMENT ON FUNCTION mfa.session_gate() IS
    'mfa (internal): the row triggers mfa.session_table_guard installs on a sessions table; arguments: organization, member, token and factors column names.';
COMMENT ON FUNCTION mfa.session_table_guard(regclass, name, name, name, name) IS
    'mfa: guards an application sessions table: the policy gate on INSERT (COPY, upserts and MERGE included), immutable identity and factors on UPDATE with step-up through a new token, and DDL that would switch it off refused to everyone but a superuser. Idempotent.';
COMMENT ON FUNCTION mfa.session_table_unguard(regclass) IS
    'mfa: takes the guard off a sessions table (the only way to); audited.';
COMMENT ON FUNCTION mfa.session_table_guard_check(regclass) IS
    'mfa: what is wrong with a sessions table''s guard (dropped or disabled trigger, renamed column, inheritance child…), or NULL when it is whole.';
COMMENT ON FUNCTION mfa._full_xid(xid) IS
    'mfa (internal): the xid8 of a recent 32-bit transaction id, for pg_xact_status.';
COMMENT ON FUNCTION mfa._session_guard_ddl() IS
    'mfa (internal): event trigger that refuses, to everyone but a superuser, DDL that leaves a sessions table''s guard broken or installs a trigger calling the gate.';
COMMENT ON EVENT TRIGGER mfa_session_guard IS
    'mfa: refuses DDL that would switch a guarded sessions table''s gate off (see mfa.session_table_guard).';
COMMENT ON FUNCTION mfa.session_aal(jsonb) IS
    'mfa: the assurance level of a factors column, trusting it (no seal is checked): aal2 when it carries a second factor or a remembered device, else aal1. Policies use session_aal(organization_id, member_id, factors).';
COMMENT ON FUNCTION mfa.last_mfa_at(jsonb) IS
    'mfa: when the newest second factor of a factors column was proven, trusting it (no seal is checked; NULL when none). Policies use last_mfa_at(organization_id, member_id, factors).';
COMMENT ON FUNCTION mfa.session_aal(text, text, jsonb) IS
    'mfa: the assurance level of a session row from the factors whose gate seal verifies for its organization and member: aal2 when one is a second factor or a remembered device, else aal1. For RLS policies.';
COMMENT ON FUNCTION mfa.last_mfa_at(text, text, jsonb) IS
    'mfa: when the newest sealed second factor of a session row was proven (NULL when none verifies; a remembered device is not one): for RLS policies such as last_mfa_at(organization_id, member_id, authentication_factors) > now() - interval ''15 minutes''.';
COMMENT ON FUNCTION mfa.session_verified_factors(text, text, jsonb) IS
    'mfa: the factors of a session''s factors column whose gate seal verifies for this organization and member (sealed with a known key); the rest is left out.';

REVOKE ALL ON FUNCTION mfa.distribute() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mfa.distribute() TO mfa_admin;
COMMENT ON FUNCTION mfa.distribute() IS
    'mfa: on a Citus coordinator, distributes the per-organization tables by organization_id (colocated with mfa.organizations), makes the allowlist and number blocks reference tables and delegates the per-organization functions to the node holding the organization; refuses unless every node encrypts with the same configured key. Idempotent; one row per object.';

COMMENT ON FUNCTION mfa._sequence_range_set(text) IS
    'mfa (internal): run by mfa.distribute() on every node: gives an identity sequence the node''s own range of ids.';

COMMENT ON FUNCTION mfa._session_guard_register_shards() IS
    'mfa (internal): on a Citus node, registers the shards carrying copies of a guard''s triggers as guarded tables of their own (so the gate runs for them and the guard''s state check holds), and lets go of the shards whose gate triggers are all dropped.';

COMMENT ON FUNCTION mfa._attempt_ledger_write(text, jsonb) IS
    'mfa (internal): on Citus, the attempt ledger''s writer on the coordinator hands the records of one organization (failures, resets, audit events) to the node holding it, where they are written in the caller''s transaction. For the writers only: no role is granted it.';

COMMENT ON FUNCTION mfa._initialize_database_key() IS
    'mfa (internal): generates the per-database (development) encryption key at CREATE EXTENSION, unless the server has keys of its own.';

SELECT mfa._initialize_database_key();
REVOKE ALL ON FUNCTION mfa._initialize_database_key() FROM PUBLIC;

-- Passkeys (WebAuthn): origins and deletes are mfa_admin's; the ceremonies and the list are the
-- login's.
GRANT EXECUTE ON FUNCTION
    mfa.webauthn_allowed_origins_set(text[]),
    mfa.webauthn_allowed_origins_get(),
    mfa.webauthn_registration_delete(text, text, text, text)
TO mfa_admin;
GRANT EXECUTE ON FUNCTION mfa.webauthn_allowed_origins_get() TO mfa_app;
GRANT EXECUTE ON FUNCTION
    mfa.webauthn_register_start(text, text, text, text, text, text),
    mfa.webauthn_register(text, text, jsonb, text, text, boolean),
    mfa.webauthn_authenticate_start(text, text, text, text),
    mfa.webauthn_authenticate(text, text, jsonb, text, text, boolean)
TO mfa_app;
GRANT EXECUTE ON FUNCTION
    mfa.webauthn_registrations_get(text, text),
    mfa.webauthn_registration_update(text, text, text, text)
TO mfa_admin, mfa_app;
COMMENT ON FUNCTION mfa.webauthn_allowed_origins_set(text[]) IS
    'mfa: replaces the origins whose pages may register and use passkeys (https://host[:port]; http:// only for localhost and 127.0.0.1); returns them normalized and sorted; audited.';
COMMENT ON FUNCTION mfa.webauthn_allowed_origins_get() IS 'mfa: the origins whose pages may register and use passkeys.';
COMMENT ON FUNCTION mfa.webauthn_register_start(text, text, text, text, text, text) IS
    'mfa: PublicKeyCredentialCreationOptionsJSON for navigator.credentials.create (a fresh single-use challenge bound to the member and the token); a member with an active factor needs a token carrying a second factor.';
COMMENT ON FUNCTION mfa.webauthn_register(text, text, jsonb, text, text, boolean) IS
    'mfa: verifies a RegistrationResponseJSON (WebAuthn §7.1: challenge, origin, rpIdHash, flags, algorithm, attestation none or packed) and stores the passkey; with a token it is a second factor of that login. Failures are returned and counted.';
COMMENT ON FUNCTION mfa.webauthn_authenticate_start(text, text, text, text) IS
    'mfa: PublicKeyCredentialRequestOptionsJSON for navigator.credentials.get: the member''s passkeys and a fresh single-use challenge bound to the login''s token.';
COMMENT ON FUNCTION mfa.webauthn_authenticate(text, text, jsonb, text, text, boolean) IS
    'mfa: verifies an AuthenticationResponseJSON (WebAuthn §7.2, signature counter included) from one of the member''s passkeys as the login''s second factor. Failures are returned and counted, as totp_authenticate''s.';
COMMENT ON FUNCTION mfa.webauthn_registrations_get(text, text) IS 'mfa: the member''s passkeys (no key material).';
COMMENT ON FUNCTION mfa.webauthn_registration_update(text, text, text, text) IS 'mfa: names one of the member''s passkeys.';
COMMENT ON FUNCTION mfa.webauthn_registration_delete(text, text, text, text) IS
    'mfa: removes one of the member''s passkeys and revokes their remembered devices (mfa_admin, or mfa_app with a token carrying a second factor; not the last factor an organization requires); with the last one go webauthn as default method and, without an authenticator app, the recovery codes.';
COMMENT ON FUNCTION mfa.session_phishing_resistant(jsonb) IS
    'mfa: whether the newest second factor of a factors column is a passkey, trusting it (no seal is checked). Policies use session_phishing_resistant(organization_id, member_id, factors).';
COMMENT ON FUNCTION mfa.session_amr(jsonb) IS
    'mfa: RFC 8176 authentication method references (pwd, otp, sms, swk, user, mfa) of a factors column, trusting it (no seal is checked).';
COMMENT ON FUNCTION mfa.session_phishing_resistant(text, text, jsonb) IS
    'mfa: whether the newest sealed second factor of a session row is a passkey (phishing-resistant MFA): for RLS policies.';
COMMENT ON FUNCTION mfa.session_amr(text, text, jsonb) IS
    'mfa: RFC 8176 authentication method references of a session row''s sealed factors, for an OIDC amr claim.';

-- Factors a member removes themselves, with a fresh second factor (see flow/removal.rs).
GRANT EXECUTE ON FUNCTION
    mfa.member_delete_totp(text, text, text),
    mfa.member_delete_mfa_phone_number(text, text, text),
    mfa.webauthn_registration_delete(text, text, text, text)
TO mfa_app;
COMMENT ON FUNCTION mfa.member_reset_mfa(text, text) IS
    'mfa: the support desk''s "lost my phone": every factor of the member (authenticator app, recovery codes, phone, passkeys), their logins in progress and remembered devices go; mfa_enrolled becomes false; audited.';

-- Migrations.
GRANT EXECUTE ON FUNCTION mfa.members_import(text, jsonb) TO mfa_admin;
COMMENT ON FUNCTION mfa.members_import(text, jsonb) IS
    'mfa: a migration''s bulk import: members (a JSON array of {member_id, mfa_phone_number, mfa_phone_number_verified, mfa_enrolled, default_mfa_method, is_breakglass, totp_secret, recovery_codes}) into one organization, each in a subtransaction of its own; every member is reported (status_code, or error_type and error_message), a failed one leaves nothing behind; new recovery codes are returned where none were given.';
