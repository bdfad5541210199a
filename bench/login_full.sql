-- A whole mfa login: primary_authenticate (after the application's own password check; its own
-- transaction), then the TOTP code with the token and the session into the guarded table (one
-- transaction).
SELECT 4 * (nextval('bench.login_cursor') % :login_members) + 2 AS n \gset
SELECT mfa.primary_authenticate('o' || :n / 10, 'm' || :n) ->> 'intermediate_session_token' AS token \gset
BEGIN;
SELECT mfa.totp_authenticate('o' || :n / 10, 'm' || :n,
         (SELECT code FROM bench.totp_codes WHERE step = floor(extract(epoch FROM now()) / 30)::bigint),
         :token);
INSERT INTO bench.sessions_enforced (organization_id, member_id, intermediate_session_token)
VALUES ('o' || :n / 10, 'm' || :n, :token);
END;
