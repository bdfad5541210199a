-- One SMS worker step: claim one message, then acknowledge it with its receipt (two transactions).
SELECT id AS message_id, receipt FROM mfa.sms_outbox_claim(1, '30 seconds') \gset
SELECT mfa.sms_outbox_complete(:message_id, :receipt, 'bench');
