-- A session insert into a table guarded by mfa.session_table_guard (consumes a login's token).
INSERT INTO bench.sessions_enforced (organization_id, member_id, intermediate_session_token)
SELECT organization_id, member_id, secret FROM bench.ready WHERE k = (SELECT nextval('bench.ready_cursor'));
