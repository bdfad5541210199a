-- The second half of an mfa login: the member's TOTP code with the login's token (started by
-- primary_authenticate before the run), then the session into the guarded table; one transaction.
SELECT organization_id AS org, member_id AS member, secret AS token
  FROM bench.ready WHERE k = (SELECT nextval('bench.ready_cursor')) \gset
BEGIN;
SELECT mfa.totp_authenticate(:org, :member,
         (SELECT code FROM bench.totp_codes WHERE step = floor(extract(epoch FROM now()) / 30)::bigint),
         :token);
INSERT INTO bench.sessions_enforced (organization_id, member_id, intermediate_session_token)
VALUES (:org, :member, :token);
END;
