-- A login given up (its token died without a session) as its one audit event, with its story,
-- under the request id of its start.
--   $1 organization_id   $2 member_id   $3 the login's request ids   $4 its factors
INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
VALUES ($1, ($3::uuid[])[1], 'login.abandoned', $2, mfa._login_story($4::jsonb, $3::uuid[]))
