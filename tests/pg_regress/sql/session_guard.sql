-- The application's sessions table under mfa.session_table_guard: no session row before the
-- organization's policy is met, on every path that writes one, for every role below superuser;
-- step-up of an existing session; and an RLS policy that trusts the factors the gate wrote.
\pset null '∅'
\set VERBOSITY terse
SELECT mfa.organization_upsert('hooli', 'REQUIRED_FOR_ALL') ->> 'mfa_policy' AS policy;
SELECT mfa.member_upsert('hooli', 'gavin') ->> 'member_id' AS member;
SELECT mfa.totp_migrate('hooli', 'gavin', 'JBSWY3DPEHPK3PXP', ARRAY['abcd-efgh-ijkl', 'mnop-qrst-uvwx']) ->> 'status_code' AS migrated;

-- The application's role owns its sessions table, as it usually does.
CREATE ROLE hooli_app LOGIN;
GRANT mfa_app TO hooli_app;
CREATE SCHEMA hooli AUTHORIZATION hooli_app;
SET ROLE hooli_app;
CREATE TABLE hooli.sessions (
    id serial PRIMARY KEY,
    organization_id text NOT NULL,
    member_id text NOT NULL,
    intermediate_session_token text,
    authentication_factors jsonb,
    last_seen_at timestamptz
);
RESET ROLE;

-- mfa_admin guards it (idempotent; the columns take their default names here).
SELECT mfa.session_table_guard('hooli.sessions');
SELECT mfa.session_table_guard('hooli.sessions');
SELECT session_table, organization_column, member_column, token_column, factors_column FROM mfa.guarded_session_tables;
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'hooli.sessions'::regclass ORDER BY tgname;
-- Columns are checked.
SELECT mfa.session_table_guard('hooli.sessions', member_column => 'no_such_column');
SELECT mfa.session_table_guard('hooli.sessions', factors_column => 'member_id');

SET ROLE hooli_app;
-- A login: no session before the second factor, whatever the statement says about its factors.
SELECT login ->> 'intermediate_session_token' AS token, login ->> 'request_id' AS login_request
  FROM mfa.primary_authenticate('hooli', 'gavin') login \gset
INSERT INTO hooli.sessions (organization_id, member_id, intermediate_session_token, authentication_factors)
VALUES ('hooli', 'gavin', :'token', '[{"type": "totp", "delivery_method": "authenticator_app"}]');
\set code `oathtool --totp -b JBSWY3DPEHPK3PXP`
SELECT answer ->> 'status_code' AS totp, answer ->> 'request_id' AS totp_request
  FROM mfa.totp_authenticate('hooli', 'gavin', :'code', :'token') answer \gset
\echo :totp
INSERT INTO hooli.sessions (organization_id, member_id, intermediate_session_token)
VALUES ('hooli', 'gavin', :'token') RETURNING id AS sid \gset
SELECT jsonb_path_query_array(authentication_factors, '$[*].type') AS factors,
       mfa.session_aal(authentication_factors) AS aal,
       mfa.last_mfa_at(authentication_factors) > now() - interval '1 minute' AS recent_mfa
  FROM hooli.sessions;
-- The token served its one session and is gone. The audit trail keeps the login as one event,
-- the session's: its story names each factor, when it was proven and the request that proved it
-- (the answers' request ids). A factor proven in a login writes an event of its own only when it
-- changes more than the login: here the first code enrolled gavin (details name what was set,
-- never a null).
RESET ROLE;
SELECT count(*) AS tokens_left FROM mfa.intermediate_sessions WHERE member_id = 'gavin';
SELECT event_type, details - 'request_ids' - 'authenticated_at' AS details,
       details -> 'request_ids' = jsonb_build_array(:'login_request', :'totp_request') AS requests,
       jsonb_array_length(details -> 'authenticated_at') AS times
  FROM mfa.events
 WHERE member_id = 'gavin' AND event_type IN ('totp.authenticate', 'session.allowed')
 ORDER BY event_id;
SET ROLE hooli_app;

-- The common UPDATE touches no guarded column and no trigger runs for it.
UPDATE hooli.sessions SET last_seen_at = now();
-- The identity and the factors of a session are immutable, through UPDATE, upsert or MERGE.
UPDATE hooli.sessions SET member_id = 'bill';
UPDATE hooli.sessions SET authentication_factors = '[]';
INSERT INTO hooli.sessions (id, organization_id, member_id) VALUES (:sid, 'hooli', 'gavin')
    ON CONFLICT (id) DO UPDATE SET member_id = 'bill';
MERGE INTO hooli.sessions s USING (VALUES (:sid)) v(id) ON s.id = v.id
 WHEN MATCHED THEN UPDATE SET organization_id = 'other';
-- Writing the same values again is no change (ORMs write every column).
UPDATE hooli.sessions SET member_id = member_id, authentication_factors = authentication_factors;

-- The owner cannot switch the guard off.
ALTER TABLE hooli.sessions DISABLE TRIGGER ALL;
ALTER TABLE hooli.sessions ENABLE REPLICA TRIGGER mfa_session_gate_insert;
DROP TRIGGER mfa_session_gate_update ON hooli.sessions;
ALTER TABLE hooli.sessions RENAME COLUMN member_id TO member;
ALTER TABLE hooli.sessions RENAME TO old_sessions;
CREATE TABLE hooli.more_sessions () INHERITS (hooli.sessions);
DROP TABLE hooli.sessions;
-- Other DDL is untouched.
ALTER TABLE hooli.sessions ADD COLUMN user_agent text;
CREATE INDEX ON hooli.sessions (member_id);

-- Step-up: a protected page wants MFA within the last 3 seconds. The policy trusts the factors
-- column because only the gate writes it.
CREATE TABLE hooli.payroll (organization_id text, amount int);
INSERT INTO hooli.payroll VALUES ('hooli', 100);
ALTER TABLE hooli.payroll ENABLE ROW LEVEL SECURITY;
ALTER TABLE hooli.payroll FORCE ROW LEVEL SECURITY;
CREATE POLICY recent_mfa ON hooli.payroll USING (EXISTS (
    SELECT FROM hooli.sessions s
     WHERE s.id = current_setting('hooli.session_id')::int
       AND s.organization_id = payroll.organization_id
       AND mfa.last_mfa_at(s.authentication_factors) > clock_timestamp() - interval '3 seconds'));
SET hooli.session_id = :sid;
SELECT pg_sleep(3.1);
SELECT count(*) AS payroll_rows_before_step_up FROM hooli.payroll;
-- The member proves a factor again with a step-up token, and the application writes that token
-- into the session row.
SELECT mfa.step_up_start('hooli', 'gavin') ->> 'intermediate_session_token' AS step_up \gset
-- A step-up token never creates a session.
INSERT INTO hooli.sessions (organization_id, member_id, intermediate_session_token)
VALUES ('hooli', 'gavin', :'step_up');
-- Nor raises assurance before a factor is proven with it.
UPDATE hooli.sessions SET intermediate_session_token = :'step_up' WHERE id = :sid;
SELECT mfa.recovery_codes_recover('hooli', 'gavin', 'abcd-efgh-ijkl', :'step_up') ->> 'status_code' AS recovered;
UPDATE hooli.sessions SET intermediate_session_token = :'step_up' WHERE id = :sid
RETURNING jsonb_path_query_array(authentication_factors, '$[*].type') AS factors;
SELECT count(*) AS payroll_rows_after_step_up FROM hooli.payroll;
-- One token, one step-up.
UPDATE hooli.sessions SET intermediate_session_token = NULL WHERE id = :sid;
UPDATE hooli.sessions SET intermediate_session_token = :'step_up' WHERE id = :sid;
RESET hooli.session_id;
RESET ROLE;

-- Only mfa_admin takes the guard off, and then the owner's DDL is its own again.
SET ROLE hooli_app;
SELECT mfa.session_table_unguard('hooli.sessions');
RESET ROLE;
SELECT mfa.session_table_unguard('hooli.sessions');
SELECT count(*) AS gate_triggers FROM pg_trigger WHERE tgrelid = 'hooli.sessions'::regclass AND NOT tgisinternal;
-- Every step is in the audit trail.
SELECT event_type, details ->> 'session_table' AS session_table FROM mfa.events
 WHERE organization_id IN ('', 'hooli') AND event_type ~ '^(session_table|session|step_up)\.'
   AND event_type <> 'session.denied' ORDER BY event_id;
-- So is every refusal above: the attempt ledger's worker writes it in a transaction of its own,
-- which the refusal's rollback cannot undo (a moment later, hence the wait).
DO $$ BEGIN
  FOR i IN 1..200 LOOP
    EXIT WHEN (SELECT count(*) FROM mfa.events WHERE organization_id = 'hooli' AND event_type = 'session.denied') >= 8;
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT details ->> 'error_type' AS denied, count(*) FROM mfa.events
 WHERE organization_id = 'hooli' AND event_type = 'session.denied' GROUP BY 1 ORDER BY 1;
SET ROLE hooli_app;
DROP TABLE hooli.sessions, hooli.payroll;
RESET ROLE;
DROP SCHEMA hooli;
DROP OWNED BY hooli_app;
DROP ROLE hooli_app;
