-- Administration: organizations and members, as an administrator (role mfa_admin) uses them.
\pset null '∅'

-- An organization starts OPTIONAL / ALL_ALLOWED, like Stytch's.
SELECT mfa.organization_upsert('acme') - 'created_at' - 'updated_at';

-- NULL keeps a value; methods are de-duplicated and sorted.
SELECT mfa.organization_upsert('acme', 'REQUIRED_FOR_ALL', 'RESTRICTED', ARRAY['totp', 'sms_otp', 'totp'])
       - 'created_at' - 'updated_at';
SELECT mfa.organization_upsert('acme', mfa_methods => 'ALL_ALLOWED') ->> 'mfa_policy' AS still_required;

-- Every value is checked; the message starts with Stytch's error_type.
SELECT mfa.organization_upsert('acme', 'required_for_all');
SELECT mfa.organization_upsert('acme', NULL, 'SOME');
SELECT mfa.organization_upsert('acme', NULL, NULL, ARRAY['email']);
SELECT mfa.organization_upsert('acme', NULL, 'RESTRICTED', '{}');
SELECT mfa.organization_upsert('');
SELECT mfa.organization_get('nobody');

-- Members: the phone is parsed and stored as E.164, unverified until an SMS code is authenticated.
SELECT mfa.member_upsert('acme', 'ann', '+1 (415) 555-2671', true, 'sms_otp')
       - 'created_at' - 'updated_at' - 'organization';
-- Beside the member's fields, their organization's object (Stytch answers it beside the member).
SELECT mfa.member_get('acme', 'ann') -> 'organization' = mfa.organization_get('acme') AS organization_beside_member;
SELECT mfa.member_upsert('acme', 'ann', '415-555-2671');
SELECT mfa.member_upsert('acme', 'ann', default_mfa_method => 'totp');
SELECT mfa.member_upsert('acme', 'ann', default_mfa_method => 'email');
SELECT mfa.member_upsert('nobody', 'ann');
SELECT mfa.member_get('acme', 'bob');

-- Removing the phone clears SMS as the default method.
SELECT mfa.member_delete_mfa_phone_number('acme', 'ann') ->> 'default_mfa_method' AS default_method;

-- The SMS country allowlist: {CA,US} until set; unsupported countries are refused by name.
SELECT mfa.country_code_allowlist_get();
SELECT mfa.country_code_allowlist_set(ARRAY['us', 'CA', 'gb', 'US']);
SELECT mfa.country_code_allowlist_set(ARRAY['US', 'RU', 'hk', 'ZZ']);
SELECT mfa.country_code_allowlist_set('{}');
SELECT mfa.country_code_allowlist_set(ARRAY['CA', 'US']);

-- Deleting an organization deletes its members; the audit trail stays.
SELECT mfa.organization_delete('acme');
SELECT mfa.member_get('acme', 'ann');
SELECT event_type, member_id FROM mfa.events WHERE organization_id IN ('acme', '') ORDER BY event_id;

-- The privilege split: an application login holds mfa_app and nothing more.
CREATE ROLE regress_app LOGIN IN ROLE mfa_app;
SET ROLE regress_app;
SELECT * FROM mfa.members;
SELECT mfa.organization_upsert('evil');
-- Settings that could weaken security are superuser-only, and the key is never shown.
-- (its message changed in PostgreSQL 16; its SQLSTATE, insufficient_privilege, did not)
\set VERBOSITY sqlstate
SHOW mfa.encryption_key;
\set VERBOSITY default
SET mfa.lock_threshold = 100;
SET mfa.member_checks_per_second = 100;
SET mfa.sms_code_lifetime_seconds = 600;
-- Nor may the application read the attempt ledger's occupancy, or lift a lock.
SELECT mfa.attempt_ledger_stats();
SELECT mfa.member_unlock('acme', 'ann');
RESET ROLE;
-- The attempt ledger (shared memory, sized at server start), for monitoring: members tracked and
-- at most, records waiting for its worker and their room, records dropped.
SELECT key, (mfa.attempt_ledger_stats() -> key) IS NOT NULL AS present
  FROM jsonb_object_keys(mfa.attempt_ledger_stats()) key ORDER BY 1;
SELECT mfa.attempt_ledger_stats() ->> 'members' AS members_at_most, current_setting('mfa.attempt_ledger_members') AS setting;
CREATE ROLE regress_worker LOGIN IN ROLE mfa_sms_worker;
SET ROLE regress_worker;
SELECT mfa.primary_authenticate('acme', 'ann');
SELECT count(*) AS claimable FROM mfa.sms_outbox_claim();
RESET ROLE;

-- The master keys come from the server (mfa.encryption_key_file, here written by
-- scripts/cluster.sh), never from a setting: not even a superuser can put a key into one now.
SET mfa.encryption_key = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
ALTER DATABASE mfa_regress SET mfa.encryption_key = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
SELECT source, encrypts FROM mfa.encryption_keys();
-- Rotation moves every secret to the encrypting key, a batch at a time; nothing is left here.
SELECT mfa.encryption_key_rotate(100) -> 'remaining' AS remaining;
-- A tenant's own worker: bound to its organization, it claims that organization's messages only.
SELECT mfa.organization_upsert('tenant-a') ->> 'organization_id' AS organization;
CREATE ROLE regress_tenant_worker LOGIN IN ROLE mfa_sms_worker;
SELECT mfa.sms_worker_grant('regress_tenant_worker', 'tenant-a') ->> 'organization_ids' AS bound_to;
SET ROLE regress_tenant_worker;
SELECT count(*) FROM mfa.sms_outbox_claim(for_organization => 'globex');
SELECT mfa.sms_outbox_complete(1, 'a receipt never handed out');
RESET ROLE;
-- The last binding goes only once the role is no worker any more (unbound, it would serve all).
SELECT mfa.sms_worker_revoke('regress_tenant_worker', 'tenant-a');
REVOKE mfa_sms_worker FROM regress_tenant_worker;
SELECT mfa.sms_worker_revoke('regress_tenant_worker', 'tenant-a') ->> 'organization_ids' AS bound_to;
SELECT mfa.organization_delete('tenant-a') IS NOT NULL AS deleted;
DROP ROLE regress_app, regress_worker, regress_tenant_worker;
-- Scaling out (README, Scaling out): mfa.distribute() needs Citus; without it, it says so.
\set SHOW_CONTEXT never
SELECT * FROM mfa.distribute();
\set SHOW_CONTEXT errors

-- Phone numbers: an import may say a number is verified; a verified number is replaced only when
-- asked (and any new number revokes the member's remembered devices).
SELECT mfa.organization_upsert('umbrella', 'REQUIRED_FOR_ALL') ->> 'organization_id' AS organization;
SELECT r ->> 'mfa_phone_number' AS phone, r ->> 'mfa_phone_number_verified' AS verified
  FROM mfa.member_upsert('umbrella', 'alice', '+14155550100', mfa_phone_number_verified => true) AS r;
SELECT mfa.member_upsert('umbrella', 'alice', '+14155550111');
SELECT r ->> 'mfa_phone_number' AS phone, r ->> 'mfa_phone_number_verified' AS verified
  FROM mfa.member_upsert('umbrella', 'alice', '+14155550111', replace_mfa_phone_number => true) AS r;
-- A member removes a factor through the application only with a token carrying a second factor
-- proven with it (mfa_admin needs none); the last factor their organization requires stays
-- mfa_admin's to remove.
SELECT mfa.totp_migrate('umbrella', 'alice', 'JBSWY3DPEHPK3PXP') ->> 'status_code' AS migrated;
SELECT mfa.primary_authenticate('umbrella', 'alice') ->> 'intermediate_session_token' AS token \gset
CREATE ROLE regress_desk_app IN ROLE mfa_app;
SET ROLE regress_desk_app;
SELECT mfa.member_delete_totp('umbrella', 'alice');
SELECT mfa.member_delete_totp('umbrella', 'alice', :'token');
RESET ROLE;
\set code `oathtool --totp -b JBSWY3DPEHPK3PXP`
SELECT mfa.totp_authenticate('umbrella', 'alice', :'code', :'token') ->> 'status_code' AS proven;
SET ROLE regress_desk_app;
SELECT mfa.member_delete_totp('umbrella', 'alice', :'token');
RESET ROLE;
-- The support desk's "lost my phone": every factor, the recovery codes, the logins in progress
-- and the remembered devices go; the member enrolls again at their next login.
SELECT mfa.member_reset_mfa('umbrella', 'alice') - 'created_at' - 'updated_at' AS reset;
SELECT count(*) AS logins_left FROM mfa.intermediate_sessions WHERE organization_id = 'umbrella';
SELECT event_type, details - 'totp_registration_id' AS details, details ? 'totp_registration_id' AS names_the_app
  FROM mfa.events WHERE organization_id = 'umbrella' AND event_type = 'member.mfa_reset';
DROP ROLE regress_desk_app;
