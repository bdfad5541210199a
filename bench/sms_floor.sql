-- Floor: the same row work as otp_sms_authenticate (lock the code row, update it), no cryptography.
SELECT bench.floor_sms_authenticate(organization_id, member_id, secret)
  FROM bench.ready WHERE k = (SELECT nextval('bench.ready_cursor'));
