-- mfa 0.3.0 → 0.4.0
--  * The guard of the application's sessions tables (session_table_guard / session_table_unguard,
--    the session_gate triggers, the mfa_session_guard event trigger): the gate on every INSERT and
--    UPDATE path, and against the DDL that would switch it off.
--  * Step-up: step_up_start, tokens without a primary factor (primary_factor becomes nullable).
--  * Assurance for RLS: session_aal, last_mfa_at.
--  * Sends to a block of 10,000 numbers are serialized by a row lock of mfa.sms_number_blocks
--    instead of an advisory lock whose key any role could compute and hold.
--  * recovery_codes_rotate takes the intermediate session token that must carry a proven second
--    factor (minting codes without one was a way around MFA).
--  Tables created by hand with enforce_session_policy keep working as in 0.3.0; session_table_guard
--  replaces such a trigger when it guards the table.
\echo Use "ALTER EXTENSION mfa UPDATE TO '0.4.0'" to load this file. \quit

ALTER TABLE mfa.intermediate_sessions ALTER COLUMN primary_factor DROP NOT NULL;
CREATE TABLE mfa.sms_number_blocks (
    number_block text NOT NULL,
    PRIMARY KEY (number_block),
    CONSTRAINT number_block_shape CHECK (number_block ~ '^\+[0-9]{1,14}$')
);
COMMENT ON TABLE mfa.sms_number_blocks IS
    'mfa: one row per block of 10,000 phone numbers (an E.164 number but its last four digits) that codes were sent to; a send locks its block''s row, so the send limits count every earlier send. Only the extension can take these locks.';

REVOKE ALL ON mfa.sms_number_blocks FROM PUBLIC;
COMMENT ON TABLE mfa.intermediate_sessions IS
    'mfa: logins in progress: the SHA-256 of each intermediate session token and the factors proven with it; consumed by the session gate. A step-up token (step_up_start) has no primary_factor and can only raise an existing session''s assurance.';

CREATE FUNCTION mfa.session_gate()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'session_gate_wrapper';

CREATE FUNCTION mfa.step_up_start(
	"organization_id" TEXT, /* Option < & str > */
	"member_id" TEXT, /* Option < & str > */
	"locale" TEXT DEFAULT 'en' /* Option < & str > */
) RETURNS jsonb /* Jsonb */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'step_up_start_wrapper';

DROP FUNCTION mfa.recovery_codes_rotate(text, text);
CREATE FUNCTION mfa.recovery_codes_rotate(
	"organization_id" TEXT, /* Option < & str > */
	"member_id" TEXT, /* Option < & str > */
	"intermediate_session_token" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS jsonb /* Jsonb */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'recovery_codes_rotate_wrapper';

GRANT EXECUTE ON FUNCTION mfa.recovery_codes_rotate(text, text, text) TO mfa_admin, mfa_app;
-- sql/session_guard.sql as of 0.4.0
-- mfa: the guard of the application's sessions tables (0.4.0).
--
-- session_table_guard installs four row triggers that all call mfa.session_gate():
--   mfa_session_gate_insert         BEFORE INSERT: the policy decision, the token consumed, the
--                                   factors column written by the gate (never by the statement)
--   mfa_session_gate_update         BEFORE UPDATE OF the guarded columns: identity and factors are
--                                   immutable; a new token in the token column is a step-up
--   mfa_session_gate_verify_insert  AFTER INSERT, and
--   mfa_session_gate_verify_update  AFTER UPDATE when a guarded column changed: the final row must
--                                   be exactly what a BEFORE trigger decided, so a trigger that runs
--                                   later and rewrites the row is caught
-- and an event trigger refuses, to everyone but a superuser, the DDL that would switch the guard
-- off (disabling, replacing, dropping or renaming its triggers, renaming, retyping or dropping a
-- guarded column, renaming, moving or dropping the table, inheritance children, partitions that
-- arrive with rows). The only way off is session_table_unguard.

CREATE TABLE mfa.guarded_session_tables (
    session_table       regclass    NOT NULL,
    table_name          text        NOT NULL,
    organization_column name        NOT NULL,
    member_column       name        NOT NULL,
    token_column        name        NOT NULL,
    factors_column      name        NOT NULL,
    trigger_definitions text[]      NOT NULL,
    guarded_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    guarded_by          name        NOT NULL DEFAULT session_user,
    PRIMARY KEY (session_table)
);
COMMENT ON TABLE mfa.guarded_session_tables IS
    'mfa: the application''s sessions tables that session_table_guard protects: their columns, the qualified name they must keep and the definitions their triggers must keep.';
REVOKE ALL ON mfa.guarded_session_tables FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('mfa.guarded_session_tables', '');

-- What is wrong with the guard of one table, or NULL when it is whole. Used by the event trigger
-- after every DDL command and by session_table_guard to stay idempotent.
CREATE FUNCTION mfa.session_table_guard_check(session_table regclass) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g mfa.guarded_session_tables;
    problem text;
BEGIN
    SELECT * INTO g FROM mfa.guarded_session_tables t WHERE t.session_table = $1;
    IF NOT FOUND THEN
        RETURN pg_catalog.format('%s is not guarded', $1);
    END IF;
    -- The table keeps its name, schema and kind: a renamed table would leave its old name free
    -- for an unguarded look-alike, and a table turned into a view reads from elsewhere.
    IF NOT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.oid = g.session_table
                      AND pg_catalog.format('%I.%I', n.nspname, c.relname) = g.table_name
                      AND c.relkind IN ('r', 'p')) THEN
        RETURN pg_catalog.format('the guarded table %s may not be dropped, renamed, moved or turned into a view', g.table_name);
    END IF;
    SELECT pg_catalog.format('column %I of %s may not be dropped, renamed or retyped', col, g.table_name) INTO problem
      FROM unnest(ARRAY[g.organization_column, g.member_column, g.token_column, g.factors_column],
                  ARRAY['text', 'text', 'text', 'jsonb']) AS c(col, kind)
     WHERE NOT EXISTS (SELECT FROM pg_attribute a
                        WHERE a.attrelid = g.session_table AND a.attname = c.col AND NOT a.attisdropped
                          AND a.attgenerated = ''
                          AND CASE c.kind WHEN 'jsonb' THEN a.atttypid = 'jsonb'::regtype
                                          ELSE a.atttypid IN ('text'::regtype, 'varchar'::regtype) END)
     LIMIT 1;
    IF problem IS NOT NULL THEN
        RETURN problem;
    END IF;
    -- Its four triggers, as session_table_guard defined them, enabled for ordinary sessions. A
    -- trigger row changed in this transaction (renamed, replaced, re-enabled) is compared with its
    -- recorded definition; pg_get_triggerdef locks the table, which this transaction then holds
    -- already, so the check never waits on another session's DDL.
    SELECT pg_catalog.format('trigger %I on %s may not be dropped, replaced, renamed or disabled', def.name, g.table_name)
      INTO problem
      FROM unnest(g.trigger_definitions) AS d(definition),
           LATERAL (SELECT substring(d.definition FROM '^CREATE TRIGGER (\S+) ') AS name) def
     WHERE NOT EXISTS (SELECT FROM pg_trigger t
                        WHERE t.tgrelid = g.session_table AND t.tgname = def.name AND t.tgenabled = 'O'
                          AND t.tgfoid = 'mfa.session_gate()'::regprocedure
                          AND CASE WHEN pg_catalog.pg_xact_status(mfa._full_xid(t.xmin)) = 'in progress'
                                   THEN pg_catalog.pg_get_triggerdef(t.oid) = d.definition
                                   ELSE true END)
     LIMIT 1;
    IF problem IS NOT NULL THEN
        RETURN problem;
    END IF;
    -- No inheritance child: rows in a child table are read through the parent, past the gate.
    SELECT pg_catalog.format('%s may not inherit from the guarded table %s', i.inhrelid::regclass, g.table_name)
      INTO problem
      FROM pg_inherits i JOIN pg_class parent ON parent.oid = i.inhparent
     WHERE i.inhparent = g.session_table AND parent.relkind = 'r'
     LIMIT 1;
    IF problem IS NOT NULL THEN
        RETURN problem;
    END IF;
    -- Every partition (at any depth) is a table that carries the cloned triggers, enabled. The tree
    -- is walked in pg_inherits, not with pg_partition_tree, which would lock every partition: this
    -- check runs after every DDL command and must not wait on other sessions' tables.
    WITH RECURSIVE tree AS (
        SELECT i.inhrelid AS relid, i.xmin AS attached_by, ARRAY[i.inhrelid] AS path
          FROM pg_inherits i WHERE i.inhparent = g.session_table
        UNION ALL
        SELECT i.inhrelid, i.xmin, tree.path || i.inhrelid
          FROM pg_inherits i JOIN tree ON i.inhparent = tree.relid
    ), nodes AS (
        SELECT tree.*, c.relkind FROM tree JOIN pg_class c ON c.oid = tree.relid
    )
    SELECT CASE
             WHEN n.relkind NOT IN ('r', 'p')
               OR (SELECT count(*) FROM pg_trigger t
                    WHERE t.tgrelid = n.relid AND t.tgparentid <> 0 AND t.tgenabled = 'O'
                      AND t.tgname IN ('mfa_session_gate_insert', 'mfa_session_gate_update',
                                       'mfa_session_gate_verify_insert', 'mfa_session_gate_verify_update')) <> 4
             THEN pg_catalog.format('partition %s of the guarded table %s must be a table carrying the guard''s triggers, enabled',
                                    n.relid::regclass, g.table_name)
             -- A partition attached in this transaction arrives empty: rows already in it never met
             -- the gate. (Other transactions' uncommitted pg_inherits rows are invisible here, so an
             -- in-progress xmin is this transaction's, which holds the locks of those tables; CASE
             -- keeps pg_relation_size, which locks, off every other table.)
             WHEN pg_catalog.pg_xact_status(mfa._full_xid(n.attached_by)) = 'in progress'
              AND EXISTS (SELECT FROM nodes leaf
                           WHERE CASE WHEN leaf.relkind = 'r' AND n.relid = ANY (leaf.path)
                                      THEN pg_catalog.pg_relation_size(leaf.relid) > 0 ELSE false END)
             THEN pg_catalog.format('partition %s arrives with rows that never passed the gate of %s',
                                    n.relid::regclass, g.table_name)
           END INTO problem
      FROM nodes n
     ORDER BY 1 NULLS LAST
     LIMIT 1;
    RETURN problem;
END
$$;

-- (internal) The full transaction id (xid8) of the 32-bit id of a visible row, for pg_xact_status: every
-- such id is older than the snapshot's xmax, so it is in xmax's epoch or the one before.
CREATE FUNCTION mfa._full_xid(xid) RETURNS xid8
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (CASE WHEN low >= (next & 4294967295) THEN greatest(next - 4294967296, 0) ELSE next END
            & ~4294967295::bigint | low)::text::xid8
      FROM (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next, $1::text::bigint AS low) x
$$;

CREATE FUNCTION mfa.session_table_guard(
    session_table regclass,
    organization_column name DEFAULT 'organization_id',
    member_column name DEFAULT 'member_id',
    token_column name DEFAULT 'intermediate_session_token',
    factors_column name DEFAULT 'authentication_factors'
) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rel record;
    col record;
    old_trigger record;
    columns name[] := ARRAY[organization_column, member_column, token_column, factors_column];
    args text;
    definitions text[];
    replaced text[] := '{}';
BEGIN
    IF session_table IS NULL OR organization_column IS NULL OR member_column IS NULL
       OR token_column IS NULL OR factors_column IS NULL THEN
        RAISE EXCEPTION 'invalid_argument: session_table_guard needs a table and four column names'
            USING ERRCODE = '22023';
    END IF;
    SELECT c.oid, c.relkind, c.relpersistence, n.nspname, c.relname,
           pg_catalog.format('%I.%I', n.nspname, c.relname) AS qualified
      INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = session_table;
    IF rel.relkind NOT IN ('r', 'p') OR rel.relpersistence = 't'
       OR rel.nspname IN ('mfa', 'pg_catalog', 'information_schema') OR rel.nspname LIKE 'pg\_toast%' THEN
        RAISE EXCEPTION 'invalid_argument: % is not an application table that can hold sessions', session_table
            USING ERRCODE = '22023', HINT = 'Guard a permanent table or partitioned table of the application''s own schema.';
    END IF;
    IF (SELECT count(DISTINCT c) FROM unnest(columns) c) < 4 THEN
        RAISE EXCEPTION 'invalid_argument: the organization, member, token and factors columns must be four different columns'
            USING ERRCODE = '22023';
    END IF;
    FOR col IN SELECT c.name, c.kind, a.atttypid, a.attgenerated
                 FROM unnest(columns, ARRAY['text', 'text', 'text', 'jsonb']) AS c(name, kind)
                 LEFT JOIN pg_attribute a ON a.attrelid = session_table AND a.attname = c.name
                                         AND a.attnum > 0 AND NOT a.attisdropped LOOP
        IF col.atttypid IS NULL THEN
            RAISE EXCEPTION 'invalid_argument: % has no column %', session_table, quote_ident(col.name)
                USING ERRCODE = '22023';
        ELSIF col.kind = 'jsonb' AND col.atttypid <> 'jsonb'::regtype
           OR col.kind = 'text' AND col.atttypid NOT IN ('text'::regtype, 'varchar'::regtype) THEN
            RAISE EXCEPTION 'invalid_argument: column % of % must be of type %', quote_ident(col.name), session_table,
                  CASE col.kind WHEN 'jsonb' THEN 'jsonb' ELSE 'text or varchar' END
                USING ERRCODE = '22023';
        ELSIF col.attgenerated <> '' THEN
            RAISE EXCEPTION 'invalid_argument: column % of % is generated; the gate must see what is stored',
                  quote_ident(col.name), session_table
                USING ERRCODE = '22023';
        END IF;
    END LOOP;

    -- Already guarded as asked, and whole: nothing to do.
    IF EXISTS (SELECT FROM mfa.guarded_session_tables g
                WHERE g.session_table = $1 AND g.organization_column = $2 AND g.member_column = $3
                  AND g.token_column = $4 AND g.factors_column = $5)
       AND mfa.session_table_guard_check(session_table) IS NULL THEN
        RETURN;
    END IF;

    -- Replace what guarded the table before: an earlier guard's triggers, and 0.3.0's hand-made
    -- enforce_session_policy trigger (which would consume the token a second time).
    FOR old_trigger IN SELECT t.tgname, t.tgfoid = 'mfa.enforce_session_policy()'::regprocedure AS hand_made
                         FROM pg_trigger t
                        WHERE t.tgrelid = session_table AND NOT t.tgisinternal AND t.tgparentid = 0
                          AND t.tgfoid IN ('mfa.session_gate()'::regprocedure, 'mfa.enforce_session_policy()'::regprocedure) LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', old_trigger.tgname, rel.qualified);
        IF old_trigger.hand_made THEN
            replaced := replaced || old_trigger.tgname::text;
            RAISE NOTICE 'mfa: trigger % on % (enforce_session_policy) is replaced by the guard', old_trigger.tgname, rel.qualified;
        END IF;
    END LOOP;

    args := pg_catalog.format('%L, %L, %L, %L', organization_column, member_column, token_column, factors_column);
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER mfa_session_gate_insert BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION mfa.session_gate(%s)',
        rel.qualified, args);
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER mfa_session_gate_update BEFORE UPDATE OF %I, %I, %I, %I ON %s FOR EACH ROW EXECUTE FUNCTION mfa.session_gate(%s)',
        organization_column, member_column, token_column, factors_column, rel.qualified, args);
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER mfa_session_gate_verify_insert AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION mfa.session_gate(%s)',
        rel.qualified, args);
    -- The WHEN clause keeps UPDATEs that change no guarded column free of any trigger call.
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER mfa_session_gate_verify_update AFTER UPDATE ON %s FOR EACH ROW
         WHEN (OLD.%I IS DISTINCT FROM NEW.%I OR OLD.%I IS DISTINCT FROM NEW.%I
               OR OLD.%I IS DISTINCT FROM NEW.%I OR OLD.%I IS DISTINCT FROM NEW.%I)
         EXECUTE FUNCTION mfa.session_gate(%s)',
        rel.qualified, organization_column, organization_column, member_column, member_column,
        token_column, token_column, factors_column, factors_column, args);

    SELECT array_agg(pg_catalog.pg_get_triggerdef(t.oid) ORDER BY t.tgname) INTO definitions
      FROM pg_trigger t WHERE t.tgrelid = session_table AND t.tgfoid = 'mfa.session_gate()'::regprocedure;
    INSERT INTO mfa.guarded_session_tables AS g (session_table, table_name, organization_column, member_column,
                                                 token_column, factors_column, trigger_definitions)
    VALUES ($1, rel.qualified, $2, $3, $4, $5, definitions)
    ON CONFLICT ON CONSTRAINT guarded_session_tables_pkey DO UPDATE
       SET table_name = EXCLUDED.table_name, organization_column = EXCLUDED.organization_column,
           member_column = EXCLUDED.member_column, token_column = EXCLUDED.token_column,
           factors_column = EXCLUDED.factors_column, trigger_definitions = EXCLUDED.trigger_definitions,
           guarded_at = clock_timestamp(), guarded_by = session_user;
    INSERT INTO mfa.events (organization_id, request_id, event_type, details)
    VALUES ('', gen_random_uuid(), 'session_table.guarded',
            jsonb_build_object('session_table', rel.qualified, 'organization_column', $2, 'member_column', $3,
                               'token_column', $4, 'factors_column', $5, 'replaced_triggers', to_jsonb(replaced)));
END
$$;

CREATE FUNCTION mfa.session_table_unguard(session_table regclass) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g mfa.guarded_session_tables;
    t record;
BEGIN
    DELETE FROM mfa.guarded_session_tables d WHERE d.session_table = $1 RETURNING * INTO g;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid_argument: % is not guarded', $1 USING ERRCODE = '22023';
    END IF;
    FOR t IN SELECT tgname FROM pg_trigger
              WHERE tgrelid = $1 AND tgparentid = 0 AND tgfoid = 'mfa.session_gate()'::regprocedure LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', t.tgname, $1);
    END LOOP;
    INSERT INTO mfa.events (organization_id, request_id, event_type, details)
    VALUES ('', gen_random_uuid(), 'session_table.unguarded', jsonb_build_object('session_table', g.table_name));
END
$$;

-- After every DDL command: a command by anyone but a superuser that leaves a guard broken is
-- refused (42501) and rolled back. Superusers are trusted (they can also switch event triggers
-- off); a guarded table a superuser dropped leaves the registry.
CREATE FUNCTION mfa._session_guard_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g record;
    problem text;
BEGIN
    -- is_superuser follows SET ROLE and SET SESSION AUTHORIZATION, not this function's owner.
    IF current_setting('is_superuser')::boolean THEN
        FOR g IN DELETE FROM mfa.guarded_session_tables d
                  WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = d.session_table)
                 RETURNING d.table_name LOOP
            INSERT INTO mfa.events (organization_id, request_id, event_type, details)
            VALUES ('', gen_random_uuid(), 'session_table.dropped', jsonb_build_object('session_table', g.table_name));
        END LOOP;
        RETURN;
    END IF;
    FOR g IN SELECT session_table, table_name FROM mfa.guarded_session_tables LOOP
        problem := mfa.session_table_guard_check(g.session_table);
        IF problem IS NOT NULL THEN
            -- The error rolls the command back, audit rows with it: the server log keeps the refusal.
            RAISE LOG 'mfa: refused % by role % (session user %): %', tg_tag, current_setting('role'), session_user, problem;
            RAISE EXCEPTION 'insufficient_privilege: % refused: %', tg_tag, problem
                USING ERRCODE = '42501',
                      HINT = 'Only mfa.session_table_unguard (mfa_admin) takes a sessions table''s guard off.';
        END IF;
    END LOOP;
END
$$;

CREATE EVENT TRIGGER mfa_session_guard ON ddl_command_end EXECUTE FUNCTION mfa._session_guard_ddl();

-- Assurance of a session, from the factors column only the gate writes: for RLS policies.
CREATE FUNCTION mfa.last_mfa_at(authentication_factors jsonb) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT max(CASE WHEN f ->> 'last_authenticated_at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d(:\d\d)?|Z)$'
                    THEN (f ->> 'last_authenticated_at')::timestamptz END)
      FROM jsonb_array_elements(CASE jsonb_typeof($1) WHEN 'array' THEN $1 ELSE '[]' END) AS f
     WHERE f ->> 'type' IN ('totp', 'recovery_codes')
        OR (f ->> 'type' = 'otp' AND f ->> 'delivery_method' = 'sms')
$$;

CREATE FUNCTION mfa.session_aal(authentication_factors jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN EXISTS (
               SELECT FROM jsonb_array_elements(CASE jsonb_typeof($1) WHEN 'array' THEN $1 ELSE '[]' END) AS f
                WHERE f ->> 'type' IN ('totp', 'recovery_codes')
                   OR (f ->> 'type' = 'otp' AND f ->> 'delivery_method' = 'sms'))
           THEN 'aal2' ELSE 'aal1' END
$$;

REVOKE ALL ON FUNCTION
    mfa.session_gate(), mfa.step_up_start(text, text, text), mfa.recovery_codes_rotate(text, text, text), mfa.session_table_guard(regclass, name, name, name, name),
    mfa.session_table_unguard(regclass), mfa.session_table_guard_check(regclass), mfa._full_xid(xid),
    mfa._session_guard_ddl(), mfa.session_aal(jsonb), mfa.last_mfa_at(jsonb)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mfa.session_aal(jsonb), mfa.last_mfa_at(jsonb) TO mfa_admin, mfa_app;
GRANT EXECUTE ON FUNCTION
    mfa.session_table_guard(regclass, name, name, name, name),
    mfa.session_table_unguard(regclass),
    mfa.session_table_guard_check(regclass)
TO mfa_admin;
GRANT EXECUTE ON FUNCTION mfa.step_up_start(text, text, text) TO mfa_app;
-- Partitions created by the table's owner clone the guard's triggers: see grants.sql.
GRANT EXECUTE ON FUNCTION mfa.session_gate() TO PUBLIC;
ALTER FUNCTION mfa.session_gate() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION mfa.recovery_codes_rotate(text, text, text) IS
    'mfa: invalidates all recovery codes and returns a new set, shown this once; needs an intermediate session token (a login''s or step_up_start''s) that carries a second factor proven with it.';
COMMENT ON FUNCTION mfa.step_up_start(text, text, text) IS
    'mfa: starts a step-up of an existing session: an intermediate session token without a primary factor (shown once) and the member''s options; prove a factor with it, then write it into a guarded sessions table''s token column to raise that session''s assurance. It can never create a session.';
COMMENT ON FUNCTION mfa.session_gate() IS
    'mfa (internal): the row triggers mfa.session_table_guard installs on a sessions table; arguments: organization, member, token and factors column names.';
COMMENT ON FUNCTION mfa.session_table_guard(regclass, name, name, name, name) IS
    'mfa: guards an application sessions table: the policy gate on INSERT (COPY, upserts and MERGE included), immutable identity and factors on UPDATE with step-up through a new token, and DDL that would switch it off refused to everyone but a superuser. Idempotent.';
COMMENT ON FUNCTION mfa.session_table_unguard(regclass) IS
    'mfa: takes the guard off a sessions table (the only way to); audited.';
COMMENT ON FUNCTION mfa.session_table_guard_check(regclass) IS
    'mfa: what is wrong with a sessions table''s guard (dropped or disabled trigger, renamed column, inheritance child…), or NULL when it is whole.';
COMMENT ON FUNCTION mfa._full_xid(xid) IS
    'mfa (internal): the xid8 of a recent 32-bit transaction id, for pg_xact_status.';
COMMENT ON FUNCTION mfa._session_guard_ddl() IS
    'mfa (internal): event trigger that refuses, to everyone but a superuser, DDL that leaves a sessions table''s guard broken.';
COMMENT ON FUNCTION mfa.session_aal(jsonb) IS
    'mfa: the assurance level of a session from its gate-written factors column: aal2 when it carries a second factor, else aal1.';
COMMENT ON FUNCTION mfa.last_mfa_at(jsonb) IS
    'mfa: when the newest second factor of a session''s gate-written factors column was proven (NULL when none): for RLS policies such as last_mfa_at(f) > now() - interval ''15 minutes''.';
COMMENT ON EVENT TRIGGER mfa_session_guard IS
    'mfa: refuses DDL that would switch a guarded sessions table''s gate off (see mfa.session_table_guard).';
