-- mfa.totp_authenticate of the next member of the failure pool with a wrong code (the current one
-- plus one): a failed check, charged in the attempt ledger and written by its worker.
SELECT mfa.totp_authenticate('o' || n / 10, 'm' || n,
         (SELECT lpad(((code::int + 1) % 1000000)::text, 6, '0') FROM bench.totp_codes
           WHERE step = floor(extract(epoch FROM now()) / 30)::bigint))
  FROM (SELECT 2 * (nextval('bench.failure_cursor') % :failure_members) AS n) pick;
