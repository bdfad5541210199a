-- Floor plus the wake-up: otp_sms_send's plain inserts and a NOTIFY of the message, as the
-- extension sends by default (mfa.sms_outbox_notify = on).
SELECT bench.floor_sms_send('o' || n / 10, 'm' || n, bench.phone_of(n)), pg_notify('mfa_sms_outbox', n::text)
  FROM (SELECT 4 * (nextval('bench.sms_send_cursor') % :phone_members) + 1 AS n) pick;
