-- One step of the retention of mfa.events: of an organization's $3 oldest events after event $2
-- (by event id: the order they were written in), those that happened before $1 are deleted. Event
-- ids follow the order of writing, so the events to delete lead the organization's key range; a
-- step that deletes fewer than $3 reached the events to keep. Returns how many were deleted, how
-- many were read, and the largest id read (where the next step starts).
--   $1 the cutoff   $2 the event id to start after (0 for the first step)   $3 events to read
--   $4 organization_id
WITH oldest AS (
    SELECT event_id, occurred_at
      FROM mfa.events
     WHERE organization_id = $4 AND event_id > $2
     ORDER BY event_id
     LIMIT $3),
deleted AS (
    DELETE FROM mfa.events e
     USING oldest o
     WHERE e.organization_id = $4 AND e.event_id = o.event_id AND o.occurred_at < $1
 RETURNING e.event_id)
SELECT (SELECT count(*) FROM deleted) AS deleted,
       (SELECT count(*) FROM oldest) AS read,
       (SELECT max(event_id) FROM oldest) AS last_read
