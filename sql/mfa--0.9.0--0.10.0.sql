\echo Use "ALTER EXTENSION mfa UPDATE TO '0.10.0'" to load this file. \quit
-- mfa 0.9.0 → 0.10.0: the session gate's decisions cannot be forged.
--  * Sealed assurance: the gate seals each factor it writes to a session (a MAC with the server's
--    key over the organization, the member and the factor). mfa.session_aal and mfa.last_mfa_at
--    with (organization_id, member_id, authentication_factors) count only factors whose seal
--    verifies; mfa.session_verified_factors lists them. The one-argument forms are unchanged and
--    trust the column. Sessions written before 0.10.0 carry no seals: under the new forms they
--    are aal1 (their members sign in again); under the old forms they keep working.
--  * The gate runs only for the guard's own triggers (their oids, kept in
--    mfa.guarded_session_tables.trigger_oids); no other role may install a trigger calling it.
--  * DDL is judged by what it changed, not by the role setting; a guard a superuser broke
--    (broken_by_superuser) refuses nobody until it is mended; the guard's triggers may not depend
--    on an extension; guarded id and token columns need deterministic collations.
--  * An SMS worker binding names its role by oid as well as name (sms_worker_grants.role_oid,
--    filled in here for the roles that exist): a renamed role stays bound and serves nothing
--    until granted again by its new name; a new role of a dropped role's name gets nothing of it.
--  * Citus: each shard of a guarded distributed table is a guarded table of its own on its node
--    (registered when Citus creates its copies of the triggers, shard_of naming the distributed
--    table), held by the same state check; the event triggers of 0.9.0 that judged shards by
--    their triggers' names are gone. session_table_unguard works on a distributed table.
--    A coordinator's attempt ledger writer hands each organization's records to the node holding
--    it (mfa._attempt_ledger_write, which mfa.distribute() delegates there).
--  * Reports for administrators: mfa.members_search (an organization's members by MFA state,
--    keyset pages) and mfa.events_search (its audit trail, newest first), with an index of each
--    member's events. NOTIFY mfa_events at commit for the security-relevant events (a trigger on
--    mfa.events). mfa.events_retention_days: the attempt ledger's writers delete older events.
--  * Passkeys (WebAuthn) as a third method: the project's allowed origins, members'
--    registrations and the challenges handed to browsers; organizations may allow `webauthn`;
--    session_phishing_resistant and session_amr read a session's factors.
--  * A member removes their own factors with a fresh second factor (member_delete_totp,
--    member_delete_mfa_phone_number and webauthn_registration_delete take a token);
--    member_reset_mfa; member_upsert replaces a verified phone only when told to and imports a
--    verified one.
--  * Monitoring: mfa.metrics(per_organization) (mfa_admin, pg_monitor), one row per Prometheus
--    sample: logins started and second-factor attempts by method and outcome (counters in shared
--    memory), the attempt ledger, the SMS outbox and the members locked now; two partial indexes
--    (the outbox's dead messages, the members with a lock) keep it from reading the rest.
--  * One audit event per login that succeeds: the session's (session.allowed, or
--    session.stepped_up) tells the login's story (each factor, when it was
--    proven and the request that proved it: intermediate_sessions.request_ids); a login that
--    ends without a session is recorded as login.abandoned when its token dies. Login tokens
--    name their organization under the server's key, so the index of every organization's
--    tokens (intermediate_sessions_token) is gone.

ALTER TABLE mfa.guarded_session_tables ADD COLUMN trigger_oids oid[], ADD COLUMN broken_by_superuser text,
    ADD COLUMN shard_of regclass;
COMMENT ON COLUMN mfa.guarded_session_tables.trigger_oids IS
    'mfa: the guard''s four triggers, in name order: mfa.session_gate() runs only for these (and their clones on partitions). NULL while session_table_guard installs them.';
COMMENT ON COLUMN mfa.guarded_session_tables.broken_by_superuser IS
    'mfa: what a superuser''s command left broken in this guard (NULL: whole). Such a guard refuses no other role''s DDL until it is mended.';
COMMENT ON COLUMN mfa.guarded_session_tables.shard_of IS
    'mfa: on a Citus node, the distributed table whose shard this is (NULL: a table session_table_guard guarded). A shard is registered when its copies of the guard''s triggers are created, and leaves when they are all dropped.';
ALTER TABLE mfa.sms_worker_grants ADD COLUMN role_oid oid;
COMMENT ON COLUMN mfa.sms_worker_grants.role_oid IS
    'mfa: the bound role itself. A row serves its organization to the role with this oid and name; a role matching either is bound (so a renamed, dropped-and-recreated or restored role serves nothing until sms_worker_grant names it again).';
CREATE INDEX sms_worker_grants_role_oid ON mfa.sms_worker_grants (role_oid);
UPDATE mfa.sms_worker_grants g SET role_oid = r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = g.role_name;

CREATE OR REPLACE FUNCTION mfa.session_table_guard_check(session_table regclass) RETURNS text
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

CREATE OR REPLACE FUNCTION mfa.session_table_guard(
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

CREATE OR REPLACE FUNCTION mfa.session_table_unguard(session_table regclass) RETURNS void
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

CREATE OR REPLACE FUNCTION mfa._session_guard_ddl() RETURNS event_trigger
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

-- The guards of 0.9.0: their four triggers, by name (none found: an empty list, never NULL,
-- which would mean "being guarded"). A guard already broken is marked as a superuser's doing:
-- nobody can tell who broke it, and it must not refuse every other role's DDL.
UPDATE mfa.guarded_session_tables g
   SET trigger_oids = coalesce((SELECT array_agg(t.oid ORDER BY t.tgname) FROM pg_catalog.pg_trigger t
                                 WHERE t.tgrelid = g.session_table AND t.tgparentid = 0
                                   AND t.tgfoid = 'mfa.session_gate()'::regprocedure
                                   AND t.tgname IN ('mfa_session_gate_insert', 'mfa_session_gate_update',
                                                    'mfa_session_gate_verify_insert', 'mfa_session_gate_verify_update')),
                               '{}');
UPDATE mfa.guarded_session_tables g SET broken_by_superuser = mfa.session_table_guard_check(g.session_table);

-- Citus: the shards' guard is the registry's, on each node.
DROP EVENT TRIGGER mfa_session_guard_shards;
DROP EVENT TRIGGER mfa_session_guard_shards_drop;
DROP FUNCTION mfa._session_guard_shards();
REVOKE ALL ON FUNCTION mfa._session_guard_register_shards() FROM PUBLIC;
SELECT mfa._session_guard_register_shards();

CREATE FUNCTION mfa."session_verified_factors"(
	"organization_id" TEXT, /* Option < & str > */
	"member_id" TEXT, /* Option < & str > */
	"authentication_factors" jsonb /* Option < JsonB > */
) RETURNS jsonb /* Jsonb */
STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'session_verified_factors_wrapper';

CREATE FUNCTION mfa.session_aal(organization_id text, member_id text, authentication_factors jsonb) RETURNS text
LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
    SELECT mfa.session_aal(mfa.session_verified_factors($1, $2, $3))
$$;

CREATE FUNCTION mfa.last_mfa_at(organization_id text, member_id text, authentication_factors jsonb) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
    SELECT mfa.last_mfa_at(mfa.session_verified_factors($1, $2, $3))
$$;

REVOKE ALL ON FUNCTION mfa.session_verified_factors(text, text, jsonb), mfa.session_aal(text, text, jsonb),
    mfa.last_mfa_at(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mfa.session_aal(text, text, jsonb), mfa.last_mfa_at(text, text, jsonb),
    mfa.session_verified_factors(text, text, jsonb) TO mfa_admin, mfa_app;
COMMENT ON FUNCTION mfa._session_guard_ddl() IS
    'mfa (internal): event trigger that refuses, to everyone but a superuser, DDL that leaves a sessions table''s guard broken or installs a trigger calling the gate.';
COMMENT ON FUNCTION mfa.session_aal(jsonb) IS
    'mfa: the assurance level of a factors column, trusting it (no seal is checked): aal2 when it carries a second factor or a remembered device, else aal1. Policies use session_aal(organization_id, member_id, factors).';
COMMENT ON FUNCTION mfa.last_mfa_at(jsonb) IS
    'mfa: when the newest second factor of a factors column was proven, trusting it (no seal is checked; NULL when none). Policies use last_mfa_at(organization_id, member_id, factors).';
COMMENT ON FUNCTION mfa.session_aal(text, text, jsonb) IS
    'mfa: the assurance level of a session row from the factors whose gate seal verifies for its organization and member: aal2 when one is a second factor or a remembered device, else aal1. For RLS policies.';
COMMENT ON FUNCTION mfa.last_mfa_at(text, text, jsonb) IS
    'mfa: when the newest sealed second factor of a session row was proven (NULL when none verifies; a remembered device is not one): for RLS policies such as last_mfa_at(organization_id, member_id, authentication_factors) > now() - interval ''15 minutes''.';
COMMENT ON FUNCTION mfa.session_verified_factors(text, text, jsonb) IS
    'mfa: the factors of a session''s factors column whose gate seal verifies for this organization and member (sealed with a known key); the rest is left out.';
COMMENT ON FUNCTION mfa._session_guard_register_shards() IS
    'mfa (internal): on a Citus node, registers the shards carrying copies of a guard''s triggers as guarded tables of their own (so the gate runs for them and the guard''s state check holds), and lets go of the shards whose gate triggers are all dropped.';

-- Passkeys (WebAuthn) as a third method.
ALTER TABLE mfa.organizations DROP CONSTRAINT allowed_mfa_methods_values,
    ADD CONSTRAINT allowed_mfa_methods_values CHECK (allowed_mfa_methods <@ ARRAY['sms_otp', 'totp', 'webauthn']);
ALTER TABLE mfa.members DROP CONSTRAINT default_mfa_method_value,
    ADD COLUMN webauthn_user_handle bytea,
    ADD COLUMN webauthn_registrations integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT default_mfa_method_value CHECK (default_mfa_method IN ('sms_otp', 'totp', 'webauthn')),
    ADD CONSTRAINT webauthn_user_handle_length CHECK (octet_length(webauthn_user_handle) = 32),
    ADD CONSTRAINT webauthn_registrations_not_negative CHECK (webauthn_registrations >= 0);
COMMENT ON COLUMN mfa.members.webauthn_user_handle IS
    'mfa: the member''s WebAuthn user handle (random, made at their first passkey registration): what authenticators store for them, never the member id.';
COMMENT ON COLUMN mfa.members.webauthn_registrations IS
    'mfa: how many passkeys the member has (kept by the statements that add and remove them), so that loading a member reads no other table for it.';

-- Passkeys (WebAuthn): the origins the project's pages are served from, each member's
-- registered credentials, and the challenges handed to browsers.
CREATE TABLE mfa.webauthn_allowed_origins (
    origin   text        NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (origin),
    CONSTRAINT origin_length CHECK (length(origin) BETWEEN 1 AND 512)
);
COMMENT ON TABLE mfa.webauthn_allowed_origins IS
    'mfa: project-wide origins (https://host[:port]; http only for localhost and 127.0.0.1) whose pages may register and use passkeys; a relying-party domain must be the host of one of them or a registrable suffix of it.';

CREATE TABLE mfa.webauthn_registrations (
    organization_id          text        NOT NULL,
    webauthn_registration_id uuid        NOT NULL,
    member_id                text        NOT NULL,
    credential_id            bytea       NOT NULL,
    public_key               bytea       NOT NULL,
    algorithm                integer     NOT NULL,
    sign_count               bigint      NOT NULL DEFAULT 0,
    domain                   text        NOT NULL,
    name                     text,
    user_agent               text,
    authenticator_type       text,
    aaguid                   uuid        NOT NULL,
    attestation_format       text        NOT NULL,
    transports               text[]      NOT NULL DEFAULT '{}',
    user_verified            boolean     NOT NULL,
    backup_eligible          boolean     NOT NULL,
    backed_up                boolean     NOT NULL,
    clone_suspected_at       timestamptz,
    created_at               timestamptz NOT NULL DEFAULT now(),
    last_authenticated_at    timestamptz,
    PRIMARY KEY (organization_id, webauthn_registration_id),
    FOREIGN KEY (organization_id, member_id) REFERENCES mfa.members ON DELETE CASCADE,
    CONSTRAINT credential_id_length CHECK (octet_length(credential_id) BETWEEN 16 AND 1023),
    CONSTRAINT algorithm_value CHECK (algorithm IN (-7, -8, -257)),
    CONSTRAINT sign_count_range CHECK (sign_count BETWEEN 0 AND 4294967295),
    CONSTRAINT name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    CONSTRAINT user_agent_length CHECK (char_length(user_agent) <= 512),
    CONSTRAINT authenticator_type_value CHECK (authenticator_type IN ('platform', 'cross-platform'))
);
COMMENT ON TABLE mfa.webauthn_registrations IS
    'mfa: members'' passkeys: the credential id, its COSE public key and signature counter (WebAuthn §6.1.1: a counter that does not move forward sets clone_suspected_at, and the passkey is refused from then on).';
-- A credential is registered once in the whole project (on Citus: once per organization, see
-- mfa.distribute()).
CREATE UNIQUE INDEX webauthn_registrations_credential ON mfa.webauthn_registrations (credential_id);
CREATE INDEX webauthn_registrations_member ON mfa.webauthn_registrations (organization_id, member_id);

CREATE TABLE mfa.webauthn_challenges (
    organization_id    text        NOT NULL,
    member_id          text        NOT NULL,
    challenge_hash     bytea       NOT NULL,
    ceremony           text        NOT NULL,
    token_hash         bytea,
    domain             text        NOT NULL,
    user_verification  text        NOT NULL,
    authenticator_type text,
    user_agent         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    PRIMARY KEY (organization_id, member_id, challenge_hash),
    FOREIGN KEY (organization_id, member_id) REFERENCES mfa.members ON DELETE CASCADE,
    CONSTRAINT ceremony_value CHECK (ceremony IN ('registration', 'authentication')),
    CONSTRAINT user_verification_value CHECK (user_verification IN ('required', 'preferred', 'discouraged'))
);
COMMENT ON TABLE mfa.webauthn_challenges IS
    'mfa: challenges handed to browsers (SHA-256 only), each bound to its member, ceremony and intermediate session token, single use: the first verification that presents one deletes it.';
REVOKE ALL ON mfa.webauthn_allowed_origins, mfa.webauthn_registrations, mfa.webauthn_challenges FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('mfa.webauthn_allowed_origins', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.webauthn_registrations', '');
SELECT pg_catalog.pg_extension_config_dump('mfa.webauthn_challenges', '');

CREATE FUNCTION mfa."webauthn_allowed_origins_set"(
	"origins" TEXT[] /* :: std :: option :: Option < Vec < Option < String > > > */
) RETURNS TEXT[] /* SqlResult < Vec < String > > */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'webauthn_allowed_origins_set_wrapper';

CREATE FUNCTION mfa."webauthn_allowed_origins_get"() RETURNS TEXT[] /* SqlResult < Vec < String > > */
STRICT STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'webauthn_allowed_origins_get_wrapper';

CREATE FUNCTION mfa."webauthn_register_start"(
	"organization_id" TEXT, /* Option < & str > */
	"member_id" TEXT, /* Option < & str > */
	"domain" TEXT, /* Option < & str > */
	"intermediate_session_token" TEXT DEFAULT NULL, /* Option < & str > */
	"authenticator_type" TEXT DEFAULT NULL, /* Option < & str > */
	"user_agent" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS jsonb /* SqlResult < Jsonb > */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'webauthn_register_start_wrapper';

CREATE FUNCTION mfa."webauthn_register"(
	"organization_id" TEXT, /* Option < & str > */
	"member_id" TEXT, /* Option < & str > */
	"public_key_credential" jsonb, /* Option < JsonB > */
	"intermediate_session_token" TEXT DEFAULT NULL, /* Option < & str > */
	"set_mfa_enrollment" TEXT DEFAULT NULL, /* Option < & str > */
	"set_default_mfa" bool DEFAULT false /* Option < bool > */
) RETURNS jsonb /* SqlResult < Jsonb > */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'webauthn_register_wrapper';

CREATE FUNCTION mfa."webauthn_authenticate_start"(
	"organization_id" TEXT, /* Option < & str > */
	"member_id" TEXT, /* Option < & str > */
	"domain" TEXT, /* Option < & str > */
	"intermediate_session_token" TEXT /* Option < & str > */
) RETURNS jsonb /* SqlResult < Jsonb > */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'webauthn_authenticate_start_wrapper';

CREATE FUNCTION mfa."webauthn_authenticate"(
	"organization_id" TEXT, /* Option < & str > */
	"member_id" TEXT, /* Option < & str > */
	"public_key_credential" jsonb, /* Option < JsonB > */
	"intermediate_session_token" TEXT, /* Option < & str > */
	"set_mfa_enrollment" TEXT DEFAULT NULL, /* Option < & str > */
	"set_default_mfa" bool DEFAULT false /* Option < bool > */
) RETURNS jsonb /* SqlResult < Jsonb > */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'webauthn_authenticate_wrapper';

CREATE FUNCTION mfa."webauthn_registrations_get"(
	"organization_id" TEXT, /* Option < & str > */
	"member_id" TEXT /* Option < & str > */
) RETURNS jsonb /* SqlResult < Jsonb > */
STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'webauthn_registrations_get_wrapper';

CREATE FUNCTION mfa."webauthn_registration_update"(
	"organization_id" TEXT, /* Option < & str > */
	"member_id" TEXT, /* Option < & str > */
	"webauthn_registration_id" TEXT, /* Option < & str > */
	"name" TEXT /* Option < & str > */
) RETURNS jsonb /* SqlResult < Jsonb > */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'webauthn_registration_update_wrapper';

CREATE FUNCTION mfa."webauthn_registration_delete"(
	"organization_id" TEXT, /* Option < & str > */
	"member_id" TEXT, /* Option < & str > */
	"webauthn_registration_id" TEXT, /* Option < & str > */
	"intermediate_session_token" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS jsonb /* SqlResult < Jsonb > */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'webauthn_registration_delete_wrapper';

CREATE FUNCTION mfa."session_phishing_resistant"(
	"authentication_factors" jsonb /* Option < JsonB > */
) RETURNS bool /* bool */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'session_phishing_resistant_wrapper';

CREATE FUNCTION mfa."session_amr"(
	"authentication_factors" jsonb /* Option < JsonB > */
) RETURNS TEXT[] /* Vec < String > */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'session_amr_wrapper';

CREATE OR REPLACE FUNCTION mfa.last_mfa_at(authentication_factors jsonb) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT max(CASE WHEN f ->> 'last_authenticated_at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d(:\d\d)?|Z)$'
                    THEN (f ->> 'last_authenticated_at')::timestamptz END)
      FROM jsonb_array_elements(CASE jsonb_typeof($1) WHEN 'array' THEN $1 ELSE '[]' END) AS f
     WHERE f ->> 'type' IN ('totp', 'recovery_codes', 'webauthn')
        OR (f ->> 'type' = 'otp' AND f ->> 'delivery_method' = 'sms')
$$;

CREATE OR REPLACE FUNCTION mfa.session_aal(authentication_factors jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN EXISTS (
               SELECT FROM jsonb_array_elements(CASE jsonb_typeof($1) WHEN 'array' THEN $1 ELSE '[]' END) AS f
                WHERE f ->> 'type' IN ('totp', 'recovery_codes', 'webauthn', 'remembered_device')
                   OR (f ->> 'type' = 'otp' AND f ->> 'delivery_method' = 'sms'))
           THEN 'aal2' ELSE 'aal1' END
$$;

-- Phishing resistance and RFC 8176 method references of a session row, from its sealed factors:
--   USING (mfa.session_phishing_resistant(organization_id, member_id, authentication_factors))
CREATE FUNCTION mfa.session_phishing_resistant(organization_id text, member_id text, authentication_factors jsonb) RETURNS boolean
LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
    SELECT mfa.session_phishing_resistant(mfa.session_verified_factors($1, $2, $3))
$$;

CREATE FUNCTION mfa.session_amr(organization_id text, member_id text, authentication_factors jsonb) RETURNS text[]
LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
    SELECT mfa.session_amr(mfa.session_verified_factors($1, $2, $3))
$$;

-- Citus: the passkey tables are distributed, the origins a reference table, the ceremonies delegated;
-- the nodes' limits and lifetimes (mfa.* settings) must agree.
CREATE OR REPLACE FUNCTION mfa.distribute()
RETURNS TABLE (object text, distribution text, done_now boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- In the order of their foreign keys: a table comes after those it references.
    per_organization CONSTANT text[] := ARRAY[
        'mfa.organizations', 'mfa.members', 'mfa.member_lockouts', 'mfa.totp_registrations',
        'mfa.recovery_codes', 'mfa.sms_codes', 'mfa.sms_outbox', 'mfa.sms_worker_grants',
        'mfa.intermediate_sessions', 'mfa.remembered_devices',
        'mfa.remembered_device_retired_tokens', 'mfa.events', 'mfa.webauthn_registrations',
        'mfa.webauthn_challenges'];
    project_wide CONSTANT text[] := ARRAY['mfa.country_code_allowlist', 'mfa.sms_number_blocks',
                                          'mfa.webauthn_allowed_origins'];
    delegated CONSTANT text[] := ARRAY[
        'mfa.organization_get(text)', 'mfa.organization_upsert(text,text,text,text[],integer)',
        'mfa.organization_delete(text)',
        'mfa.member_get(text,text)', 'mfa.member_upsert(text,text,text,boolean,text,boolean,boolean,boolean)',
        'mfa.member_delete(text,text)', 'mfa.member_delete_mfa_phone_number(text,text,text)',
        'mfa.member_delete_totp(text,text,text)', 'mfa.member_unlock(text,text)',
        'mfa.member_reset_mfa(text,text)', 'mfa.members_import(text,jsonb)',
        'mfa.primary_authenticate(text,text,text,text,text,text)',
        'mfa.step_up_start(text,text,text)', 'mfa.check_session_policy(text,text,text)',
        'mfa.totp_create(text,text,integer,text)', 'mfa.totp_migrate(text,text,text,text[])',
        'mfa.totp_authenticate(text,text,text,text,text,boolean)',
        'mfa.otp_sms_send(text,text,text,text,text)',
        'mfa.otp_sms_authenticate(text,text,text,text,text,boolean)',
        'mfa.recovery_codes_get(text,text)', 'mfa.recovery_codes_recover(text,text,text,text)',
        'mfa.recovery_codes_rotate(text,text,text)',
        'mfa.remembered_device_create(text,text,text,text,text)',
        'mfa.remembered_device_revoke(text,text,text)', 'mfa.remembered_devices_get(text,text)',
        'mfa.webauthn_register_start(text,text,text,text,text,text)',
        'mfa.webauthn_register(text,text,jsonb,text,text,boolean)',
        'mfa.webauthn_authenticate_start(text,text,text,text)',
        'mfa.webauthn_authenticate(text,text,jsonb,text,text,boolean)',
        'mfa.webauthn_registrations_get(text,text)', 'mfa.webauthn_registration_update(text,text,text,text)',
        'mfa.webauthn_registration_delete(text,text,text,text)',
        'mfa.members_search(text,jsonb,text,integer)', 'mfa.events_search(text,jsonb,text,integer)',
        'mfa._attempt_ledger_write(text,jsonb)'];
    reads_across CONSTANT text[] := ARRAY['mfa.primary_authenticate(text,text,text,text,text,text)',
                                          'mfa.step_up_start(text,text,text)',
                                          'mfa.otp_sms_send(text,text,text,text,text)'];
    name text;
    nodes bigint;
    failed bigint;
    keys bigint;
    unkeyed bigint;
    problem text;
    unsafe_triggers text;
    differing text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'citus_not_installed: mfa.distribute() needs the citus extension in this database'
            USING ERRCODE = '55000',
                  HINT = 'Preload citus (shared_preload_libraries = ''citus,mfa''), CREATE EXTENSION citus and add the workers first (README, Scaling out).';
    END IF;
    IF NOT citus_is_coordinator() THEN
        RAISE EXCEPTION 'not_the_coordinator: mfa.distribute() runs on the coordinator'
            USING ERRCODE = '55000';
    END IF;

    -- One master key for the cluster: each node's encrypting key, from its own key file.
    SELECT count(*), count(*) FILTER (WHERE NOT success), count(DISTINCT result) FILTER (WHERE success),
           count(*) FILTER (WHERE success AND result = '')
      INTO nodes, failed, keys, unkeyed
      FROM run_command_on_all_nodes($q$SELECT coalesce(string_agg(key_id, ','), '')
                                         FROM mfa.encryption_keys() WHERE encrypts AND source = 'server'$q$);
    IF failed > 0 OR unkeyed > 0 OR keys <> 1 THEN
        RAISE EXCEPTION 'cluster_needs_server_key: every node of the cluster must encrypt with the same configured master key (% nodes: % unreachable or without mfa, % without a key file, % different keys)',
                        nodes, failed, unkeyed, keys
            USING ERRCODE = '55000',
                  HINT = 'Set mfa.encryption_key_file (or mfa.encryption_key_command) to the same key on every node and reload; the per-database key is refused on Citus.';
    END IF;
    IF EXISTS (SELECT FROM mfa.encryption_keys() k
                WHERE k.source = 'database'
                  AND k.totp_secrets + k.queued_sms_codes + k.sms_code_hashes + k.recovery_code_hashes > 0) THEN
        RAISE EXCEPTION 'cluster_needs_server_key: secrets are still encrypted with the per-database key'
            USING ERRCODE = '55000',
                  HINT = 'Run SELECT mfa.encryption_key_rotate() until it returns 0, then mfa.distribute() again.';
    END IF;

    -- One set of limits and lifetimes for the cluster: a delegated call reads the mfa.* settings
    -- of the node that runs it (its own backend there), not the caller's. Each node's value as a
    -- new session of this role and database sees it: postgresql.conf, ALTER SYSTEM, ALTER
    -- DATABASE/ROLE … SET (a SET in this session is not the cluster's). The key files' paths and
    -- the attempt ledger's sizes are each node's own.
    SELECT string_agg(format('%s (%s)', s.name, s.nodes), '; ' ORDER BY s.name)
      INTO differing
      FROM (SELECT r.name,
                   string_agg(format('%s on %s:%s', r.value, n.nodename, n.nodeport), ', '
                              ORDER BY n.nodename, n.nodeport) AS nodes
              FROM run_command_on_all_nodes($q$SELECT jsonb_object_agg(name, setting) FROM pg_settings
                                                 WHERE name IN ('mfa.totp_issuer', 'mfa.lock_threshold',
                                                   'mfa.lock_minutes', 'mfa.lock_max_minutes',
                                                   'mfa.member_checks_per_second', 'mfa.sms_code_max_attempts',
                                                   'mfa.totp_skew_steps', 'mfa.sms_code_lifetime_seconds',
                                                   'mfa.intermediate_session_minutes',
                                                   'mfa.sms_min_interval_seconds',
                                                   'mfa.sms_sends_per_number_per_hour',
                                                   'mfa.sms_sends_per_member_per_hour',
                                                   'mfa.sms_sends_per_prefix_per_hour',
                                                   'mfa.outbox_max_attempts', 'mfa.events_retention_days',
                                                   'mfa.sms_outbox_notify')$q$) c
              JOIN pg_dist_node n ON n.nodeid = c.nodeid
             CROSS JOIN jsonb_each_text(c.result::jsonb) r(name, value)
             WHERE c.success
             GROUP BY r.name
            HAVING count(DISTINCT r.value) > 1) s;
    IF differing IS NOT NULL THEN
        RAISE EXCEPTION 'cluster_settings_differ: every node of the cluster must have the same mfa settings: %', differing
            USING ERRCODE = '55000',
                  HINT = 'Set them alike in every node''s postgresql.conf (or with ALTER DATABASE/ROLE … SET on the coordinator, which Citus propagates) and reload.';
    END IF;

    -- mfa.events carries the trigger that sends NOTIFY mfa_events: it runs with each shard, on
    -- the node holding the organization, and reads nothing. Citus distributes a table with
    -- triggers only when told to.
    unsafe_triggers := current_setting('citus.enable_unsafe_triggers');
    PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    FOREACH name IN ARRAY per_organization LOOP
        object := name;
        distribution := 'distributed by organization_id, colocated with mfa.organizations';
        done_now := NOT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = name::regclass);
        IF done_now AND name = 'mfa.webauthn_registrations' THEN
            -- A distributed table's unique indexes lead with its distribution column: a
            -- credential id is unique within its organization, no longer across the project.
            DROP INDEX IF EXISTS mfa.webauthn_registrations_credential;
            CREATE UNIQUE INDEX IF NOT EXISTS webauthn_registrations_organization_credential
                ON mfa.webauthn_registrations (organization_id, credential_id);
        END IF;
        IF done_now THEN
            PERFORM create_distributed_table(name::regclass, 'organization_id',
                                             colocate_with => CASE WHEN name = 'mfa.organizations'
                                                                   THEN 'default' ELSE 'mfa.organizations' END);
        END IF;
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('citus.enable_unsafe_triggers', unsafe_triggers, true);
    FOREACH name IN ARRAY project_wide LOOP
        object := name;
        distribution := 'reference table (on every node)';
        done_now := NOT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = name::regclass);
        IF done_now THEN
            PERFORM create_reference_table(name::regclass);
        END IF;
        RETURN NEXT;
    END LOOP;
    -- The identity columns (event and message ids) draw from a sequence on each node: each
    -- node gets its own range of 2^48 ids (the coordinator, group 0, keeps 1 …), so that ids
    -- made on different nodes never meet (a message id finds its message across shards).
    FOREACH name IN ARRAY ARRAY['mfa.events_event_id_seq', 'mfa.sms_outbox_message_id_seq'] LOOP
        object := name;
        distribution := 'ids in a range of its own on each node';
        SELECT bool_or(result = 't'), count(*) FILTER (WHERE NOT success),
               string_agg(result, '; ') FILTER (WHERE NOT success)
          INTO done_now, failed, problem
          FROM run_command_on_all_nodes(format($q$SELECT mfa._sequence_range_set(%L)$q$, name));
        IF failed > 0 THEN
            RAISE EXCEPTION 'cluster_node_failed: could not give % its range of ids on % nodes: %', name, failed, problem
                USING ERRCODE = '55000';
        END IF;
        RETURN NEXT;
    END LOOP;
    FOREACH name IN ARRAY delegated LOOP
        object := name;
        -- A call that counts attempts is delegated in a transaction block too (force_delegation:
        -- only the organization's node may count them); one that sends an SMS reads every
        -- organization's sends to the number, which a delegated call may not do in a
        -- transaction block: there it runs on the coordinator.
        distribution := CASE WHEN name IN (SELECT unnest(reads_across)) THEN 'delegated by organization_id, but not in a transaction block'
                             ELSE 'delegated by organization_id to the node holding the organization' END;
        done_now := NOT EXISTS (SELECT FROM pg_dist_object
                                 WHERE classid = 'pg_proc'::regclass AND objid = name::regprocedure
                                   AND distribution_argument_index IS NOT NULL
                                   AND force_delegation IS NOT DISTINCT FROM (name <> ALL (reads_across)));
        IF done_now THEN
            PERFORM create_distributed_function(name::regprocedure, 'organization_id',
                                                colocate_with => 'mfa.organizations',
                                                force_delegation => name <> ALL (reads_across));
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION
    mfa.webauthn_allowed_origins_set(text[]), mfa.webauthn_allowed_origins_get(),
    mfa.webauthn_register_start(text, text, text, text, text, text),
    mfa.webauthn_register(text, text, jsonb, text, text, boolean),
    mfa.webauthn_authenticate_start(text, text, text, text),
    mfa.webauthn_authenticate(text, text, jsonb, text, text, boolean),
    mfa.webauthn_registrations_get(text, text), mfa.webauthn_registration_update(text, text, text, text),
    mfa.webauthn_registration_delete(text, text, text, text),
    mfa.session_phishing_resistant(jsonb), mfa.session_amr(jsonb),
    mfa.session_phishing_resistant(text, text, jsonb), mfa.session_amr(text, text, jsonb)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    mfa.session_phishing_resistant(jsonb), mfa.session_amr(jsonb),
    mfa.session_phishing_resistant(text, text, jsonb), mfa.session_amr(text, text, jsonb)
TO mfa_admin, mfa_app;
-- Passkeys (WebAuthn): origins and deletes are mfa_admin's; the ceremonies and the list are the
-- login's.
GRANT EXECUTE ON FUNCTION
    mfa.webauthn_allowed_origins_set(text[]),
    mfa.webauthn_allowed_origins_get(),
    mfa.webauthn_registration_delete(text, text, text, text)
TO mfa_admin;
GRANT EXECUTE ON FUNCTION mfa.webauthn_allowed_origins_get() TO mfa_app;
GRANT EXECUTE ON FUNCTION
    mfa.webauthn_register_start(text, text, text, text, text, text),
    mfa.webauthn_register(text, text, jsonb, text, text, boolean),
    mfa.webauthn_authenticate_start(text, text, text, text),
    mfa.webauthn_authenticate(text, text, jsonb, text, text, boolean)
TO mfa_app;
GRANT EXECUTE ON FUNCTION
    mfa.webauthn_registrations_get(text, text),
    mfa.webauthn_registration_update(text, text, text, text)
TO mfa_admin, mfa_app;
COMMENT ON FUNCTION mfa.webauthn_allowed_origins_set(text[]) IS
    'mfa: replaces the origins whose pages may register and use passkeys (https://host[:port]; http:// only for localhost and 127.0.0.1); returns them normalized and sorted; audited.';
COMMENT ON FUNCTION mfa.webauthn_allowed_origins_get() IS 'mfa: the origins whose pages may register and use passkeys.';
COMMENT ON FUNCTION mfa.webauthn_register_start(text, text, text, text, text, text) IS
    'mfa: PublicKeyCredentialCreationOptionsJSON for navigator.credentials.create (a fresh single-use challenge bound to the member and the token); a member with an active factor needs a token carrying a second factor.';
COMMENT ON FUNCTION mfa.webauthn_register(text, text, jsonb, text, text, boolean) IS
    'mfa: verifies a RegistrationResponseJSON (WebAuthn §7.1: challenge, origin, rpIdHash, flags, algorithm, attestation none or packed) and stores the passkey; with a token it is a second factor of that login. Failures are returned and counted.';
COMMENT ON FUNCTION mfa.webauthn_authenticate_start(text, text, text, text) IS
    'mfa: PublicKeyCredentialRequestOptionsJSON for navigator.credentials.get: the member''s passkeys and a fresh single-use challenge bound to the login''s token.';
COMMENT ON FUNCTION mfa.webauthn_authenticate(text, text, jsonb, text, text, boolean) IS
    'mfa: verifies an AuthenticationResponseJSON (WebAuthn §7.2, signature counter included) from one of the member''s passkeys as the login''s second factor. Failures are returned and counted, as totp_authenticate''s.';
COMMENT ON FUNCTION mfa.webauthn_registrations_get(text, text) IS 'mfa: the member''s passkeys (no key material).';
COMMENT ON FUNCTION mfa.webauthn_registration_update(text, text, text, text) IS 'mfa: names one of the member''s passkeys.';
COMMENT ON FUNCTION mfa.session_phishing_resistant(jsonb) IS
    'mfa: whether the newest second factor of a factors column is a passkey, trusting it (no seal is checked). Policies use session_phishing_resistant(organization_id, member_id, factors).';
COMMENT ON FUNCTION mfa.session_amr(jsonb) IS
    'mfa: RFC 8176 authentication method references (pwd, otp, sms, swk, user, mfa) of a factors column, trusting it (no seal is checked).';
COMMENT ON FUNCTION mfa.session_phishing_resistant(text, text, jsonb) IS
    'mfa: whether the newest sealed second factor of a session row is a passkey (phishing-resistant MFA): for RLS policies.';
COMMENT ON FUNCTION mfa.session_amr(text, text, jsonb) IS
    'mfa: RFC 8176 authentication method references of a session row''s sealed factors, for an OIDC amr claim.';
COMMENT ON FUNCTION mfa.organization_upsert(text, text, text, text[], integer) IS
    'mfa: creates an organization or changes its MFA settings (mfa_policy REQUIRED_FOR_ALL|OPTIONAL, mfa_methods ALL_ALLOWED|RESTRICTED, allowed_mfa_methods ⊆ {sms_otp,totp,webauthn}, remember_device_days 0 (off) to 90; turning it off revokes every remembered device); NULL keeps a value.';

-- Factors a member removes with a fresh second factor; the support desk's reset; phone changes and imports.
DROP FUNCTION mfa.member_delete_totp(text, text);
DROP FUNCTION mfa.member_delete_mfa_phone_number(text, text);
DROP FUNCTION mfa.member_upsert(text, text, text, boolean, text, boolean);
CREATE FUNCTION mfa."member_delete_totp"(
	"organization_id" TEXT, /* Option < & str > */
	"member_id" TEXT, /* Option < & str > */
	"intermediate_session_token" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS jsonb /* SqlResult < Jsonb > */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'member_delete_totp_wrapper';

CREATE FUNCTION mfa."member_delete_mfa_phone_number"(
	"organization_id" TEXT, /* Option < & str > */
	"member_id" TEXT, /* Option < & str > */
	"intermediate_session_token" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS jsonb /* SqlResult < Jsonb > */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'member_delete_mfa_phone_number_wrapper';

CREATE FUNCTION mfa."member_upsert"(
	"organization_id" TEXT, /* Option < & str > */
	"member_id" TEXT, /* Option < & str > */
	"mfa_phone_number" TEXT DEFAULT NULL, /* Option < & str > */
	"mfa_enrolled" bool DEFAULT NULL, /* Option < bool > */
	"default_mfa_method" TEXT DEFAULT NULL, /* Option < & str > */
	"is_breakglass" bool DEFAULT NULL, /* Option < bool > */
	"replace_mfa_phone_number" bool DEFAULT false, /* Option < bool > */
	"mfa_phone_number_verified" bool DEFAULT NULL /* Option < bool > */
) RETURNS jsonb /* SqlResult < Jsonb > */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'member_upsert_wrapper';

CREATE FUNCTION mfa."member_reset_mfa"(
	"organization_id" TEXT, /* Option < & str > */
	"member_id" TEXT /* Option < & str > */
) RETURNS jsonb /* SqlResult < Jsonb > */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'member_reset_mfa_wrapper';

REVOKE ALL ON FUNCTION mfa.member_delete_totp(text, text, text), mfa.member_delete_mfa_phone_number(text, text, text),
    mfa.member_upsert(text, text, text, boolean, text, boolean, boolean, boolean), mfa.member_reset_mfa(text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    mfa.member_upsert(text, text, text, boolean, text, boolean, boolean, boolean),
    mfa.member_reset_mfa(text, text),
    mfa.member_delete_mfa_phone_number(text, text, text),
    mfa.member_delete_totp(text, text, text)
TO mfa_admin;
GRANT EXECUTE ON FUNCTION
    mfa.member_delete_totp(text, text, text),
    mfa.member_delete_mfa_phone_number(text, text, text),
    mfa.webauthn_registration_delete(text, text, text, text)
TO mfa_app;
COMMENT ON FUNCTION mfa.member_upsert(text, text, text, boolean, text, boolean, boolean, boolean) IS
    'mfa: creates a member or changes mfa_phone_number (E.164, unverified until an SMS code is authenticated; a verified number is replaced only with replace_mfa_phone_number, and any new number revokes remembered devices), mfa_enrolled, default_mfa_method, is_breakglass, mfa_phone_number_verified (an import); NULL keeps a value.';
COMMENT ON FUNCTION mfa.member_delete_mfa_phone_number(text, text, text) IS
    'mfa: removes a member''s phone number and its live SMS code, and revokes their remembered devices: mfa_admin''s to do, or mfa_app''s with a token carrying a second factor proven with it; a member cannot remove the last factor their organization requires.';
COMMENT ON FUNCTION mfa.member_delete_totp(text, text, text) IS
    'mfa: removes a member''s authenticator app and its recovery codes (a passkey''s stay): mfa_admin''s to do, or mfa_app''s with a token carrying a second factor proven with it; a member cannot remove the last factor their organization requires.';
COMMENT ON FUNCTION mfa.member_reset_mfa(text, text) IS
    'mfa: the support desk''s "lost my phone": every factor of the member (authenticator app, recovery codes, phone, passkeys), their logins in progress and remembered devices go; mfa_enrolled becomes false; audited.';
COMMENT ON FUNCTION mfa.webauthn_registration_delete(text, text, text, text) IS
    'mfa: removes one of the member''s passkeys and revokes their remembered devices (mfa_admin, or mfa_app with a token carrying a second factor; not the last factor an organization requires); with the last one go webauthn as default method and, without an authenticator app, the recovery codes.';

-- Reports for administrators, the notifications of security-relevant events.
CREATE INDEX events_member ON mfa.events (organization_id, member_id, event_id)
    WHERE member_id IS NOT NULL;
-- Citus refuses a trigger on a distributed table unless told to (see mfa.distribute()).
SELECT pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true)
  FROM pg_catalog.pg_extension WHERE extname = 'citus';
-- NOTIFY mfa_events at commit for the security-relevant events, whoever writes them (a call in
-- its caller's transaction, the attempt ledger's worker in its own): a factor added or removed
-- (details.factor_added / factor_removed), a member locked (details.lock_started), a suspected
-- theft of a remembered device, a session's step-up. The payload names the event, its
-- organization and type and why it was sent, never a member or a detail: any role that can
-- connect may LISTEN.
CREATE FUNCTION mfa._events_notify() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('mfa_events', pg_catalog.json_build_object(
        'event_id', NEW.event_id,
        'organization_id', NEW.organization_id,
        'event_type', NEW.event_type,
        'notice', CASE WHEN NEW.details ? 'lock_started' THEN 'member_locked'
                       WHEN NEW.details ? 'factor_added' THEN 'factor_added'
                       WHEN NEW.details ? 'factor_removed' THEN 'factor_removed'
                       WHEN NEW.event_type = 'remembered_device.theft_suspected' THEN 'theft_suspected'
                       ELSE 'step_up' END)::text);
    RETURN NULL;
END
$$;
-- The WHEN clause keeps every other event free of a trigger call.
CREATE TRIGGER mfa_events_notify AFTER INSERT ON mfa.events FOR EACH ROW
    WHEN (NEW.event_type IN ('remembered_device.theft_suspected', 'session.stepped_up')
          OR NEW.details ?| ARRAY['factor_added', 'factor_removed', 'lock_started'])
    EXECUTE FUNCTION mfa._events_notify();
COMMENT ON TRIGGER mfa_events_notify ON mfa.events IS
    'mfa: NOTIFY mfa_events (JSON payload: event_id, organization_id, event_type, notice) at commit for a factor added or removed, a member locked, a suspected theft of a remembered device, a session step-up.';

CREATE FUNCTION mfa."members_search"(
	"organization_id" TEXT, /* Option < & str > */
	"filter" jsonb DEFAULT '{}', /* Option < JsonbArgument > */
	"cursor" TEXT DEFAULT NULL, /* Option < & str > */
	"page_size" INT DEFAULT 100 /* Option < i32 > */
) RETURNS jsonb /* SqlResult < Jsonb > */
STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'members_search_wrapper';

CREATE FUNCTION mfa."events_search"(
	"organization_id" TEXT, /* Option < & str > */
	"filter" jsonb DEFAULT '{}', /* Option < JsonbArgument > */
	"cursor" TEXT DEFAULT NULL, /* Option < & str > */
	"page_size" INT DEFAULT 100 /* Option < i32 > */
) RETURNS jsonb /* SqlResult < Jsonb > */
STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'events_search_wrapper';

REVOKE ALL ON FUNCTION mfa.members_search(text, jsonb, text, integer), mfa.events_search(text, jsonb, text, integer),
    mfa._events_notify() FROM PUBLIC;
-- Reports: an organization's members by MFA state, its audit trail.
GRANT EXECUTE ON FUNCTION
    mfa.members_search(text, jsonb, text, integer),
    mfa.events_search(text, jsonb, text, integer)
TO mfa_admin;
COMMENT ON FUNCTION mfa.members_search(text, jsonb, text, integer) IS
    'mfa: a page (page_size 1–1000, default 100) of an organization''s member objects in member_id order, those that pass filter (mfa_enrolled, has_totp, has_phone (verified), has_passkey, locked, breakglass, no_factor, last_mfa_before, last_mfa_after); results_metadata holds the total that pass and the next_cursor (NULL on the last page).';
COMMENT ON FUNCTION mfa.events_search(text, jsonb, text, integer) IS
    'mfa: a page (page_size 1–1000, default 100) of an organization''s audit events, newest first, those that pass filter (member_id, event_type: one or an array, after (inclusive), before (exclusive)); results_metadata.next_cursor is NULL on the last page. Events never hold a secret.';
COMMENT ON FUNCTION mfa._events_notify() IS
    'mfa (internal): the trigger of mfa.events that sends NOTIFY mfa_events (event_id, organization_id, event_type, notice) for the security-relevant events.';

-- Migrations: a bulk import of members.
CREATE FUNCTION mfa."members_import"(
	"organization_id" TEXT, /* Option < & str > */
	"members" jsonb /* Option < JsonbArgument > */
) RETURNS jsonb /* SqlResult < Jsonb > */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'members_import_wrapper';
REVOKE ALL ON FUNCTION mfa.members_import(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mfa.members_import(text, jsonb) TO mfa_admin;
COMMENT ON FUNCTION mfa.members_import(text, jsonb) IS
    'mfa: a migration''s bulk import: members (a JSON array of {member_id, mfa_phone_number, mfa_phone_number_verified, mfa_enrolled, default_mfa_method, is_breakglass, totp_secret, recovery_codes}) into one organization, each in a subtransaction of its own; every member is reported (status_code, or error_type and error_message), a failed one leaves nothing behind; new recovery codes are returned where none were given.';
COMMENT ON FUNCTION mfa.totp_migrate(text, text, text, text[]) IS
    'mfa: imports an existing authenticator (base32 secret, active at once) with its recovery codes, or new ones (returned this once) when none are given and the member has none.';

CREATE INDEX sms_outbox_dead ON mfa.sms_outbox (organization_id) WHERE status = 'dead';
CREATE INDEX member_lockouts_locked ON mfa.member_lockouts (lock_expires_at)
    WHERE lock_expires_at IS NOT NULL;

CREATE FUNCTION mfa."metrics"(
	"per_organization" bool DEFAULT false /* Option < bool > */
) RETURNS TABLE (
	"name" TEXT,  /* String */
	"labels" jsonb,  /* Jsonb */
	"value" double precision  /* f64 */
)
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'metrics_wrapper';
REVOKE ALL ON FUNCTION mfa.metrics(boolean) FROM PUBLIC;
-- Monitoring: the administrators, and the roles of monitoring agents (pg_monitor's members).
-- pg_monitor may use the schema for this function: no table, and no other function, is granted to it.
GRANT USAGE ON SCHEMA mfa TO pg_monitor;
GRANT EXECUTE ON FUNCTION mfa.metrics(boolean) TO mfa_admin, pg_monitor;
COMMENT ON FUNCTION mfa.metrics(boolean) IS
    'mfa: one row per Prometheus sample (name, labels, value): logins started and second-factor attempts by method and outcome since this server started (shared memory: all its databases together, reset at restart, per node), the attempt ledger''s fill and queue, the SMS outbox (pending, claimed, dead, the oldest pending message''s age) and the members locked now; with per_organization, the outbox and lock figures of each organization that has any.';

-- One audit event per login; tokens that name their organization.
ALTER TABLE mfa.intermediate_sessions ADD COLUMN request_ids uuid[] NOT NULL DEFAULT '{}';
-- A login in progress at the update: the nil request id for each factor it proved so far (their
-- requests are not known), so that its story stays aligned and names a request when it ends.
UPDATE mfa.intermediate_sessions
   SET request_ids = array_fill('00000000-0000-0000-0000-000000000000'::uuid,
                                ARRAY[jsonb_array_length(factors) + jsonb_array_length(proven_factors)]);
DROP INDEX mfa.intermediate_sessions_token;
COMMENT ON TABLE mfa.intermediate_sessions IS
    'mfa: logins in progress: the SHA-256 of each intermediate session token and the factors proven with it. The session gate consumes a token by deleting its row (the audit trail keeps the login); expired tokens go when the member''s next login starts or at the database''s upkeep (the attempt ledger''s writer), each login that no session consumed recorded then as login.abandoned. A step-up token (step_up_start) has no primary_factor and can only raise an existing session''s assurance.';

-- Citus: a coordinator's attempt ledger writer hands an organization's records to the node that
-- holds it (mfa.distribute() delegates this function there).
CREATE FUNCTION mfa."_attempt_ledger_write"(
	"organization_id" TEXT, /* & str */
	"records" jsonb /* pgrx :: JsonB */
) RETURNS VOID /* crate :: error :: SqlResult < () > */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_attempt_ledger_write_wrapper';
REVOKE ALL ON FUNCTION mfa._attempt_ledger_write(text, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION mfa._attempt_ledger_write(text, jsonb) IS
    'mfa (internal): on Citus, the attempt ledger''s writer on the coordinator hands the records of one organization (failures, resets, audit events) to the node holding it, where they are written in the caller''s transaction. For the writers only: no role is granted it.';
