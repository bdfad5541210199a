-- Remembered devices (adaptive MFA): after a second factor, a member may have their device
-- remembered; the next logins presenting its token skip MFA, and the session gate accepts them.
-- The token rotates on every use; a rotated token presented again (a copied cookie) revokes all of
-- the member's remembered devices.
\pset null '∅'
\set VERBOSITY terse
-- Off by default; an organization turns it on for 1 to 90 days.
SELECT mfa.organization_upsert('vandelay', 'REQUIRED_FOR_ALL') ->> 'remember_device_days' AS default_days;
SELECT mfa.organization_upsert('vandelay', remember_device_days => 91);
SELECT mfa.organization_upsert('vandelay', remember_device_days => 30) ->> 'remember_device_days' AS days;
SELECT mfa.member_upsert('vandelay', 'art') ->> 'member_id' AS member;
SELECT mfa.totp_migrate('vandelay', 'art', 'JBSWY3DPEHPK3PXP',
                        ARRAY['aaaa-bbbb-cccc', 'dddd-eeee-ffff', 'gggg-hhhh-iiii', 'jjjj-kkkk-llll']) ->> 'status_code' AS migrated;

-- The application's role owns its sessions table, which the gate's trigger guards.
CREATE ROLE vandelay_app LOGIN;
GRANT mfa_app TO vandelay_app;
CREATE SCHEMA vandelay AUTHORIZATION vandelay_app;
SET ROLE vandelay_app;
CREATE TABLE vandelay.sessions (
    id serial PRIMARY KEY,
    organization_id text NOT NULL,
    member_id text NOT NULL,
    intermediate_session_token text,
    authentication_factors jsonb
);
CREATE TRIGGER require_mfa BEFORE INSERT ON vandelay.sessions FOR EACH ROW
EXECUTE FUNCTION mfa.enforce_session_policy('organization_id', 'member_id', 'intermediate_session_token', 'authentication_factors');

-- 1. A login with the authenticator app. Remembering the device needs the second factor first.
SELECT mfa.primary_authenticate('vandelay', 'art') ->> 'intermediate_session_token' AS token \gset
SELECT mfa.remembered_device_create('vandelay', 'art', :'token', device_name => 'Work laptop');
\set code `oathtool --totp -b JBSWY3DPEHPK3PXP`
SELECT mfa.totp_authenticate('vandelay', 'art', :'code', :'token') ->> 'status_code' AS totp;
SELECT mfa.remembered_device_create('vandelay', 'art', :'token', device_name => 'Work laptop') AS device \gset
SELECT :'device'::jsonb ->> 'device_name' AS device_name,
       length(:'device'::jsonb ->> 'device_token') AS token_length,
       (:'device'::jsonb ->> 'expires_at')::timestamptz - now() BETWEEN interval '29 days 23 hours' AND interval '30 days' AS expires_in_30_days;
SELECT :'device'::jsonb ->> 'device_token' AS device_token_1, :'device'::jsonb ->> 'device_id' AS device_id \gset
-- One device per login.
SELECT mfa.remembered_device_create('vandelay', 'art', :'token');
INSERT INTO vandelay.sessions (organization_id, member_id, intermediate_session_token) VALUES ('vandelay', 'art', :'token');

-- 2. The next login presents the device's token: no MFA asked, a new token handed out.
SELECT mfa.primary_authenticate('vandelay', 'art', device_token => :'device_token_1') AS login \gset
SELECT :'login'::jsonb -> 'member_authenticated' AS member_authenticated,
       :'login'::jsonb -> 'mfa_required' AS mfa_required,
       :'login'::jsonb ->> 'device_token' <> :'device_token_1' AS rotated;
SELECT :'login'::jsonb ->> 'intermediate_session_token' AS token,
       :'login'::jsonb ->> 'device_token' AS device_token_2 \gset
INSERT INTO vandelay.sessions (organization_id, member_id, intermediate_session_token) VALUES ('vandelay', 'art', :'token')
RETURNING jsonb_path_query_array(authentication_factors, '$[*].type') AS factors,
          authentication_factors -> 1 -> 'remembered_device_factor' ->> 'device_id' = :'device_id' AS same_device,
          mfa.session_aal(authentication_factors) AS aal,
          mfa.last_mfa_at(authentication_factors) AS last_mfa_at;
-- A remembered device is not a second factor of its own: it cannot remember another device.
SELECT mfa.remembered_device_create('vandelay', 'art', :'token');
-- The member's devices: never a token.
SELECT jsonb_array_length(d -> 'remembered_devices') AS devices,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(d -> 'remembered_devices' -> 0) AS k) AS fields,
       d -> 'remembered_devices' -> 0 ->> 'last_used_at' IS NOT NULL AS used
  FROM mfa.remembered_devices_get('vandelay', 'art') AS d;

-- 3. The first token was rotated away: presented again, it is a copy. The login goes on as without
--    it (MFA asked), and every device of the member is revoked, the current token included.
SELECT r -> 'mfa_required' IS NOT NULL AS mfa_asked, r ? 'device_token' AS new_token
  FROM mfa.primary_authenticate('vandelay', 'art', device_token => :'device_token_1') AS r;
SELECT jsonb_array_length(mfa.remembered_devices_get('vandelay', 'art') -> 'remembered_devices') AS devices;
SELECT r -> 'mfa_required' IS NOT NULL AS mfa_asked
  FROM mfa.primary_authenticate('vandelay', 'art', device_token => :'device_token_2') AS r;
-- Unknown and malformed tokens are ignored too: a stale cookie never breaks a login.
SELECT r -> 'mfa_required' IS NOT NULL AS mfa_asked
  FROM mfa.primary_authenticate('vandelay', 'art', device_token => 'not a token') AS r;

-- 4. Remembered after the session was created (while the login's token is unexpired), bound to a
--    fingerprint: a login must present the same one.
SELECT mfa.primary_authenticate('vandelay', 'art') ->> 'intermediate_session_token' AS token \gset
SELECT mfa.recovery_codes_recover('vandelay', 'art', 'aaaa-bbbb-cccc', :'token') ->> 'status_code' AS recovered;
INSERT INTO vandelay.sessions (organization_id, member_id, intermediate_session_token) VALUES ('vandelay', 'art', :'token');
SELECT mfa.remembered_device_create('vandelay', 'art', :'token', 'fp-phone', 'Phone') ->> 'device_token' AS phone_token \gset
SELECT r -> 'mfa_required' IS NOT NULL AS mfa_asked
  FROM mfa.primary_authenticate('vandelay', 'art', device_token => :'phone_token', device_fingerprint => 'fp-other') AS r;
SELECT r -> 'mfa_required' IS NOT NULL AS mfa_asked
  FROM mfa.primary_authenticate('vandelay', 'art', device_token => :'phone_token') AS r;
SELECT r -> 'mfa_required' AS mfa_required, r ->> 'intermediate_session_token' AS token, r ->> 'device_token' AS phone_token
  FROM mfa.primary_authenticate('vandelay', 'art', device_token => :'phone_token', device_fingerprint => 'fp-phone') AS r \gset
SELECT :'mfa_required' AS mfa_required;

-- 5. The gate decides on the device as it is when the session is inserted: revoked meanwhile, the
--    login has no factor left.
SELECT (mfa.remembered_devices_get('vandelay', 'art') -> 'remembered_devices' -> 0 ->> 'device_id') AS phone_id \gset
SELECT mfa.remembered_device_revoke('vandelay', 'art', :'phone_id') ->> 'remembered_devices_revoked' AS revoked;
INSERT INTO vandelay.sessions (organization_id, member_id, intermediate_session_token) VALUES ('vandelay', 'art', :'token');
SELECT r -> 'mfa_required' IS NOT NULL AS mfa_asked
  FROM mfa.primary_authenticate('vandelay', 'art', device_token => :'phone_token', device_fingerprint => 'fp-phone') AS r;
SELECT mfa.remembered_device_revoke('vandelay', 'art', 'not-a-device-id');

-- 6. Revoked with the member's factors: deleting the authenticator app revokes their devices.
SELECT mfa.primary_authenticate('vandelay', 'art') ->> 'intermediate_session_token' AS token \gset
SELECT mfa.recovery_codes_recover('vandelay', 'art', 'dddd-eeee-ffff', :'token') ->> 'status_code' AS recovered;
SELECT mfa.remembered_device_create('vandelay', 'art', :'token') ->> 'device_token' AS device_token \gset
RESET ROLE;
SET ROLE mfa_admin;
SELECT mfa.member_delete_totp('vandelay', 'art') IS NOT NULL AS totp_deleted;
RESET ROLE;
SELECT jsonb_array_length(mfa.remembered_devices_get('vandelay', 'art') -> 'remembered_devices') AS devices;

-- 7. Turning the setting off revokes every device of the organization; then none can be created.
SELECT mfa.member_upsert('vandelay', 'kel') ->> 'member_id' AS member;
SELECT mfa.totp_migrate('vandelay', 'kel', 'JBSWY3DPEHPK3PXP', ARRAY['mmmm-nnnn-oooo']) ->> 'status_code' AS migrated;
SELECT mfa.primary_authenticate('vandelay', 'kel') ->> 'intermediate_session_token' AS token \gset
SELECT mfa.recovery_codes_recover('vandelay', 'kel', 'mmmm-nnnn-oooo', :'token') ->> 'status_code' AS recovered;
SELECT mfa.remembered_device_create('vandelay', 'kel', :'token') ->> 'device_token' AS device_token \gset
SELECT mfa.organization_upsert('vandelay', remember_device_days => 0) ->> 'remember_device_days' AS days;
SELECT r -> 'mfa_required' IS NOT NULL AS mfa_asked
  FROM mfa.primary_authenticate('vandelay', 'kel', device_token => :'device_token') AS r;
SELECT mfa.remembered_device_create('vandelay', 'kel', :'token');

-- The audit trail: every creation, use, rotation and revocation; never a token. (The suspected
-- theft has an event of its own too, written by the attempt ledger's worker so that a rollback
-- cannot erase it: it arrives a moment later, and tests/integration checks it.)
SELECT event_type, details ->> 'reason' AS reason, count(*)
  FROM mfa.events WHERE organization_id = 'vandelay' AND event_type LIKE 'remembered_device.%'
   AND event_type <> 'remembered_device.theft_suspected'
 GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(*) AS events_with_a_token FROM mfa.events
 WHERE details::text LIKE '%' || :'device_token_1' || '%' OR details::text LIKE '%' || :'device_token_2' || '%';

RESET ROLE;
DROP SCHEMA vandelay CASCADE;
DROP OWNED BY vandelay_app;
DROP ROLE vandelay_app;
