-- The session gate's audit event for the login it consumed (session_decide.sql), written in the
-- same transaction when the session row is (a row never written is login_abandoned.sql's). A
-- statement of its own so that each is one router query on Citus (see session_decide.sql).
-- It is the login's only event when it succeeds: it tells the login's story
-- (core::factor::login_story).
--   $1 organization_id   $2 member_id   $3 the login's story   $4 request_id
INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
VALUES ($1, $4::uuid, 'session.allowed', $2, $3)
