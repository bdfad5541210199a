-- The audit events of a batch queued by the attempt ledger, written by its worker: they outlive
-- their callers' transactions. Arrays, one element per event: $1 organization_id, $2 request_id,
-- $3 event_type, $4 member_id, $5 actor (the caller's session user), $6 details, $7 when it
-- happened; $8 the clock. In queue order, so event ids follow it. On Citus, $9 the one
-- organization of the batch (each `:organization_filter` line names it).
-- A suspected theft of a remembered device's token revokes the member's devices here too (those
-- created before it), so that a caller who rolls its own revocation back still loses them. Rows
-- a transaction holds are skipped: the worker never waits for a caller's lock. What a skipped row
-- would escape, the member's devices_revoked_before (mfa.member_lockouts, a row no caller locks)
-- catches: a device created then or before is never honoured nor listed again.
WITH batch AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::timestamptz[]) WITH ORDINALITY
           AS e (organization_id, request_id, event_type, member_id, actor, details, occurred_at, n)),
revoked AS (
    DELETE FROM mfa.remembered_devices
     WHERE (organization_id, member_id, device_id) IN (
           SELECT d.organization_id, d.member_id, d.device_id
             FROM mfa.remembered_devices d JOIN batch e
               ON d.organization_id = e.organization_id AND d.member_id = e.member_id
            WHERE e.event_type = 'remembered_device.theft_suspected' AND d.created_at <= e.occurred_at
                  -- :organization_filter(d)
              FOR UPDATE OF d SKIP LOCKED)),
watermarked AS (
    INSERT INTO mfa.member_lockouts AS l (organization_id, member_id, updated_at, devices_revoked_before)
    SELECT e.organization_id, e.member_id, $8, max(e.occurred_at)
      FROM batch e
     WHERE e.event_type = 'remembered_device.theft_suspected'
       AND EXISTS (SELECT FROM mfa.members m
                    WHERE m.organization_id = e.organization_id AND m.member_id = e.member_id
                          -- :organization_filter(m)
                  )
     GROUP BY e.organization_id, e.member_id
        ON CONFLICT (organization_id, member_id) DO UPDATE
       SET updated_at = EXCLUDED.updated_at,
           devices_revoked_before = greatest(l.devices_revoked_before, EXCLUDED.devices_revoked_before))
INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, actor, details, occurred_at)
SELECT e.organization_id, e.request_id::uuid, e.event_type, e.member_id, e.actor::name,
       e.details::jsonb, e.occurred_at
  FROM batch e
 ORDER BY e.n
