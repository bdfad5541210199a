         ORDER BY expires_at LIMIT 1000 FOR UPDATE SKIP LOCKED) stale
 WHERE o.organization_id = stale.organization_id AND o.message_id = stale.message_id
