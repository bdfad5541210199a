-- The CTE that records, of the logins a statement's `given_up` CTE deleted (RETURNING
-- organization_id, member_id, request_ids, factors || proven_factors AS factors, and whether no
-- session consumed it AS abandoned), each one given up as login.abandoned, with its story, under
-- the request id of its start (sessions::with_abandoned_logins puts it in place).
abandoned AS (
    INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
    SELECT organization_id, request_ids[1], 'login.abandoned', member_id,
           mfa._login_story(factors, request_ids)
      FROM given_up
     WHERE abandoned)
