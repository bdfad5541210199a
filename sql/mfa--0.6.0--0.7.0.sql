\echo Use "ALTER EXTENSION mfa UPDATE TO '0.7.0'" to load this file. \quit
-- mfa 0.6.0 → 0.7.0: a whole login writes less (issue 21).
--  * The session gate consumes an intermediate session token by deleting its row (it used to set
--    consumed_at and keep the row for ever); a member's expired tokens go when their next login
--    starts. The key becomes (organization_id, member_id, token_hash): the member's rows are
--    together for that, and for the cascade when a member goes. The factors proven with a token
--    go to a column of their own at the end of the row (proven_factors), and the tables every
--    login updates keep room on their pages for a HOT update (fillfactor).
--  * mfa.events.actor is text (name took 64 bytes in every row); the request id index is a block
--    range index (request ids are time-ordered), a few bytes per thousand rows instead of ~30 per
--    row. Event details leave out keys whose value is null (absent: not set or unchanged).
--    Changing actor's type rewrites mfa.events: on a large audit trail, run this upgrade at a
--    quiet time.

DELETE FROM mfa.intermediate_sessions WHERE consumed_at IS NOT NULL OR expires_at <= clock_timestamp();
ALTER TABLE mfa.intermediate_sessions DROP COLUMN consumed_at;
ALTER TABLE mfa.intermediate_sessions DROP CONSTRAINT intermediate_sessions_pkey;
ALTER TABLE mfa.intermediate_sessions ADD PRIMARY KEY (organization_id, member_id, token_hash);
COMMENT ON TABLE mfa.intermediate_sessions IS
    'mfa: logins in progress: the SHA-256 of each intermediate session token and the factors proven with it. The session gate consumes a token by deleting its row (the audit trail keeps the login); a member''s expired tokens go when their next login starts. A step-up token (step_up_start) has no primary_factor and can only raise an existing session''s assurance.';

DROP INDEX mfa.events_request;
ALTER TABLE mfa.events ALTER COLUMN actor TYPE text;
-- Request ids are time-ordered (UUID version 7): a block range index finds a request's events
-- for a few bytes per thousand rows, where a B-tree cost each audit row ~30 bytes and a leaf
-- entry in the WAL.
CREATE INDEX events_request ON mfa.events USING brin (request_id) WITH (autosummarize = on);

-- Room on each page for the update that every login makes (the TOTP step spent, the SMS code
-- used, the factor proven with the token), so that it stays a HOT update without new index
-- entries. Pages written before keep theirs until rows move or the table is rewritten.
ALTER TABLE mfa.totp_registrations SET (fillfactor = 90);
ALTER TABLE mfa.sms_codes SET (fillfactor = 90);
ALTER TABLE mfa.intermediate_sessions SET (fillfactor = 80);

-- The factors proven with a token get a column of their own, last in the row: adding one then
-- rewrites only the end of the row, and the update's WAL record carries just that.
ALTER TABLE mfa.intermediate_sessions ADD COLUMN proven_factors jsonb NOT NULL DEFAULT '[]';
COMMENT ON COLUMN mfa.intermediate_sessions.factors IS
    'mfa: the factor the login started with (Stytch JSON; empty for a step-up); proven_factors holds those proven with the token since.';
