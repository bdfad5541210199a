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
    trigger_oids        oid[],
    broken_by_superuser text,
    shard_of            regclass,
    PRIMARY KEY (session_table)
);
COMMENT ON TABLE mfa.guarded_session_tables IS
    'mfa: the application''s sessions tables that session_table_guard protects: their columns, the qualified name they must keep and the definitions their triggers must keep.';
COMMENT ON COLUMN mfa.guarded_session_tables.trigger_oids IS
    'mfa: the guard''s four triggers, in name order: mfa.session_gate() runs only for these (and their clones on partitions). NULL while session_table_guard installs them.';
COMMENT ON COLUMN mfa.guarded_session_tables.broken_by_superuser IS
    'mfa: what a superuser''s command left broken in this guard (NULL: whole). Such a guard refuses no other role''s DDL until it is mended.';
COMMENT ON COLUMN mfa.guarded_session_tables.shard_of IS
    'mfa: on a Citus node, the distributed table whose shard this is (NULL: a table session_table_guard guarded). A shard is registered when its copies of the guard''s triggers are created, and leaves when they are all dropped.';
REVOKE ALL ON mfa.guarded_session_tables FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('mfa.guarded_session_tables', '');

-- What is wrong with the guard of one table, or NULL when it is whole. Used by the event trigger
-- after every DDL command and by session_table_guard to stay idempotent. (Citus hides shards
-- from pg_class in a client's session; the guard's functions must see them: a registered shard
-- would look dropped.)
CREATE FUNCTION mfa.session_table_guard_check(session_table regclass) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET citus.override_table_visibility = off AS $$
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
    -- The ids and the token compare bytes: under a nondeterministic collation two organizations
    -- could be equal to a trigger's WHEN clause and different to mfa.
    SELECT pg_catalog.format('column %I of %s may not be dropped, renamed, retyped or given a nondeterministic collation', col, g.table_name) INTO problem
      FROM unnest(ARRAY[g.organization_column, g.member_column, g.token_column, g.factors_column],
                  ARRAY['text', 'text', 'text', 'jsonb']) AS c(col, kind)
     WHERE NOT EXISTS (SELECT FROM pg_attribute a
                        WHERE a.attrelid = g.session_table AND a.attname = c.col AND NOT a.attisdropped
                          AND a.attgenerated = ''
                          AND CASE c.kind WHEN 'jsonb' THEN a.atttypid = 'jsonb'::regtype
                                          ELSE a.atttypid IN ('text'::regtype, 'varchar'::regtype) END
                          AND NOT EXISTS (SELECT FROM pg_collation co
                                           WHERE co.oid = a.attcollation AND NOT co.collisdeterministic))
     LIMIT 1;
    IF problem IS NOT NULL THEN
        RETURN problem;
    END IF;
    -- Every recorded trigger gone while triggers of the guard's names call the gate: they were
    -- made again under new oids (pg_upgrade; a restore whose triggers a superuser's command has
    -- not matched yet). Said as such, with the way out.
    IF g.trigger_oids IS NOT NULL AND pg_catalog.cardinality(g.trigger_oids) > 0
       AND NOT EXISTS (SELECT FROM pg_trigger t WHERE t.oid = ANY (g.trigger_oids))
       AND (SELECT count(*) FROM pg_trigger t
             WHERE t.tgrelid = g.session_table AND t.tgparentid = 0
               AND t.tgfoid = 'mfa.session_gate()'::regprocedure
               AND t.tgname::text IN (SELECT substring(d FROM '^CREATE TRIGGER (\S+) ')
                                        FROM unnest(g.trigger_definitions) d))
           = pg_catalog.cardinality(g.trigger_definitions) THEN
        RETURN pg_catalog.format('the guard''s triggers on %s were made again under new oids (pg_upgrade or a restore): run mfa.session_table_guard(%L) again, or any DDL command of a superuser', g.table_name, g.table_name);
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
                          AND t.tgfoid = 'mfa.session_gate()'::regprocedure AND t.oid = ANY (g.trigger_oids)
                          AND CASE WHEN pg_catalog.pg_xact_status(mfa._full_xid(t.xmin)) = 'in progress'
                                   THEN pg_catalog.pg_get_triggerdef(t.oid) = d.definition
                                   ELSE true END)
     LIMIT 1;
    IF problem IS NOT NULL THEN
        RETURN problem;
    END IF;
    -- No other trigger calls the gate on it (the gate refuses to run for one anyway), and none of
    -- the guard's depends on an extension (dropping the extension would drop the trigger).
    SELECT pg_catalog.format('trigger %I on %s calls the session gate but is not one of the guard''s', t.tgname, g.table_name)
      INTO problem
      FROM pg_trigger t
     WHERE t.tgrelid = g.session_table AND t.tgparentid = 0
       AND t.tgfoid IN ('mfa.session_gate()'::regprocedure, 'mfa.enforce_session_policy()'::regprocedure)
       AND NOT t.oid = ANY (g.trigger_oids)
     LIMIT 1;
    IF problem IS NOT NULL THEN
        RETURN problem;
    END IF;
    SELECT pg_catalog.format('trigger %I on %s may not depend on an extension', t.tgname, g.table_name) INTO problem
      FROM pg_depend d JOIN pg_trigger t ON t.oid = d.objid
     WHERE d.classid = 'pg_trigger'::regclass AND d.deptype = 'x' AND d.objid = ANY (g.trigger_oids)
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

-- (internal) On a Citus node: registers the shards of guarded distributed tables as guarded
-- tables of their own, so that the gate runs for their triggers and the same state check holds
-- for them (a shard is a table of the application's role on its node, within its reach). A
-- shard's copies of the guard's triggers are created by Citus on the shard's node, in the
-- transaction of session_table_guard (or of a shard split), by a superuser: whenever a
-- superuser's command leaves a table <name>_<shard id> carrying the guard's four triggers named
-- with that id, enabled and calling the gate with the same columns, this records them — known
-- by those names, not by Citus's metadata, which the table's owner can edit. A shard is
-- registered whole or not at all (the command fails), and one whose gate triggers are all gone
-- (session_table_unguard) leaves the registry. Does nothing without citus.
CREATE FUNCTION mfa._session_guard_register_shards() RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET citus.override_table_visibility = off AS $$
DECLARE
    shard record;
    problem text;
BEGIN
    -- (The gate function is not there yet while CREATE EXTENSION runs this file.)
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')
       OR pg_catalog.to_regprocedure('mfa.session_gate()') IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM mfa.guarded_session_tables g
     WHERE g.shard_of IS NOT NULL
       AND NOT EXISTS (SELECT FROM pg_trigger t
                        WHERE t.tgrelid = g.session_table AND t.tgparentid = 0
                          AND t.tgfoid = 'mfa.session_gate()'::regprocedure);
    FOR shard IN
        WITH gate AS (
            SELECT t.tgrelid, t.oid, t.tgname, t.tgenabled,
                   (pg_catalog.string_to_array(pg_catalog.encode(t.tgargs, 'escape'), '\000'))[1:4] AS columns
              FROM pg_trigger t
             WHERE t.tgfoid = 'mfa.session_gate()'::regprocedure AND t.tgparentid = 0 AND t.tgnargs = 4),
        named AS (
            SELECT c.oid AS relid, n.nspname, c.relname, substring(c.relname FROM '_(\d{1,18})$') AS shard_id
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND c.oid IN (SELECT tgrelid FROM gate))
        SELECT t.relid, pg_catalog.format('%I.%I', t.nspname, t.relname) AS qualified,
               coalesce((SELECT s.logicalrelid FROM pg_dist_shard s
                          WHERE s.shardid = t.shard_id::bigint
                            AND pg_catalog.shard_name(s.logicalrelid, s.shardid, false)
                                = pg_catalog.format('%I.%I', t.nspname, t.relname)),
                        pg_catalog.to_regclass(pg_catalog.format('%I.%I', t.nspname,
                                               left(t.relname, length(t.relname) - length(t.shard_id) - 1))),
                        t.relid::regclass) AS shard_of,
               min(g.columns) AS columns, array_agg(g.oid ORDER BY g.tgname) AS oids
          FROM named t JOIN gate g ON g.tgrelid = t.relid
         WHERE t.shard_id IS NOT NULL
         GROUP BY t.relid, t.nspname, t.relname, t.shard_id
        HAVING array_agg(g.tgname::text ORDER BY g.tgname)
                   = ARRAY(SELECT name || '_' || t.shard_id
                             FROM unnest(ARRAY['mfa_session_gate_insert', 'mfa_session_gate_update',
                                               'mfa_session_gate_verify_insert', 'mfa_session_gate_verify_update']) name
                            ORDER BY 1)
           AND count(DISTINCT g.columns) = 1 AND bool_and(g.tgenabled = 'O')
    LOOP
        CONTINUE WHEN EXISTS (SELECT FROM mfa.guarded_session_tables r
                               WHERE r.session_table = shard.relid AND r.trigger_oids = shard.oids);
        INSERT INTO mfa.guarded_session_tables AS g (session_table, table_name, organization_column, member_column,
                                                     token_column, factors_column, trigger_definitions, trigger_oids,
                                                     shard_of)
        VALUES (shard.relid, shard.qualified, shard.columns[1], shard.columns[2], shard.columns[3], shard.columns[4],
                ARRAY(SELECT pg_catalog.pg_get_triggerdef(o) FROM unnest(shard.oids) WITH ORDINALITY AS x(o, i) ORDER BY i),
                shard.oids, shard.shard_of)
        ON CONFLICT ON CONSTRAINT guarded_session_tables_pkey DO UPDATE
           SET table_name = EXCLUDED.table_name, organization_column = EXCLUDED.organization_column,
               member_column = EXCLUDED.member_column, token_column = EXCLUDED.token_column,
               factors_column = EXCLUDED.factors_column, trigger_definitions = EXCLUDED.trigger_definitions,
               trigger_oids = EXCLUDED.trigger_oids, shard_of = EXCLUDED.shard_of, broken_by_superuser = NULL,
               guarded_at = clock_timestamp(), guarded_by = session_user
         WHERE g.shard_of IS NOT NULL;
        problem := mfa.session_table_guard_check(shard.relid);
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION 'invalid_argument: shard % of % cannot be guarded as it is: %', shard.qualified,
                  shard.shard_of, problem
                USING ERRCODE = '22023';
        END IF;
    END LOOP;
END
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
    problem text;
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
    IF EXISTS (SELECT FROM mfa.guarded_session_tables g WHERE g.session_table = $1 AND g.shard_of IS NOT NULL) THEN
        RAISE EXCEPTION 'invalid_argument: % is a shard of %: guard the distributed table on the coordinator', session_table,
              (SELECT g.shard_of FROM mfa.guarded_session_tables g WHERE g.session_table = $1)
            USING ERRCODE = '22023';
    END IF;
    IF (SELECT count(DISTINCT c) FROM unnest(columns) c) < 4 THEN
        RAISE EXCEPTION 'invalid_argument: the organization, member, token and factors columns must be four different columns'
            USING ERRCODE = '22023';
    END IF;
    FOR col IN SELECT c.name, c.kind, a.atttypid, a.attgenerated, a.attcollation
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
        ELSIF col.kind = 'text' AND EXISTS (SELECT FROM pg_collation co
                                             WHERE co.oid = col.attcollation AND NOT co.collisdeterministic) THEN
            RAISE EXCEPTION 'invalid_argument: column % of % has a nondeterministic collation; the gate compares ids and tokens byte for byte',
                  quote_ident(col.name), session_table
                USING ERRCODE = '22023', HINT = 'Give the column a deterministic collation (the default, or "C").';
        ELSIF col.attgenerated <> '' THEN
            RAISE EXCEPTION 'invalid_argument: column % of % is generated; the gate must see what is stored',
                  quote_ident(col.name), session_table
                USING ERRCODE = '22023';
        END IF;
    END LOOP;

    -- Already guarded as asked, and whole: nothing to do. (Not so a distributed table: whether
    -- its shards are whole is known on their nodes, which guarding it again asks.)
    IF EXISTS (SELECT FROM mfa.guarded_session_tables g
                WHERE g.session_table = $1 AND g.organization_column = $2 AND g.member_column = $3
                  AND g.token_column = $4 AND g.factors_column = $5)
       AND mfa.session_table_guard_check(session_table) IS NULL THEN
        IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
            RETURN;
        END IF;
        IF NOT EXISTS (SELECT FROM pg_dist_partition p WHERE p.logicalrelid = session_table) THEN
            RETURN;
        END IF;
    END IF;

    -- The registry row first, with no triggers yet: while it says so (in this transaction only),
    -- the event trigger lets this function drop and create the table's gate triggers.
    INSERT INTO mfa.guarded_session_tables AS g (session_table, table_name, organization_column, member_column,
                                                 token_column, factors_column, trigger_definitions)
    VALUES ($1, rel.qualified, $2, $3, $4, $5, '{}')
    ON CONFLICT ON CONSTRAINT guarded_session_tables_pkey DO UPDATE
       SET table_name = EXCLUDED.table_name, organization_column = EXCLUDED.organization_column,
           member_column = EXCLUDED.member_column, token_column = EXCLUDED.token_column,
           factors_column = EXCLUDED.factors_column, trigger_definitions = '{}', trigger_oids = NULL,
           broken_by_superuser = NULL, guarded_at = clock_timestamp(), guarded_by = session_user;

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

    -- On Citus a distributed table's triggers run on its shards, which Citus allows only when
    -- told to (it calls them unsafe: a trigger that queries other shards nests distributed
    -- queries). The gate's statements all name the row's organization: with the table colocated
    -- with mfa.organizations, they reach the shard's own node. Any other distribution is refused.
    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        IF EXISTS (SELECT FROM pg_dist_partition p WHERE p.logicalrelid = session_table
                      AND (p.partmethod <> 'h' OR p.colocationid IS DISTINCT FROM
                           (SELECT o.colocationid FROM pg_dist_partition o
                             WHERE o.logicalrelid = 'mfa.organizations'::regclass)
                           OR column_to_column_name(p.logicalrelid, p.partkey) <> organization_column)) THEN
            RAISE EXCEPTION 'invalid_argument: % is distributed otherwise than mfa''s tables', session_table
                USING ERRCODE = '22023',
                      HINT = 'Distribute it by its organization column, colocated with mfa.organizations: create_distributed_table(table, column, colocate_with => ''mfa.organizations'').';
        END IF;
        PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    END IF;

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

    -- The gate runs only for these triggers, by oid.
    UPDATE mfa.guarded_session_tables g
       SET (trigger_definitions, trigger_oids) =
           (SELECT array_agg(pg_catalog.pg_get_triggerdef(t.oid) ORDER BY t.tgname), array_agg(t.oid ORDER BY t.tgname)
              FROM pg_trigger t
             WHERE t.tgrelid = $1 AND t.tgparentid = 0 AND t.tgfoid = 'mfa.session_gate()'::regprocedure)
     WHERE g.session_table = $1;
    -- Shards on this node (Citus): their copies of the triggers were made with them.
    PERFORM mfa._session_guard_register_shards();
    -- Guarded only whole (an inheritance child made before, say): a guard broken from the start
    -- would refuse nobody's DDL.
    problem := mfa.session_table_guard_check(session_table);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'invalid_argument: % cannot be guarded as it is: %', session_table, problem
            USING ERRCODE = '22023';
    END IF;
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
    DELETE FROM mfa.guarded_session_tables d WHERE d.session_table = $1 AND d.shard_of IS NULL RETURNING * INTO g;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid_argument: % is not guarded', $1 USING ERRCODE = '22023';
    END IF;
    -- On Citus the triggers of a distributed table are dropped on its shards too (as in the guard).
    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    END IF;
    FOR t IN SELECT tgname FROM pg_trigger
              WHERE tgrelid = $1 AND tgparentid = 0 AND tgfoid = 'mfa.session_gate()'::regprocedure LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', t.tgname, $1);
    END LOOP;
    PERFORM mfa._session_guard_register_shards();
    INSERT INTO mfa.events (organization_id, request_id, event_type, details)
    VALUES ('', gen_random_uuid(), 'session_table.unguarded', jsonb_build_object('session_table', g.table_name));
END
$$;

-- After every DDL command: a command by anyone but a superuser that leaves a guard broken is
-- refused (42501) and rolled back, whoever the role setting names (a SECURITY DEFINER function of
-- the table's owner, called under SET ROLE, changes the owner's tables all the same). Superusers
-- are trusted (they can also switch event triggers off): a guard a superuser's command broke
-- refuses nobody's DDL until session_table_guard mends it (or a later superuser command finds it
-- whole), and a guarded table a superuser dropped leaves the registry. A trigger that calls the gate is installed only by session_table_guard.
CREATE FUNCTION mfa._session_guard_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET citus.override_table_visibility = off AS $$
DECLARE
    g record;
    problem text;
BEGIN
    -- is_superuser follows SET ROLE and SET SESSION AUTHORIZATION, not this function's owner.
    IF current_setting('is_superuser')::boolean THEN
        FOR g IN DELETE FROM mfa.guarded_session_tables d
                  WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = d.session_table)
                 RETURNING d.table_name, d.shard_of LOOP
            CONTINUE WHEN g.shard_of IS NOT NULL;
            INSERT INTO mfa.events (organization_id, request_id, event_type, details)
            VALUES ('', gen_random_uuid(), 'session_table.dropped', jsonb_build_object('session_table', g.table_name));
        END LOOP;
        PERFORM mfa._session_guard_register_shards();
        IF NOT EXISTS (SELECT FROM mfa.guarded_session_tables) THEN
            RETURN;
        END IF;
        -- A restore recreates the guard's triggers, as they were defined, under new oids.
        UPDATE mfa.guarded_session_tables d SET trigger_oids = found.oids
          FROM (SELECT r.session_table, array_agg(t.oid ORDER BY t.tgname) AS oids
                  FROM mfa.guarded_session_tables r
                  JOIN pg_trigger t ON t.tgrelid = r.session_table AND t.tgparentid = 0
                                   AND t.tgfoid = 'mfa.session_gate()'::regprocedure
                 WHERE r.trigger_oids IS NOT NULL AND r.shard_of IS NULL
                   AND NOT r.trigger_oids <@ ARRAY(SELECT x.oid FROM pg_trigger x WHERE x.tgrelid = r.session_table)
                   AND pg_catalog.pg_get_triggerdef(t.oid) = ANY (r.trigger_definitions)
                 GROUP BY r.session_table) found
         WHERE d.session_table = found.session_table
           AND pg_catalog.cardinality(found.oids) = pg_catalog.cardinality(d.trigger_definitions);
        UPDATE mfa.guarded_session_tables d SET broken_by_superuser = c.problem
          FROM (SELECT r.session_table, mfa.session_table_guard_check(r.session_table) AS problem
                  FROM mfa.guarded_session_tables r WHERE r.trigger_oids IS NOT NULL) c
         WHERE d.session_table = c.session_table AND d.broken_by_superuser IS DISTINCT FROM c.problem;
        RETURN;
    END IF;
    SELECT pg_catalog.format('trigger %I on %s calls the session gate; only mfa.session_table_guard installs it',
                             t.tgname, t.tgrelid::regclass)
      INTO problem
      FROM pg_trigger t
     WHERE t.tgfoid = 'mfa.session_gate()'::regprocedure AND t.tgparentid = 0
       AND pg_catalog.pg_xact_status(mfa._full_xid(t.xmin)) = 'in progress'
       AND NOT EXISTS (SELECT FROM mfa.guarded_session_tables r
                        WHERE r.session_table = t.tgrelid AND (r.trigger_oids IS NULL OR t.oid = ANY (r.trigger_oids)))
     LIMIT 1;
    IF problem IS NULL THEN
        -- Read-only here: a mark is set and cleared only by a superuser's command (recomputed
        -- from the catalogs) and by session_table_guard. The marks and the catalogs are read in
        -- one statement, one snapshot: a superuser's command committed in between would
        -- otherwise show its breakage without its mark.
        SELECT c.problem INTO problem
          FROM (SELECT mfa.session_table_guard_check(d.session_table) AS problem
                  FROM mfa.guarded_session_tables d
                 WHERE d.trigger_oids IS NOT NULL AND d.broken_by_superuser IS NULL) c
         WHERE c.problem IS NOT NULL
         LIMIT 1;
    END IF;
    IF problem IS NOT NULL THEN
        -- The error rolls the command back, audit rows with it: the server log keeps the refusal.
        RAISE LOG 'mfa: refused % by role % (session user %): %', tg_tag, current_setting('role'), session_user, problem;
        RAISE EXCEPTION 'insufficient_privilege: % refused: %', tg_tag, problem
            USING ERRCODE = '42501',
                  HINT = 'Only mfa.session_table_guard (mfa_admin) installs a sessions table''s gate, and only mfa.session_table_unguard takes it off.';
    END IF;
END
$$;

CREATE EVENT TRIGGER mfa_session_guard ON ddl_command_end EXECUTE FUNCTION mfa._session_guard_ddl();

-- Assurance of a session from its factors column alone: these trust the column (the gate writes
-- it, but a row that got past the triggers would be believed). The three-argument forms
-- (session_assurance.sql) verify each factor's seal and are the ones for RLS policies.
CREATE FUNCTION mfa.last_mfa_at(authentication_factors jsonb) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT max(CASE WHEN f ->> 'last_authenticated_at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d(:\d\d)?|Z)$'
                    THEN (f ->> 'last_authenticated_at')::timestamptz END)
      FROM jsonb_array_elements(CASE jsonb_typeof($1) WHEN 'array' THEN $1 ELSE '[]' END) AS f
     WHERE f ->> 'type' IN ('totp', 'recovery_codes', 'webauthn')
        OR (f ->> 'type' = 'otp' AND f ->> 'delivery_method' = 'sms')
$$;

CREATE FUNCTION mfa.session_aal(authentication_factors jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN EXISTS (
               SELECT FROM jsonb_array_elements(CASE jsonb_typeof($1) WHEN 'array' THEN $1 ELSE '[]' END) AS f
                WHERE f ->> 'type' IN ('totp', 'recovery_codes', 'webauthn', 'remembered_device')
                   OR (f ->> 'type' = 'otp' AND f ->> 'delivery_method' = 'sms'))
           THEN 'aal2' ELSE 'aal1' END
$$;
