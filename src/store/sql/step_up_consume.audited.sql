-- The audit event of a step-up's consumed token (step_up_consume.sql), in the same transaction.
--   $1 organization_id   $2 member_id   $3 the consumed token's factors   $4 request_id
--   $5 the session table's name   $6 the step-up's request ids (its story: mfa._login_story)
INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
VALUES ($1, $4::uuid, 'session.stepped_up', $2,
        jsonb_build_object('session_table', $5::text) || mfa._login_story($3::jsonb, $6::uuid[]))
