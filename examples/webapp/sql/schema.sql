-- The reference web application's database objects, run once by a superuser (scripts/demo.sh does).
-- Roles: mfa_webapp (the application: LOGIN, in mfa_app, owns schema app), mfa_webapp_admin (the admin
-- page's pool only: LOGIN, in mfa_admin), mfa_webapp_sms (the SMS delivery worker: in mfa_sms_worker).
-- Local demo clusters use trust authentication on 127.0.0.1 and /tmp; give these roles passwords (or
-- certificates) anywhere else.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS mfa;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mfa_webapp') THEN
        CREATE ROLE mfa_webapp LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mfa_webapp_admin') THEN
        CREATE ROLE mfa_webapp_admin LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mfa_webapp_sms') THEN
        CREATE ROLE mfa_webapp_sms LOGIN;
    END IF;
    -- Owns the billing table: the application reads it, under its RLS policy, and cannot switch
    -- the policy off.
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mfa_webapp_data') THEN
        CREATE ROLE mfa_webapp_data NOLOGIN;
    END IF;
END $$;
GRANT mfa_app TO mfa_webapp;
GRANT mfa_admin TO mfa_webapp_admin;
GRANT mfa_sms_worker TO mfa_webapp_sms;

DROP SCHEMA IF EXISTS app CASCADE;
CREATE SCHEMA app AUTHORIZATION mfa_webapp;
SET ROLE mfa_webapp;

-- The application's own users: the password is the application's business, MFA is mfa's.
CREATE TABLE app.users (
    organization_id text NOT NULL,
    email           text NOT NULL,
    password_hash   text NOT NULL,             -- argon2id, PHC string
    display_name    text NOT NULL,
    is_admin        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (organization_id, email)
);

-- Sessions: the cookie holds a random token; the row keeps its SHA-256 only. mfa's guard decides
-- every INSERT (the login's intermediate session token must carry what the policy demands) and
-- every step-up (a new token written into intermediate_session_token).
CREATE TABLE app.sessions (
    session_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash      bytea NOT NULL UNIQUE,
    organization_id text NOT NULL,
    member_id       text NOT NULL,
    intermediate_session_token text,
    authentication_factors jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, member_id) REFERENCES app.users ON DELETE CASCADE
);
RESET ROLE;
SELECT mfa.session_table_guard('app.sessions');

-- The sensitive page's rows: visible only through a session (named by its cookie token, which the
-- application does not store) whose newest sealed second factor is fresh. The window is 5 minutes;
-- the application may shorten it (app.step_up_seconds), never lengthen it.
CREATE TABLE app.billing (
    invoice_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id text NOT NULL,
    period          text NOT NULL,
    amount_cents    bigint NOT NULL,
    card            text NOT NULL
);
ALTER TABLE app.billing OWNER TO mfa_webapp_data;
ALTER TABLE app.billing ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.billing FORCE ROW LEVEL SECURITY;
CREATE POLICY fresh_mfa ON app.billing FOR SELECT TO mfa_webapp USING (EXISTS (
    SELECT FROM app.sessions s
     WHERE s.token_hash = sha256(convert_to(current_setting('app.session_token', true), 'UTF8'))
       AND s.organization_id = billing.organization_id
       AND mfa.last_mfa_at(s.organization_id, s.member_id, s.authentication_factors)
           > now() - make_interval(secs => least(300, coalesce(
                 nullif(current_setting('app.step_up_seconds', true), '')::int, 300)))));
GRANT SELECT ON app.billing TO mfa_webapp;
