   AND ($5::text[] IS NULL OR e.event_type = ANY ($5))
   AND ($6::timestamptz IS NULL OR e.occurred_at >= $6)
   AND ($7::timestamptz IS NULL OR e.occurred_at < $7)
 ORDER BY e.event_id DESC
 LIMIT $3
