-- mfa.otp_sms_send to the next member with a phone.
SELECT mfa.otp_sms_send('o' || n / 10, 'm' || n)
  FROM (SELECT 4 * (nextval('bench.sms_send_cursor') % :phone_members) + 1 AS n) pick;
