\echo Use "ALTER EXTENSION mfa UPDATE TO '0.9.0'" to load this file. \quit
-- mfa 0.8.0 → 0.9.0: scaling out by organization on Citus (issue 20).
--  * mfa.distribute(): on a Citus coordinator, distributes and colocates the per-organization
--    tables, makes the project-wide ones reference tables, gives each node its own range of
--    event and message ids and delegates the per-organization functions (README, Scaling out).
--  * session_table_guard guards a sessions table distributed by its organization column and
--    colocated with mfa.organizations (its triggers then run on the shards); any other
--    distribution is refused; two event triggers keep its shards' gate triggers on, on every node.
--  * mfa.member_lockouts.devices_revoked_before: a lock or a suspected theft revokes the member's
--    remembered devices even where a caller's row lock kept the ledger's worker from deleting
--    them (the worker skips rows a transaction holds).
--  * The 0.9.0 library's statements run on one node as before and on Citus; on Citus the
--    per-database key is refused and an attempt is counted only on the node that holds the
--    organization.

ALTER TABLE mfa.member_lockouts ADD COLUMN devices_revoked_before timestamptz;
COMMENT ON COLUMN mfa.member_lockouts.devices_revoked_before IS
    'mfa: remembered devices created at or before this time (a lock, a suspected theft) are revoked: never honoured nor listed, whatever row locks kept the worker from deleting them.';

CREATE FUNCTION mfa.distribute()
RETURNS TABLE (object text, distribution text, done_now boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- In the order of their foreign keys: a table comes after those it references.
    per_organization CONSTANT text[] := ARRAY[
        'mfa.organizations', 'mfa.members', 'mfa.member_lockouts', 'mfa.totp_registrations',
        'mfa.recovery_codes', 'mfa.sms_codes', 'mfa.sms_outbox', 'mfa.sms_worker_grants',
        'mfa.intermediate_sessions', 'mfa.remembered_devices',
        'mfa.remembered_device_retired_tokens', 'mfa.events'];
    project_wide CONSTANT text[] := ARRAY['mfa.country_code_allowlist', 'mfa.sms_number_blocks'];
    delegated CONSTANT text[] := ARRAY[
        'mfa.organization_get(text)', 'mfa.organization_upsert(text,text,text,text[],integer)',
        'mfa.organization_delete(text)',
        'mfa.member_get(text,text)', 'mfa.member_upsert(text,text,text,boolean,text,boolean)',
        'mfa.member_delete(text,text)', 'mfa.member_delete_mfa_phone_number(text,text)',
        'mfa.member_delete_totp(text,text)', 'mfa.member_unlock(text,text)',
        'mfa.primary_authenticate(text,text,text,text,text,text)',
        'mfa.step_up_start(text,text,text)', 'mfa.check_session_policy(text,text,text)',
        'mfa.totp_create(text,text,integer,text)', 'mfa.totp_migrate(text,text,text,text[])',
        'mfa.totp_authenticate(text,text,text,text,text,boolean)',
        'mfa.otp_sms_send(text,text,text,text,text)',
        'mfa.otp_sms_authenticate(text,text,text,text,text,boolean)',
        'mfa.recovery_codes_get(text,text)', 'mfa.recovery_codes_recover(text,text,text,text)',
        'mfa.recovery_codes_rotate(text,text,text)',
        'mfa.remembered_device_create(text,text,text,text,text)',
        'mfa.remembered_device_revoke(text,text,text)', 'mfa.remembered_devices_get(text,text)'];
    reads_across CONSTANT text[] := ARRAY['mfa.primary_authenticate(text,text,text,text,text,text)',
                                          'mfa.otp_sms_send(text,text,text,text,text)'];
    name text;
    nodes bigint;
    failed bigint;
    keys bigint;
    unkeyed bigint;
    problem text;
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

    FOREACH name IN ARRAY per_organization LOOP
        object := name;
        distribution := 'distributed by organization_id, colocated with mfa.organizations';
        done_now := NOT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = name::regclass);
        IF done_now THEN
            PERFORM create_distributed_table(name::regclass, 'organization_id',
                                             colocate_with => CASE WHEN name = 'mfa.organizations'
                                                                   THEN 'default' ELSE 'mfa.organizations' END);
        END IF;
        RETURN NEXT;
    END LOOP;
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
                                   AND distribution_argument_index IS NOT NULL);
        IF done_now THEN
            PERFORM create_distributed_function(name::regprocedure, 'organization_id',
                                                colocate_with => 'mfa.organizations',
                                                force_delegation => name <> ALL (reads_across));
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- mfa.distribute() on each node: gives sequence `name` this node's range of 2^48 values (by its
-- Citus group), moving it into the range when it is not there yet; false when it already was.
CREATE FUNCTION mfa._sequence_range_set(name text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    low CONSTANT bigint := ((SELECT groupid FROM pg_dist_local_group)::bigint << 48) + 1;
    high CONSTANT bigint := low + (1::bigint << 48) - 2;
    s pg_sequences;
BEGIN
    -- Only mfa's own identity sequences (the name goes into a statement).
    IF name NOT IN ('mfa.events_event_id_seq', 'mfa.sms_outbox_message_id_seq') THEN
        RAISE EXCEPTION 'invalid_argument: % is not an identity sequence of mfa', name USING ERRCODE = '22023';
    END IF;
    SELECT * INTO s FROM pg_sequences WHERE format('%I.%I', schemaname, sequencename) = name;
    IF s.min_value = low AND s.max_value = high THEN
        RETURN false;
    END IF;
    -- This node's own sequence: not a change for Citus to carry to the other nodes.
    PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
    EXECUTE format('ALTER SEQUENCE %s MINVALUE %s MAXVALUE %s START %s RESTART %s', name, low, high,
                   low, greatest(low, coalesce(s.last_value + 1, low)));
    RETURN true;
END
$$;

-- The guard of a distributed sessions table on every node. Its triggers run on the table's
-- shards, and a shard is a table of the application's role on a worker, within its reach
-- (run_command_on_shards from the coordinator, or a connection to the worker): DDL there does
-- not pass the coordinator's guard. This event trigger function refuses, to everyone but a
-- superuser, DDL that leaves a gate trigger of a shard (or of any table) disabled, or gives a
-- table carrying one an inheritance child (after each command), and the drop of a gate trigger
-- (sql_drop). It does nothing where citus is not installed.
CREATE FUNCTION mfa._session_guard_shards() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    problem text;
    invoker text;
BEGIN
    IF current_setting('is_superuser')::boolean
       OR NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        RETURN;
    END IF;
    IF tg_event = 'sql_drop' THEN
        -- The trigger's row is gone by now: its name (session_table_guard's, with Citus's shard
        -- suffix on a shard) tells it.
        SELECT format('trigger %s may not be dropped', d.object_identity) INTO problem
          FROM pg_event_trigger_dropped_objects() d
         WHERE d.object_type = 'trigger' AND d.object_identity LIKE 'mfa\_session\_gate\_%'
         LIMIT 1;
    ELSE
        -- Only the tables this role could have changed (as in mfa._session_guard_ddl).
        invoker := CASE current_setting('role') WHEN 'none' THEN session_user::text ELSE current_setting('role') END;
        SELECT format('trigger %I on %s may not be disabled', t.tgname, t.tgrelid::regclass) INTO problem
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         WHERE t.tgfoid = 'mfa.session_gate()'::regprocedure AND t.tgenabled <> 'O'
           AND (pg_has_role(invoker, c.relowner, 'MEMBER') OR has_table_privilege(invoker, c.oid, 'TRIGGER'))
         LIMIT 1;
        IF problem IS NULL THEN
            SELECT format('%s may not inherit from %s, which carries the session gate', i.inhrelid::regclass,
                          i.inhparent::regclass) INTO problem
              FROM pg_inherits i JOIN pg_class parent ON parent.oid = i.inhparent
              JOIN pg_class child ON child.oid = i.inhrelid
             WHERE parent.relkind = 'r'
               AND (pg_has_role(invoker, child.relowner, 'MEMBER') OR pg_has_role(invoker, parent.relowner, 'MEMBER'))
               AND EXISTS (SELECT FROM pg_trigger t
                            WHERE t.tgrelid = i.inhparent AND t.tgfoid = 'mfa.session_gate()'::regprocedure)
             LIMIT 1;
        END IF;
    END IF;
    IF problem IS NOT NULL THEN
        RAISE LOG 'mfa: refused % by role % (session user %): %', tg_tag, current_setting('role'), session_user, problem;
        RAISE EXCEPTION 'insufficient_privilege: % refused: %', tg_tag, problem
            USING ERRCODE = '42501',
                  HINT = 'Only mfa.session_table_unguard (mfa_admin) takes a sessions table''s guard off.';
    END IF;
END
$$;

CREATE EVENT TRIGGER mfa_session_guard_shards ON ddl_command_end
    EXECUTE FUNCTION mfa._session_guard_shards();
CREATE EVENT TRIGGER mfa_session_guard_shards_drop ON sql_drop
    EXECUTE FUNCTION mfa._session_guard_shards();

-- On Citus, the guard of a distributed sessions table (colocated with mfa.organizations).
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

REVOKE ALL ON FUNCTION mfa.distribute() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mfa.distribute() TO mfa_admin;
COMMENT ON FUNCTION mfa.distribute() IS
    'mfa: on a Citus coordinator, distributes the per-organization tables by organization_id (colocated with mfa.organizations), makes the allowlist and number blocks reference tables and delegates the per-organization functions to the node holding the organization; refuses unless every node encrypts with the same configured key. Idempotent; one row per object.';

COMMENT ON FUNCTION mfa._sequence_range_set(text) IS
    'mfa (internal): run by mfa.distribute() on every node: gives an identity sequence the node''s own range of ids.';

COMMENT ON FUNCTION mfa._session_guard_shards() IS
    'mfa (internal): on a Citus node, refuses to everyone but a superuser DDL that disables or drops a session gate trigger (on a shard of a guarded table, too) or gives a table carrying one an inheritance child.';
COMMENT ON EVENT TRIGGER mfa_session_guard_shards IS
    'mfa: on a Citus node, keeps the session gate of a distributed sessions table''s shards on (see mfa._session_guard_shards).';
COMMENT ON EVENT TRIGGER mfa_session_guard_shards_drop IS
    'mfa: on a Citus node, keeps the session gate triggers of a distributed sessions table''s shards (see mfa._session_guard_shards).';

REVOKE ALL ON FUNCTION mfa._sequence_range_set(text), mfa._session_guard_shards() FROM PUBLIC;
