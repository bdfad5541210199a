-- A whole TOTP login for the one-node-against-Citus comparison (docs/citus.md): primary_authenticate
-- in a transaction of its own, then the code with the token and the session into the guarded
-- table in one transaction. Run with `pgbench -M extended` (the variables are parameters): each mfa
-- call stands alone with parameters for arguments, so that Citus delegates it to the
-- organization's node; the same script runs on one node.
SELECT 'o' || n / 10 AS org, 'm' || n AS member
  FROM (SELECT nextval('bench.login_cursor') % :members::bigint AS n) s \gset
SELECT mfa.primary_authenticate(:org, :member) AS login \gset
SELECT :login::jsonb ->> 'intermediate_session_token' AS token,
       (SELECT code FROM bench.totp_codes WHERE step = floor(extract(epoch FROM clock_timestamp()) / 30)::bigint) AS code \gset
BEGIN;
SELECT mfa.totp_authenticate(:org, :member, :code, :token);
INSERT INTO bench.sessions (organization_id, member_id, intermediate_session_token)
VALUES (:org, :member, :token);
END;
