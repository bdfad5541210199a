 RETURNING organization_id, member_id, status, attempts),
audited AS (
    INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
    SELECT organization_id, $1::uuid, 'sms_outbox.failed', member_id,
           jsonb_build_object('message_id', $5::bigint, 'status', status, 'attempts', attempts)
      FROM done)
SELECT status, attempts FROM done
