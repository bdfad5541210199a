-- Whether the trigger that fired is one that session_table_guard installed on a guarded table
-- with these columns: the trigger itself, or on a partition the guard's trigger it was cloned
-- from (walked up to the partitioned table's own).
--   $1 the firing trigger's oid   $2 its column arguments (organization, member, token, factors)
WITH RECURSIVE up AS (
    SELECT t.oid, t.tgparentid, t.tgrelid FROM pg_catalog.pg_trigger t WHERE t.oid = $1
    UNION ALL
    SELECT p.oid, p.tgparentid, p.tgrelid FROM pg_catalog.pg_trigger p JOIN up ON p.oid = up.tgparentid)
SELECT EXISTS (
    SELECT FROM up JOIN mfa.guarded_session_tables g ON g.session_table = up.tgrelid
     WHERE up.tgparentid = 0 AND up.oid = ANY (g.trigger_oids)
       AND ARRAY[g.organization_column, g.member_column, g.token_column, g.factors_column]::text[] = $2)
