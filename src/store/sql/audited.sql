-- The audit event of a statement that records it in its caller's transaction, as its last CTE:
--   $1 organization_id   $2 member_id   $3 request_id   $4 event_type   $5 event details
-- (store::audit::Event::args, in this order).
audited AS (
    INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
    VALUES ($1, $3::uuid, $4, $2, $5))
