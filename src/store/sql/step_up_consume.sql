-- A step-up on a guarded sessions table: the token presented in the row's token column, when it is
-- this member's and unexpired (on the clock, not the transaction's start), is consumed (its row
-- deleted) and the factors proven with it come back; the event is written in the same statement.
--   $1 organization_id   $2 member_id   $3 token_hash   $4 request_id   $5 the session table's name
--   $6 the clock
WITH consumed AS (
    DELETE FROM mfa.intermediate_sessions
     WHERE organization_id = $1 AND member_id = $2 AND token_hash = $3
       AND expires_at > $6 AND consumed_at IS NULL
 RETURNING factors || proven_factors AS factors, request_ids),
audited AS (
    INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
    SELECT $1, $4::uuid, 'session.stepped_up', $2,
           jsonb_build_object('session_table', $5::text) || mfa._login_story(factors, request_ids)
      FROM consumed)
SELECT factors FROM consumed
