-- The organizations whose oldest audit event (by event id) happened before $1, for the retention
-- of mfa.events (mfa.events_retention_days): one descent of the primary key per organization of
-- the trail ('' included: project-wide events), none of their rows read but the oldest.
--   $1 the retention's cutoff
WITH RECURSIVE organizations (organization_id) AS (
    SELECT min(organization_id) FROM mfa.events
  UNION ALL
    SELECT (SELECT min(e.organization_id) FROM mfa.events e WHERE e.organization_id > o.organization_id)
      FROM organizations o
     WHERE o.organization_id IS NOT NULL)
SELECT o.organization_id
  FROM organizations o
 WHERE o.organization_id IS NOT NULL
   AND (SELECT e.occurred_at FROM mfa.events e
         WHERE e.organization_id = o.organization_id
         ORDER BY e.event_id
         LIMIT 1) < $1
