-- A walkthrough of mfa: an organization that requires MFA, a member who enrolls an authenticator
-- app during their first login, and a second login with an SMS code delivered through the outbox.
-- Every session row goes through the guard that enforces the organization's policy.
\pset pager off
\pset expanded off
\set QUIET 1

\echo '1. Install the extension and create the application''s own sessions table, guarded by mfa.session_table_guard.'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS mfa;
CREATE SCHEMA IF NOT EXISTS app;
DROP TABLE IF EXISTS app.sessions;
CREATE TABLE app.sessions (
    session_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id text NOT NULL,
    member_id       text NOT NULL,
    intermediate_session_token text,
    authentication_factors jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
SELECT mfa.session_table_guard('app.sessions');

\echo
\echo '2. The organization requires MFA of everyone; Ann is a member with no factor yet.'
SELECT jsonb_pretty(mfa.organization_upsert('acme', 'REQUIRED_FOR_ALL'));
SELECT mfa.member_upsert('acme', 'ann@acme.example') ->> 'member_id' AS member_created;

\echo
\echo '3. Ann''s password checks out in the application, which starts the login:'
SELECT mfa.primary_authenticate('acme', 'ann@acme.example', 'password') AS login \gset
SELECT jsonb_pretty(:'login'::jsonb - 'member' - 'request_id');
SELECT :'login'::jsonb ->> 'intermediate_session_token' AS token \gset

\echo
\echo '4. Before any second factor, the application cannot create her session:'
\set ON_ERROR_STOP 0
INSERT INTO app.sessions (organization_id, member_id, intermediate_session_token)
VALUES ('acme', 'ann@acme.example', :'token');
\set ON_ERROR_STOP 1
SELECT count(*) AS sessions_after_refusal FROM app.sessions;

\echo
\echo '5. Enforced enrollment: she registers an authenticator app in the same login.'
SELECT mfa.totp_create('acme', 'ann@acme.example', intermediate_session_token => :'token') AS enrollment \gset
SELECT :'enrollment'::jsonb ->> 'secret' AS secret, :'enrollment'::jsonb ->> 'otpauth_uri' AS uri \gset
\echo 'otpauth URI:' :uri
\echo 'The QR code her phone scans (qr_code holds it as a PNG; here the same URI is drawn for the terminal):'
\pset tuples_only on
\pset format unaligned
SELECT mfa.qr_code_text(:'uri');
\pset format aligned
\pset tuples_only off
\echo 'Recovery codes, shown this once:'
SELECT jsonb_array_elements_text(:'enrollment'::jsonb -> 'recovery_codes') AS recovery_code LIMIT 3;
\set code `oathtool --totp -b :secret`
\echo 'Her authenticator app now shows' :code
SELECT jsonb_pretty(mfa.totp_authenticate('acme', 'ann@acme.example', :'code', :'token')
                    - 'member' - 'request_id');

\echo
\echo '6. Now the session insert passes the gate, which writes the factors itself:'
INSERT INTO app.sessions (organization_id, member_id, intermediate_session_token)
VALUES ('acme', 'ann@acme.example', :'token');
SELECT session_id, member_id, jsonb_path_query_array(authentication_factors, '$[*].type') AS factors
  FROM app.sessions;

\echo
\echo '7. The same token cannot create a second session:'
\set ON_ERROR_STOP 0
INSERT INTO app.sessions (organization_id, member_id, intermediate_session_token)
VALUES ('acme', 'ann@acme.example', :'token');
\set ON_ERROR_STOP 1

\echo
\echo '8. A second member logs in with an SMS code. The code goes to the outbox; a delivery worker claims it.'
SELECT mfa.member_upsert('acme', 'bob@acme.example', '+1 415 555 2671') ->> 'mfa_phone_number' AS bob_phone;
SELECT mfa.primary_authenticate('acme', 'bob@acme.example') ->> 'intermediate_session_token' AS token2 \gset
SELECT mfa.otp_sms_send('acme', 'bob@acme.example', intermediate_session_token => :'token2') ->> 'status_code' AS sent;
\echo 'What a worker (role mfa_sms_worker) receives from mfa.sms_outbox_claim():'
SELECT id, phone_number, country_code, locale, body, receipt FROM mfa.sms_outbox_claim(10, '30 seconds') \gset msg_
\echo '  to' :msg_phone_number '(' :msg_country_code '):' :msg_body
SELECT mfa.sms_outbox_complete(:msg_id, :'msg_receipt', 'provider-message-1') ->> 'status' AS delivery;
SELECT substring(:'msg_body' from '[0-9]{6}') AS sms_code \gset
\echo 'Bob types' :sms_code
SELECT jsonb_pretty(mfa.otp_sms_authenticate('acme', 'bob@acme.example', :'sms_code', :'token2')
                    -> 'authentication_factors' -> 1);
INSERT INTO app.sessions (organization_id, member_id, intermediate_session_token)
VALUES ('acme', 'bob@acme.example', :'token2');
SELECT session_id, member_id, jsonb_path_query_array(authentication_factors, '$[*].type') AS factors
  FROM app.sessions ORDER BY session_id;

\echo
\echo '9. Nobody rewrites a session afterwards: not its member, not its factors.'
\set ON_ERROR_STOP 0
UPDATE app.sessions SET member_id = 'ann@acme.example' WHERE member_id = 'bob@acme.example';
UPDATE app.sessions SET authentication_factors = '[]' WHERE member_id = 'bob@acme.example';
\set ON_ERROR_STOP 1

\echo
\echo '10. Step-up: before a sensitive action, Ann proves a factor again and her session records it.'
SELECT mfa.step_up_start('acme', 'ann@acme.example') ->> 'intermediate_session_token' AS step_up \gset
SELECT :'enrollment'::jsonb -> 'recovery_codes' ->> 0 AS recovery_code \gset
SELECT mfa.recovery_codes_recover('acme', 'ann@acme.example', :'recovery_code', :'step_up') ->> 'status_code' AS recovered;
UPDATE app.sessions SET intermediate_session_token = :'step_up' WHERE member_id = 'ann@acme.example';
SELECT session_id, jsonb_path_query_array(authentication_factors, '$[*].type') AS factors,
       mfa.session_aal(authentication_factors) AS aal,
       mfa.last_mfa_at(authentication_factors) > now() - interval '15 minutes' AS mfa_in_last_15_minutes
  FROM app.sessions WHERE member_id = 'ann@acme.example';

\echo
\echo '11. Remembered devices: acme lets members skip MFA for 30 days on a device they chose to remember.'
SELECT mfa.organization_upsert('acme', remember_device_days => 30) ->> 'remember_device_days' AS remember_device_days;
SELECT mfa.primary_authenticate('acme', 'ann@acme.example') ->> 'intermediate_session_token' AS token3 \gset
SELECT :'enrollment'::jsonb -> 'recovery_codes' ->> 1 AS recovery_code2 \gset
SELECT mfa.recovery_codes_recover('acme', 'ann@acme.example', :'recovery_code2', :'token3') ->> 'status_code' AS recovered;
INSERT INTO app.sessions (organization_id, member_id, intermediate_session_token)
VALUES ('acme', 'ann@acme.example', :'token3');
\echo 'After the session, Ann ticks "remember this device": the token goes into a long-lived cookie.'
SELECT mfa.remembered_device_create('acme', 'ann@acme.example', :'token3', device_name => 'Ann''s laptop') AS device \gset
SELECT :'device'::jsonb ->> 'device_name' AS device_name, :'device'::jsonb ->> 'expires_at' AS expires_at;
SELECT :'device'::jsonb ->> 'device_token' AS cookie \gset
\echo 'Her next login presents the cookie: no second factor is asked, and the cookie gets a new token.'
SELECT mfa.primary_authenticate('acme', 'ann@acme.example', device_token => :'cookie') AS login4 \gset
SELECT :'login4'::jsonb -> 'member_authenticated' AS member_authenticated,
       :'login4'::jsonb -> 'mfa_required' AS mfa_required,
       :'login4'::jsonb ->> 'device_token' <> :'cookie' AS cookie_rotated;
SELECT :'login4'::jsonb ->> 'intermediate_session_token' AS token4 \gset
INSERT INTO app.sessions (organization_id, member_id, intermediate_session_token)
VALUES ('acme', 'ann@acme.example', :'token4')
RETURNING session_id, jsonb_path_query_array(authentication_factors, '$[*].type') AS factors,
          mfa.session_aal(authentication_factors) AS aal;
\echo 'The old cookie again (someone copied it): MFA is asked, and all of her remembered devices are revoked.'
SELECT r -> 'mfa_required' IS NOT NULL AS mfa_asked
  FROM mfa.primary_authenticate('acme', 'ann@acme.example', device_token => :'cookie') AS r;
SELECT jsonb_array_length(mfa.remembered_devices_get('acme', 'ann@acme.example') -> 'remembered_devices') AS devices_left;

\echo
\echo '12. The audit trail (no secret in it):'
SELECT event_type, member_id, details->>'outcome' AS outcome
  FROM mfa.events WHERE organization_id = 'acme' ORDER BY event_id;
