-- Hands out up to $1 deliverable messages, hidden for $2, oldest first, each with the receipt
-- whose hash is the matching element of $3 (by position). For a worker bound to organizations the
-- `:organization_filter` line below becomes a filter on organization_id: `= $4::text` for one
-- (the sms_outbox_organization_deliverable index then gives its messages in order) or
-- `= ANY($4::text[])` for several. One statement for every case, with `$4 IS NULL OR …`, got one
-- plan, which walked every organization's messages to find one tenant's.
--   $1 batch size   $2 visibility timeout   $3 the receipts' hashes   $4 the organizations
UPDATE mfa.sms_outbox o
   SET visible_at = statement_timestamp() + $2::interval, attempts = o.attempts + 1,
       receipt_hash = r.receipt_hash, claimed_by = session_user
  FROM (SELECT organization_id, message_id, row_number() OVER () AS position
          FROM (SELECT organization_id, message_id FROM mfa.sms_outbox
                 WHERE status = 'pending' AND visible_at <= statement_timestamp()
                   AND expires_at > statement_timestamp()
                   -- :organization_filter
                 ORDER BY visible_at LIMIT $1 FOR UPDATE SKIP LOCKED) locked) picked
  JOIN unnest($3::bytea[]) WITH ORDINALITY AS r (receipt_hash, position) USING (position)
 WHERE o.organization_id = picked.organization_id AND o.message_id = picked.message_id
RETURNING o.message_id, o.organization_id, o.phone_number, o.country_code, o.locale, o.body,
          o.attempts, o.created_at, o.expires_at, picked.position, o.member_id, o.code_ciphertext
