-- A login given up (its token died without a session: login.abandoned), or a step-up whose
-- proven factors were never applied to a session (step_up.abandoned), as its one audit event, with
-- its story (core::factor::login_story); for a token the session gate consumed for a row that was
-- never written, also "session_row_written": false (core::session_gate::SessionEvent::given_up).
--   $1 organization_id   $2 member_id   $3 request_id (its start's)   $4 event_type   $5 the story
INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
VALUES ($1, $3::uuid, $4, $2, $5)
