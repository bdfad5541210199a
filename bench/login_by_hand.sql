-- A whole login written by hand, the figure people compare with: lock the member's secret, verify
-- the code within ±1 step with pgcrypto, spend the step, insert the session; one transaction.
SELECT 2 * (nextval('bench.baseline_cursor') % :totp_members) AS n \gset
BEGIN;
SELECT bench.plpgsql_totp_authenticate('o' || :n / 10, 'm' || :n,
         (SELECT code FROM bench.totp_codes WHERE step = floor(extract(epoch FROM now()) / 30)::bigint));
INSERT INTO bench.sessions_plain (organization_id, member_id, intermediate_session_token)
VALUES ('o' || :n / 10, 'm' || :n, 'by-hand');
END;
