-- The same session insert into a table without the trigger.
INSERT INTO bench.sessions_plain (organization_id, member_id, intermediate_session_token)
SELECT organization_id, member_id, secret FROM bench.ready WHERE k = (SELECT nextval('bench.ready_cursor'));
