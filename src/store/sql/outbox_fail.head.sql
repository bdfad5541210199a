-- A worker's report that delivering message $5 failed: with $8 (retry) the message comes back
-- after an exponential back-off (5 s, 10 s, 20 s … at most 5 minutes) until $9 attempts; then, or
-- without retry, it is dead (kept, its code erased, for operators). The claim ends. Only the
-- worker holding the message's latest receipt, while the claim lasts. No row: not held.
--   $1 request_id   $2 the code's pattern in a body   $3 what replaces it
--   $4 the organizations the worker serves (NULL: all)   $5 message id   $6 the receipt's hash
--   $7 the error   $8 retry   $9 mfa.outbox_max_attempts   $10 the clock   $11 on Citus, the
--   message's organization: store/outbox.rs puts `AND organization_id = $11::text` between this
--   file and outbox_fail.tail.sql
WITH done AS (
    UPDATE mfa.sms_outbox
       SET status = CASE WHEN $8 AND attempts < $9 THEN 'pending' ELSE 'dead' END,
           code_ciphertext = CASE WHEN $8 AND attempts < $9 THEN code_ciphertext END,
           body = CASE WHEN $8 AND attempts < $9 THEN body ELSE regexp_replace(body, $2, $3, 'g') END,
           -- In seconds from the epoch: timestamptz + interval is STABLE (days and months follow
           -- the time zone), which Citus refuses over a column in an UPDATE.
           visible_at = to_timestamp(extract(epoch FROM $10::timestamptz)
                                     + least(300, 5 * power(2, greatest(attempts - 1, 0)))),
           last_error = left($7, 500), receipt_hash = NULL
     WHERE message_id = $5 AND receipt_hash = $6 AND ($4::text[] IS NULL OR organization_id = ANY($4))
       AND status = 'pending' AND visible_at > statement_timestamp()
