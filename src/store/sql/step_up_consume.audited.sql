-- The audit event of a step-up's consumed token (step_up_consume.sql), in the same transaction
-- when the session row is written (a row never written is login_abandoned.sql's).
--   $1 organization_id   $2 member_id   $3 the step-up's story (core::factor::login_story)
--   $4 request_id   $5 the session table's name
INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
VALUES ($1, $4::uuid, 'session.stepped_up', $2,
        jsonb_build_object('session_table', $5::text) || $3::jsonb)
