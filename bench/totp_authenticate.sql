-- mfa.totp_authenticate of the next TOTP member with the current code.
SELECT mfa.totp_authenticate('o' || n / 10, 'm' || n,
         (SELECT code FROM bench.totp_codes WHERE step = floor(extract(epoch FROM now()) / 30)::bigint))
  FROM (SELECT 2 * (nextval('bench.totp_cursor') % :totp_members) AS n) pick;
