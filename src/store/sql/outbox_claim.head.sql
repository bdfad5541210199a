-- Hands out up to $1 deliverable messages, hidden for $2, oldest first, each with the receipt
-- whose hash is the matching element of $3 (by position). For a worker bound to organizations, store/outbox.rs
-- puts a filter on organization_id between this file and outbox_claim.tail.sql: `= $4::text` for
-- one (the sms_outbox_organization_deliverable index then gives its messages in order) or
-- `= ANY($4::text[])` for several; for every organization, nothing. One statement for every case, with `$4 IS NULL OR …`, got one
-- plan, which walked every organization's messages to find one tenant's.
--   $1 batch size   $2 visibility timeout   $3 the receipts' hashes   $4 the organizations
UPDATE mfa.sms_outbox o
   SET visible_at = statement_timestamp() + $2::interval, attempts = o.attempts + 1,
       receipt_hash = r.receipt_hash, claimed_by = session_user
  FROM (SELECT organization_id, message_id, row_number() OVER () AS position
          FROM (SELECT organization_id, message_id FROM mfa.sms_outbox
                 WHERE status = 'pending' AND visible_at <= statement_timestamp()
                   AND expires_at > statement_timestamp()
