-- Scaling out by organization on Citus: mfa.distribute() (see the README, "Scaling out").

-- Distributes every per-organization table by organization_id, colocated with
-- mfa.organizations (a tenant's rows, and every statement about them, on one node); makes the
-- project-wide allowlist and number blocks reference tables (on every node); delegates each
-- per-organization function by its organization_id argument, so that a call runs on the node
-- that holds the tenant, where its attempts are counted. Refuses to start unless every node
-- encrypts with the same configured master key and has the same limits and lifetimes (the mfa.*
-- settings a delegated call reads), and no secret is left under a per-database key.
-- Idempotent: what is done already is reported and left as it is.
CREATE FUNCTION mfa.distribute()
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
