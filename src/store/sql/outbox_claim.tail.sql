                 ORDER BY visible_at LIMIT $1 FOR UPDATE SKIP LOCKED) locked) picked
  JOIN unnest($3::bytea[]) WITH ORDINALITY AS r (receipt_hash, position) USING (position)
 WHERE o.organization_id = picked.organization_id AND o.message_id = picked.message_id
RETURNING o.message_id, o.organization_id, o.phone_number, o.country_code, o.locale, o.body,
          o.attempts, o.created_at, o.expires_at, picked.position, o.member_id, o.code_ciphertext
