-- Floor: the same row work as totp_authenticate (lock the factor row, update it), no cryptography.
SELECT bench.floor_totp_authenticate('o' || n / 10, 'm' || n,
         (SELECT code FROM bench.totp_codes WHERE step = floor(extract(epoch FROM now()) / 30)::bigint))
  FROM (SELECT 2 * (nextval('bench.baseline_cursor') % :totp_members) AS n) pick;
