-- A step-up on a guarded sessions table: the token presented in the row's token column, when it is
-- this member's and unexpired (on the clock, not the transaction's start), is consumed (its row
-- deleted; `consumed_at IS NULL` checked again under the row's lock, so a token serves once) and
-- the factors proven with it come back. Its event is step_up_consume.audited.sql, in the same
-- transaction once the session row is written: one router query each on Citus (see
-- session_decide.sql).
--   $1 organization_id   $2 member_id   $3 token_hash   $4 the clock
DELETE FROM mfa.intermediate_sessions
 WHERE organization_id = $1 AND member_id = $2 AND token_hash = $3
   AND expires_at > $4 AND consumed_at IS NULL
RETURNING factors || proven_factors AS factors, request_ids::text[] AS request_ids
