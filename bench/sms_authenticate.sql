-- mfa.otp_sms_authenticate of the next member a code was sent to, with that code.
SELECT mfa.otp_sms_authenticate(organization_id, member_id, secret)
  FROM bench.ready WHERE k = (SELECT nextval('bench.ready_cursor'));
