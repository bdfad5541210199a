-- An organization's audit events as events_search reports them: newest first (by event id),
-- older than the event the page follows, at most $3 of them. The member filter, when there is
-- one, is written between this head and events_search.tail.sql (its own line, so that the plan
-- reads the member's index); a NULL filter does not filter.
--   $1 organization_id   $2 the event id the page follows (the largest bigint for the first page)
--   $3 events to return   $4 member_id   $5 event types   $6 after (inclusive)
--   $7 before (exclusive)
SELECT e.event_id, e.member_id, e.event_type, e.occurred_at, e.request_id::text AS request_id,
       e.actor, e.details
  FROM mfa.events e
 WHERE e.organization_id = $1 AND e.event_id < $2
