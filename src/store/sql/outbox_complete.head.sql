-- A worker's report that the provider accepted message $5: it is sent and its code erased, with
-- the audit event. Only the worker holding the message's latest receipt can finish it (a receipt
-- is shown once, by the claim), while the claim lasts; repeated with the same receipt, it gives
-- the same answer. No row: the message is not held with this receipt.
--   $1 request_id   $2 the code's pattern in a body   $3 what replaces it
--   $4 the organizations the worker serves (NULL: all)   $5 message id   $6 the receipt's hash
--   $7 the provider's message id   $8 the clock   $9 on Citus, the message's organization: : store/outbox.rs
--   puts `AND organization_id = $9::text` (one shard) between this file and outbox_complete.tail.sql
WITH done AS (
    UPDATE mfa.sms_outbox
       SET status = 'sent', sent_at = coalesce(sent_at, $8),
           provider_message_id = coalesce(provider_message_id, left($7, 200)),
           code_ciphertext = NULL, body = regexp_replace(body, $2, $3, 'g'), last_error = NULL
     WHERE message_id = $5 AND receipt_hash = $6 AND ($4::text[] IS NULL OR organization_id = ANY($4))
       AND (status = 'sent' OR (status = 'pending' AND visible_at > statement_timestamp()))
