-- The application's sessions table under mfa.session_table_guard: no session row before the
-- organization's policy is met, on every path that writes one, for every role below superuser;
-- step-up of an existing session; and an RLS policy that trusts the factors the gate wrote.
\pset null '∅'
\set VERBOSITY terse
SELECT mfa.organization_upsert('initech', 'REQUIRED_FOR_ALL') ->> 'mfa_policy' AS policy;
SELECT mfa.member_upsert('initech', 'peter') ->> 'member_id' AS member;
SELECT mfa.totp_migrate('initech', 'peter', 'JBSWY3DPEHPK3PXP', ARRAY['abcd-efgh-ijkl', 'mnop-qrst-uvwx']) ->> 'status_code' AS migrated;

-- The application's role owns its sessions table, as it usually does.
CREATE ROLE initech_app LOGIN;
GRANT mfa_app TO initech_app;
CREATE SCHEMA initech AUTHORIZATION initech_app;
SET ROLE initech_app;
CREATE TABLE initech.sessions (
    id serial PRIMARY KEY,
    organization_id text NOT NULL,
    member_id text NOT NULL,
    intermediate_session_token text,
    authentication_factors jsonb,
    last_seen_at timestamptz
);
RESET ROLE;

-- mfa_admin guards it (idempotent; the columns take their default names here).
SELECT mfa.session_table_guard('initech.sessions');
SELECT mfa.session_table_guard('initech.sessions');
SELECT session_table, organization_column, member_column, token_column, factors_column FROM mfa.guarded_session_tables;
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'initech.sessions'::regclass ORDER BY tgname;
-- Columns are checked.
SELECT mfa.session_table_guard('initech.sessions', member_column => 'no_such_column');
SELECT mfa.session_table_guard('initech.sessions', factors_column => 'member_id');

SET ROLE initech_app;
-- A login: no session before the second factor, whatever the statement says about its factors.
SELECT mfa.primary_authenticate('initech', 'peter') ->> 'intermediate_session_token' AS token \gset
INSERT INTO initech.sessions (organization_id, member_id, intermediate_session_token, authentication_factors)
VALUES ('initech', 'peter', :'token', '[{"type": "totp", "delivery_method": "authenticator_app"}]');
\set code `oathtool --totp -b JBSWY3DPEHPK3PXP`
SELECT mfa.totp_authenticate('initech', 'peter', :'code', :'token') ->> 'status_code' AS totp;
INSERT INTO initech.sessions (organization_id, member_id, intermediate_session_token)
VALUES ('initech', 'peter', :'token') RETURNING id AS sid \gset
SELECT jsonb_path_query_array(authentication_factors, '$[*].type') AS factors,
       mfa.session_aal(authentication_factors) AS aal,
       mfa.last_mfa_at(authentication_factors) > now() - interval '1 minute' AS recent_mfa
  FROM initech.sessions;

-- The common UPDATE touches no guarded column and no trigger runs for it.
UPDATE initech.sessions SET last_seen_at = now();
-- The identity and the factors of a session are immutable, through UPDATE, upsert or MERGE.
UPDATE initech.sessions SET member_id = 'bill';
UPDATE initech.sessions SET authentication_factors = '[]';
INSERT INTO initech.sessions (id, organization_id, member_id) VALUES (:sid, 'initech', 'peter')
    ON CONFLICT (id) DO UPDATE SET member_id = 'bill';
MERGE INTO initech.sessions s USING (VALUES (:sid)) v(id) ON s.id = v.id
 WHEN MATCHED THEN UPDATE SET organization_id = 'other';
-- Writing the same values again is no change (ORMs write every column).
UPDATE initech.sessions SET member_id = member_id, authentication_factors = authentication_factors;

-- The owner cannot switch the guard off.
ALTER TABLE initech.sessions DISABLE TRIGGER ALL;
ALTER TABLE initech.sessions ENABLE REPLICA TRIGGER mfa_session_gate_insert;
DROP TRIGGER mfa_session_gate_update ON initech.sessions;
ALTER TABLE initech.sessions RENAME COLUMN member_id TO member;
ALTER TABLE initech.sessions RENAME TO old_sessions;
CREATE TABLE initech.more_sessions () INHERITS (initech.sessions);
DROP TABLE initech.sessions;
-- Other DDL is untouched.
ALTER TABLE initech.sessions ADD COLUMN user_agent text;
CREATE INDEX ON initech.sessions (member_id);

-- Step-up: a protected page wants MFA within the last minute. The policy trusts the factors
-- column because only the gate writes it.
CREATE TABLE initech.payroll (organization_id text, amount int);
INSERT INTO initech.payroll VALUES ('initech', 100);
ALTER TABLE initech.payroll ENABLE ROW LEVEL SECURITY;
ALTER TABLE initech.payroll FORCE ROW LEVEL SECURITY;
CREATE POLICY recent_mfa ON initech.payroll USING (EXISTS (
    SELECT FROM initech.sessions s
     WHERE s.id = current_setting('initech.session_id')::int
       AND s.organization_id = payroll.organization_id
       AND mfa.last_mfa_at(s.authentication_factors) > clock_timestamp() - interval '1 second'));
SET initech.session_id = :sid;
SELECT pg_sleep(1.1);
SELECT count(*) AS payroll_rows_before_step_up FROM initech.payroll;
-- The member proves a factor again with a step-up token, and the application writes that token
-- into the session row.
SELECT mfa.step_up_start('initech', 'peter') ->> 'intermediate_session_token' AS step_up \gset
-- A step-up token never creates a session.
INSERT INTO initech.sessions (organization_id, member_id, intermediate_session_token)
VALUES ('initech', 'peter', :'step_up');
-- Nor raises assurance before a factor is proven with it.
UPDATE initech.sessions SET intermediate_session_token = :'step_up' WHERE id = :sid;
SELECT mfa.recovery_codes_recover('initech', 'peter', 'abcd-efgh-ijkl', :'step_up') ->> 'status_code' AS recovered;
UPDATE initech.sessions SET intermediate_session_token = :'step_up' WHERE id = :sid
RETURNING jsonb_path_query_array(authentication_factors, '$[*].type') AS factors;
SELECT count(*) AS payroll_rows_after_step_up FROM initech.payroll;
-- One token, one step-up.
UPDATE initech.sessions SET intermediate_session_token = NULL WHERE id = :sid;
UPDATE initech.sessions SET intermediate_session_token = :'step_up' WHERE id = :sid;
RESET initech.session_id;
RESET ROLE;

-- Only mfa_admin takes the guard off, and then the owner's DDL is its own again.
SET ROLE initech_app;
SELECT mfa.session_table_unguard('initech.sessions');
RESET ROLE;
SELECT mfa.session_table_unguard('initech.sessions');
SELECT count(*) AS gate_triggers FROM pg_trigger WHERE tgrelid = 'initech.sessions'::regclass AND NOT tgisinternal;
-- Every step is in the audit trail.
SELECT event_type, details ->> 'session_table' AS session_table FROM mfa.events
 WHERE event_type ~ '^(session_table|session|step_up)\.' ORDER BY event_id;
SET ROLE initech_app;
DROP TABLE initech.sessions, initech.payroll;
RESET ROLE;
DROP SCHEMA initech;
DROP OWNED BY initech_app;
DROP ROLE initech_app;
