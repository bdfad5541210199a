-- A whole login as an application writes it: its own primary check, then primary_authenticate,
-- a second factor, and the INSERT of its session, which the trigger allows only once the
-- organization's policy is met.
\pset null '∅'
SELECT mfa.organization_upsert('globex', 'REQUIRED_FOR_ALL') ->> 'mfa_policy' AS policy;
SELECT mfa.member_upsert('globex', 'hank') ->> 'member_id' AS member;

-- The application's own sessions table, guarded by the trigger.
CREATE TABLE app_sessions (
    id serial PRIMARY KEY,
    organization_id text NOT NULL,
    member_id text NOT NULL,
    token text,
    factors jsonb
);
CREATE TRIGGER require_mfa BEFORE INSERT ON app_sessions FOR EACH ROW
EXECUTE FUNCTION mfa.enforce_session_policy('organization_id', 'member_id', 'token', 'factors');

-- 1. The password was right (checked by the application): start the login.
SELECT mfa.primary_authenticate('globex', 'hank', 'password') AS login \gset
SELECT :'login'::jsonb -> 'member_authenticated' AS member_authenticated,
       :'login'::jsonb -> 'mfa_required' AS mfa_required,
       length(:'login'::jsonb ->> 'intermediate_session_token') AS token_length;
SELECT :'login'::jsonb ->> 'intermediate_session_token' AS token \gset

-- 2. No session before the second factor.
INSERT INTO app_sessions (organization_id, member_id, token) VALUES ('globex', 'hank', :'token');

-- 3. Hank enrolls an authenticator app he already uses (imported here with a known secret).
SELECT mfa.totp_migrate('globex', 'hank', 'JBSWY3DPEHPK3PXP') ->> 'status_code' AS migrated;
SELECT mfa.totp_authenticate('globex', 'hank', 'abc123', :'token') - 'request_id' AS wrong_code;
\set code `oathtool --totp -b JBSWY3DPEHPK3PXP`
SELECT mfa.totp_authenticate('globex', 'hank', :'code', :'token') AS proven \gset
SELECT :'proven'::jsonb ->> 'status_code' AS status,
       jsonb_path_query_array(:'proven'::jsonb, '$.authentication_factors[*].type') AS factors;
-- Each factor as Stytch's session has it: proven once, it was first and last authenticated (and
-- last changed) at one time; the TOTP factor names the app.
SELECT f ->> 'type' AS type, f ->> 'delivery_method' AS delivery_method,
       f -> 'created_at' = f -> 'last_authenticated_at' AS created_is_last,
       f -> 'updated_at' = f -> 'last_authenticated_at' AS updated_is_last,
       f - 'type' - 'delivery_method' - 'created_at' - 'updated_at' - 'last_authenticated_at' AS sub_object
  FROM jsonb_array_elements(:'proven'::jsonb -> 'authentication_factors') f
 WHERE f ->> 'type' <> 'totp'
UNION ALL
SELECT f ->> 'type', f ->> 'delivery_method', f -> 'created_at' = f -> 'last_authenticated_at',
       f -> 'updated_at' = f -> 'last_authenticated_at',
       jsonb_build_object('authenticator_app_factor_is_the_app',
                          f -> 'authenticator_app_factor' ->> 'totp_id' = :'proven'::jsonb ->> 'totp_registration_id')
  FROM jsonb_array_elements(:'proven'::jsonb -> 'authentication_factors') f
 WHERE f ->> 'type' = 'totp';
-- Beside the member, the organization object organization_get answers.
SELECT :'proven'::jsonb -> 'organization' = mfa.organization_get('globex') AS organization;
-- The same code again is a replay.
SELECT mfa.totp_authenticate('globex', 'hank', :'code') ->> 'error_type' AS replay;

-- 4. Now the session row is accepted, with the factors recorded.
INSERT INTO app_sessions (organization_id, member_id, token) VALUES ('globex', 'hank', :'token');
SELECT id, jsonb_path_query_array(factors, '$[*].type') AS factors FROM app_sessions;

-- 5. One token, one session.
INSERT INTO app_sessions (organization_id, member_id, token) VALUES ('globex', 'hank', :'token');
SELECT count(*) AS sessions FROM app_sessions;

-- SMS: the code goes to the outbox, a worker claims it, and it is scrubbed once sent.
SELECT mfa.member_upsert('globex', 'ivy', '+14165550123') ->> 'mfa_phone_number' AS phone;
SELECT mfa.otp_sms_send('globex', 'ivy', locale => 'es') ->> 'status_code' AS sent;
-- The table keeps the code encrypted; only the claim puts it into the text.
SELECT body FROM mfa.sms_outbox ORDER BY message_id DESC LIMIT 1;
SELECT id, phone_number, country_code, locale, regexp_replace(body, '[0-9]{6}', 'NNNNNN') AS body,
       substring(body from '[0-9]{6}') AS sms_code, attempts, receipt
  FROM mfa.sms_outbox_claim(10, '30 seconds') \gset msg_
\echo :msg_phone_number :msg_country_code :msg_locale :msg_body
\set sms_code :msg_sms_code
-- The claim's receipt (shown once) is what lets this worker, and only it, finish the message.
SELECT mfa.sms_outbox_complete(:msg_id, :'msg_receipt', 'SM0001') ->> 'status' AS delivery;
SELECT body FROM mfa.sms_outbox WHERE message_id = :msg_id;
SELECT r -> 'member' -> 'mfa_phone_number_verified' AS verified, r -> 'member' ->> 'default_mfa_method' AS default_method
  FROM mfa.otp_sms_authenticate('globex', 'ivy', :'sms_code') AS r;

-- Sending to a country that is not allowed sends nothing.
SELECT mfa.member_upsert('globex', 'jo') ->> 'member_id' AS member;
SELECT mfa.otp_sms_send('globex', 'jo', '+12423570123');
SELECT count(*) AS messages_for_jo FROM mfa.sms_outbox WHERE member_id = 'jo';
DROP TABLE app_sessions;
