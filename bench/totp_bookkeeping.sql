-- The extension's bookkeeping for a TOTP success in PL/pgSQL, without cryptography (see baselines.sql).
SELECT bench.bookkeeping_totp_authenticate('o' || n / 10, 'm' || n,
         (SELECT code FROM bench.totp_codes WHERE step = floor(extract(epoch FROM now()) / 30)::bigint))
  FROM (SELECT 2 * (nextval('bench.baseline_cursor') % :totp_members) AS n) pick;
