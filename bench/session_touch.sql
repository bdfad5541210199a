-- What an application does on every request: a session's last_seen_at, in the guarded table.
-- No guarded column changes, so no trigger of the guard runs.
\set id random(1, :sessions)
UPDATE bench.sessions_enforced SET last_seen_at = now() WHERE session_id = :id;
