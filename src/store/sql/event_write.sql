-- The audit events of a batch queued by the attempt ledger, written by its worker: they outlive
-- their callers' transactions. Arrays, one element per event: $1 organization_id, $2 request_id,
-- $3 event_type, $4 member_id, $5 actor (the caller's session user), $6 details, $7 when it
-- happened. In queue order, so event ids follow it.
INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, actor, details, occurred_at)
SELECT e.organization_id, e.request_id::uuid, e.event_type, e.member_id, e.actor::name,
       e.details::jsonb, e.occurred_at
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
              $7::timestamptz[]) WITH ORDINALITY
       AS e (organization_id, request_id, event_type, member_id, actor, details, occurred_at, n)
 ORDER BY e.n
