-- The same UPDATE of last_seen_at in the table without the guard.
\set id random(1, :sessions)
UPDATE bench.sessions_plain SET last_seen_at = now() WHERE session_id = :id;
