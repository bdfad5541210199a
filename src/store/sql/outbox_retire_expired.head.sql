-- Retires pending messages whose code expired (they are never handed out) and erases their code:
-- the ciphertext, and the code in the body of a message queued by 0.1.0, which kept it in clear.
-- On Citus, organization by organization: store/outbox.rs puts
-- `AND organization_id = $3::text` between this file and outbox_retire_expired.tail.sql (a locking statement across shards is refused there).
--   $1 the code's pattern in a body (its digits)   $2 what replaces it   $3 the organization
UPDATE mfa.sms_outbox o
   SET status = 'expired', code_ciphertext = NULL, body = regexp_replace(body, $1, $2, 'g')
  FROM (SELECT organization_id, message_id FROM mfa.sms_outbox
         WHERE status = 'pending' AND expires_at <= statement_timestamp()
