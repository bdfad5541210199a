-- An audit event queued by the attempt ledger, written by its worker: it outlives the caller's
-- transaction. $1 organization_id, $2 request_id, $3 event_type, $4 member_id, $5 actor (the
-- caller's session user), $6 details, $7 when it happened.
INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, actor, details, occurred_at)
VALUES ($1, $2::uuid, $3, $4, $5::name, $6::jsonb, $7)
