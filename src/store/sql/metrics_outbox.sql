-- mfa.metrics(): the SMS outbox's messages not delivered yet, at $2 (the clock); with $1 one row
-- per organization that has any, else one row (organization_id NULL; none for an empty outbox).
--   pending: waiting for a worker (deliverable, backing off after a failure, or whose claim expired)
--   claimed: held by a worker's live claim
--   dead: given up, kept for operators
--   oldest_pending_seconds: the age of the oldest pending or claimed message (NULL: none)
-- Only pending and dead messages are read, each arm of the OR through its partial index
-- (one of those of pending messages, and sms_outbox_dead): never the delivered ones, however many.
SELECT CASE WHEN $1 THEN organization_id END AS organization_id,
       count(*) FILTER (WHERE status = 'pending' AND (receipt_hash IS NULL OR visible_at <= $2)) AS pending,
       count(*) FILTER (WHERE status = 'pending' AND receipt_hash IS NOT NULL AND visible_at > $2) AS claimed,
       count(*) FILTER (WHERE status = 'dead') AS dead,
       extract(epoch FROM $2 - min(created_at) FILTER (WHERE status = 'pending'))::float8 AS oldest_pending_seconds
  FROM mfa.sms_outbox
 WHERE status = 'pending' OR status = 'dead'
 GROUP BY 1
 ORDER BY 1
