-- The same step on a plain SKIP LOCKED queue of the outbox's shape.
UPDATE bench.plain_queue q SET visible_at = now() + interval '30 seconds', attempts = q.attempts + 1
  FROM (SELECT organization_id, message_id FROM bench.plain_queue
         WHERE status = 'pending' AND visible_at <= now() AND expires_at > now()
         ORDER BY visible_at LIMIT 1 FOR UPDATE SKIP LOCKED) picked
 WHERE q.organization_id = picked.organization_id AND q.message_id = picked.message_id
RETURNING q.message_id \gset
UPDATE bench.plain_queue SET status = 'sent', sent_at = now(), provider_message_id = 'bench', body = ''
 WHERE message_id = :message_id;
