-- The session gate's audit event for the login it consumed (session_decide.sql), written in the
-- same transaction: a denial after it undoes both. A statement of its own so that each is one
-- router query on Citus (see session_decide.sql).
--   $1 organization_id   $2 member_id   $3 the consumed login's factors   $4 request_id
INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
VALUES ($1, $4::uuid, 'session.allowed', $2,
        jsonb_build_object('factors', jsonb_path_query_array($3::jsonb, '$[*].type')))
