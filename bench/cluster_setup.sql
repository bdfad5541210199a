-- The data of the one-node-against-Citus comparison (docs/citus.md): :members members in
-- organizations of ten, each with the same authenticator secret (enrolled through
-- mfa.totp_migrate, so encrypted as in production), and a guarded sessions table, distributed
-- and colocated with mfa.organizations when :citus. Run after CREATE EXTENSION mfa (and
-- mfa.distribute() on Citus).
\set ON_ERROR_STOP on
CREATE SCHEMA bench;
CREATE SEQUENCE bench.login_cursor;
-- The secret's code for each 30-second step, filled by whoever runs the comparison.
CREATE TABLE bench.totp_codes (step bigint PRIMARY KEY, code text NOT NULL);
CREATE TABLE bench.sessions (
    organization_id            text   NOT NULL,
    session_id                 bigint GENERATED ALWAYS AS IDENTITY,
    member_id                  text   NOT NULL,
    intermediate_session_token text,
    authentication_factors     jsonb,
    PRIMARY KEY (organization_id, session_id)
);
\if :citus
SELECT create_distributed_table('bench.sessions', 'organization_id', colocate_with => 'mfa.organizations');
\endif
SELECT mfa.session_table_guard('bench.sessions');
INSERT INTO mfa.organizations (organization_id, mfa_policy)
SELECT 'o' || o, 'REQUIRED_FOR_ALL' FROM generate_series(0, (:members - 1) / 10) o;
INSERT INTO mfa.members (organization_id, member_id, mfa_enrolled)
SELECT 'o' || n / 10, 'm' || n, true FROM generate_series(0, :members - 1) n;
\if :citus
-- One statement per member, each a call on its own that Citus delegates to the member's node and
-- commits there: one statement enrolling every member would be one distributed transaction,
-- committed in two phases, and an enrollment that activates a factor notifies (mfa_events), which
-- a prepared transaction cannot (cannot PREPARE a transaction that has executed … NOTIFY).
\o /dev/null
SELECT format('SELECT mfa.totp_migrate(%L, %L, %L)', 'o' || n / 10, 'm' || n, 'JBSWY3DPEHPK3PXP')
  FROM generate_series(0, :members - 1) n \gexec
\o
SELECT count(*) AS enrolled FROM mfa.totp_registrations;
\else
SELECT count(mfa.totp_migrate('o' || n / 10, 'm' || n, 'JBSWY3DPEHPK3PXP'))
  FROM generate_series(0, :members - 1) n;
\endif
