-- One audit event, written in the caller's transaction (it commits or rolls back with it). Every
-- statement that records its event as an `audited` CTE uses these columns and this order.
--   $1 organization_id ('' for project-wide events)   $2 member_id   $3 request_id
--   $4 event_type   $5 details (jsonb; never a secret)
INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
VALUES ($1, $3::uuid, $4, $2, $5)
