-- Floor: otp_sms_send's plain inserts (a code row and an outbox row).
SELECT bench.floor_sms_send('o' || n / 10, 'm' || n, bench.phone_of(n))
  FROM (SELECT 4 * (nextval('bench.sms_send_cursor') % :phone_members) + 1 AS n) pick;
