//! Issue 20: a Citus cluster of a coordinator and two workers on this machine, distributed by
//! `mfa.distribute()`: a TOTP login and an SMS login through a session gate on the application's
//! distributed sessions table, the outbox claimed across organizations and its delivery reported,
//! and the attacks of the application's role. Runs only where the server has the `citus`
//! extension (it is built by hand, outside the repository: docs/citus.md); skipped, saying so,
//! elsewhere.

mod common;

use common::{connect, sql_error, totp_now, Cluster};
use postgres::{Client, NoTls};
use serde_json::Value;
use std::time::{Duration, Instant};

const PORTS: [u16; 3] = [28840, 28841, 28842];
const SECRET: &str = "JBSWY3DPEHPK3PXP";

fn citus_available() -> bool {
    connect()
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'citus')",
            &[],
        )
        .unwrap()
        .get(0)
}

fn key(byte: u8) -> String {
    format!("{}\n", format!("{byte:02x}").repeat(32))
}

/// A server of the cluster with Citus and mfa preloaded, encrypting with `keys`, and its
/// database with the citus extension.
fn node(name: &str, port: u16, keys: &str) -> Cluster {
    let node = Cluster::start_with_key_file(
        name,
        port,
        "shared_preload_libraries = 'citus,mfa'\nmax_prepared_transactions = 20\nmfa.events_retention_days = 30",
        keys,
    );
    let mut admin = Client::connect(&node.url("postgres"), NoTls).unwrap();
    admin.batch_execute("CREATE DATABASE mfa_cluster").unwrap();
    Client::connect(&node.url("mfa_cluster"), NoTls)
        .unwrap()
        .batch_execute("SET client_min_messages = error; CREATE EXTENSION citus")
        .unwrap();
    node
}

fn one(client: &mut Client, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Value {
    client
        .query_one(sql, params)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// The SQLSTATE and message of the error `sql` raises.
fn refusal(client: &mut Client, sql: &str) -> (String, String) {
    let error = client
        .batch_execute(sql)
        .expect_err(&format!("{sql} must be refused"));
    sql_error(&error)
}

/// The application's role: not a superuser, owns its sessions table, calls mfa as mfa_app.
fn app(coordinator: &Cluster) -> Client {
    Client::connect(
        &coordinator
            .url("mfa_cluster")
            .replace("user=postgres", "user=cluster_app"),
        NoTls,
    )
    .unwrap()
}

/// Creates `app.<table>`, a sessions table distributed colocated with mfa.organizations.
fn distributed_sessions(app: &mut Client, table: &str) {
    app.batch_execute(&format!(
        "CREATE TABLE app.{table} (organization_id text NOT NULL, session_id bigint GENERATED ALWAYS AS IDENTITY,
                                   member_id text NOT NULL, token text, factors jsonb,
                                   PRIMARY KEY (organization_id, session_id));
         SELECT create_distributed_table('app.{table}', 'organization_id', colocate_with => 'mfa.organizations');"
    ))
    .unwrap();
}

/// One shard of `app.<table>`: its name, id and the port of its node.
fn a_shard(client: &mut Client, table: &str) -> (String, i64, i32) {
    let row = client
        .query_one(
            &format!(
                "SELECT shard_name, shardid, nodeport FROM citus_shards
                  WHERE table_name = 'app.{table}'::regclass ORDER BY shardid LIMIT 1"
            ),
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// The application's role connected to the node at `port`.
fn app_on_node(port: i32) -> Client {
    Client::connect(
        &format!("host=127.0.0.1 port={port} user=cluster_app dbname=mfa_cluster"),
        NoTls,
    )
    .unwrap()
}

/// Runs `sql` (a `run_command_on_shards` call) and asserts that every shard refused it (42501).
fn refused_on_every_shard(client: &mut Client, sql: &str) {
    let results = client.query(sql, &[]).unwrap();
    assert!(!results.is_empty());
    for row in results {
        let (success, result): (bool, String) = (row.get(0), row.get(1));
        assert!(
            !success && result.contains("insufficient_privilege"),
            "{sql}: {result}"
        );
    }
}

fn login(app: &mut Client, org: &str, member: &str) -> String {
    let started = one(
        app,
        "SELECT mfa.primary_authenticate($1, $2)",
        &[&org, &member],
    );
    started["intermediate_session_token"]
        .as_str()
        .expect("a token")
        .to_string()
}

fn insert_session(app: &mut Client, org: &str, member: &str, token: &str) -> Result<u64, String> {
    app.execute(
        "INSERT INTO app.sessions (organization_id, member_id, token) VALUES ($1, $2, $3)",
        &[&org, &member, &token],
    )
    .map_err(|e| sql_error(&e).1)
}

#[test]
fn a_three_node_cluster_logs_in_sends_delivers_and_keeps_the_gate() {
    if !citus_available() {
        eprintln!(
            "skipped: the server has no citus extension (docs/citus.md says how to build one)"
        );
        return;
    }
    let coordinator = node("citus-coordinator", PORTS[0], &key(0x31));
    let worker = node("citus-worker-1", PORTS[1], &key(0x31));
    // The second worker starts with a key of its own: the cluster is refused until it has the
    // coordinator's.
    let stray = node("citus-worker-2", PORTS[2], &key(0x32));
    // A Citus node without a key of its own: mfa will not make a per-database one there.
    let keyless = Cluster::start(
        "citus-keyless",
        28843,
        "shared_preload_libraries = 'citus,mfa'",
    );
    let mut bare = Client::connect(&keyless.url("postgres"), NoTls).unwrap();
    bare.batch_execute("SET client_min_messages = error; CREATE EXTENSION citus")
        .unwrap();
    let (state, message) = refusal(&mut bare, "CREATE EXTENSION mfa");
    assert_eq!(state, "55000", "{message}");
    assert!(message.starts_with("cluster_needs_server_key"), "{message}");
    drop((bare, keyless));

    let mut admin = Client::connect(&coordinator.url("mfa_cluster"), NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "SET client_min_messages = error;
             SELECT citus_set_coordinator_host('127.0.0.1', {});
             SELECT citus_add_node('127.0.0.1', {});
             SELECT citus_add_node('127.0.0.1', {});
             CREATE EXTENSION mfa;",
            PORTS[0], PORTS[1], PORTS[2]
        ))
        .unwrap();
    let (state, message) = refusal(&mut admin, "SELECT * FROM mfa.distribute()");
    assert_eq!(state, "55000", "{message}");
    assert!(message.contains("same configured master key"), "{message}");
    stray.stop_server();
    stray.write_key_file(&key(0x31));
    stray.start_server();
    // A new session: the old one's connection to the restarted worker is gone.
    let mut admin = Client::connect(&coordinator.url("mfa_cluster"), NoTls).unwrap();

    // A delegated call reads the settings of the node that runs it: a worker whose login lasts
    // longer than the coordinator's is refused, naming the setting and the node; it is
    // distributed once its postgresql.conf agrees again (the later line wins).
    let reload = |port: u16| {
        Client::connect(
            &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
            NoTls,
        )
        .unwrap()
        .batch_execute("SELECT pg_reload_conf(); SELECT pg_sleep(0.5)")
        .unwrap()
    };
    stray.append_settings("mfa.intermediate_session_minutes = 15");
    reload(PORTS[2]);
    let (state, message) = refusal(&mut admin, "SELECT * FROM mfa.distribute()");
    assert_eq!(state, "55000", "{message}");
    assert!(
        message.starts_with("cluster_settings_differ")
            && message.contains(&format!(
                "mfa.intermediate_session_minutes (10 on 127.0.0.1:{}, 10 on 127.0.0.1:{}, 15 on 127.0.0.1:{})",
                PORTS[0], PORTS[1], PORTS[2]
            )),
        "{message}"
    );
    stray.append_settings("mfa.intermediate_session_minutes = 10");
    reload(PORTS[2]);

    // Distributed, and again: the second time nothing is left to do.
    let done: i64 = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE done_now) FROM mfa.distribute()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(done, 54);
    let again: i64 = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE done_now) FROM mfa.distribute()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(again, 0);
    let tenants: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_dist_partition
              WHERE logicalrelid::text LIKE 'mfa.%' AND partmethod = 'h'
                AND column_to_column_name(logicalrelid, partkey) = 'organization_id'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tenants, 14);

    // The application: a non-superuser role that owns its distributed sessions table, guarded.
    admin
        .batch_execute(
            "SET client_min_messages = error;
             CREATE ROLE cluster_app LOGIN IN ROLE mfa_app;
             CREATE ROLE cluster_sms_worker LOGIN IN ROLE mfa_sms_worker;
             CREATE SCHEMA app AUTHORIZATION cluster_app;",
        )
        .unwrap();
    let mut app = app(&coordinator);
    distributed_sessions(&mut app, "sessions");
    admin
        .batch_execute(
            "SELECT mfa.session_table_guard('app.sessions', 'organization_id', 'member_id', 'token', 'factors')",
        )
        .unwrap();

    // Organizations on every node: each login runs where its organization is.
    let orgs: Vec<String> = (0..6).map(|i| format!("cluster-org-{i}")).collect();
    for org in &orgs {
        one(
            &mut admin,
            "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL')",
            &[org],
        );
        one(&mut admin, "SELECT mfa.member_upsert($1, 'ann')", &[org]);
        one(
            &mut admin,
            "SELECT mfa.totp_migrate($1, 'ann', $2)",
            &[org, &SECRET],
        );
        one(
            &mut admin,
            "SELECT mfa.member_upsert($1, 'bob', '+14155550123')",
            &[org],
        );
    }
    // The upkeep of each node's organizations, by its ledger writer (due at the first code checked
    // there): a login nobody came back for, and an event older than the retention.
    let kept = &orgs[0];
    one(&mut admin, "SELECT mfa.member_upsert($1, 'eve')", &[kept]);
    let forgotten = one(&mut app, "SELECT mfa.primary_authenticate($1, 'eve')", &[kept]);
    admin
        .execute(
            "UPDATE mfa.intermediate_sessions SET expires_at = now() - interval '1 second'
              WHERE organization_id = $1 AND member_id = 'eve'",
            &[kept],
        )
        .unwrap();
    admin
        .execute(
            "INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details, occurred_at)
             VALUES ($1, gen_random_uuid(), 'member.updated', 'eve', '{}', now() - interval '40 days')",
            &[kept],
        )
        .unwrap();

    // Passkeys: the origins are on every node, and a ceremony runs where its organization is
    // (its challenge lands in that organization's shard).
    admin
        .batch_execute("SELECT mfa.webauthn_allowed_origins_set(ARRAY['https://app.example.com'])")
        .unwrap();
    for org in &orgs {
        // bob has no active factor yet: he enrolls during his login.
        let token = login(&mut app, org, "bob");
        let options = one(
            &mut app,
            "SELECT mfa.webauthn_register_start($1, 'bob', 'example.com', $2)",
            &[org, &token],
        );
        assert_eq!(
            options["public_key_credential_creation_options"]["rp"]["id"], "example.com",
            "{options}"
        );
    }
    let challenges: i64 = admin
        .query_one("SELECT count(*) FROM mfa.webauthn_challenges", &[])
        .unwrap()
        .get(0);
    assert_eq!(challenges, 6);
    let nodes: i64 = admin
        .query_one(
            "SELECT count(DISTINCT p.groupid) FROM pg_dist_placement p
              WHERE p.shardid IN (SELECT get_shard_id_for_distribution_column('mfa.organizations', o)
                                    FROM unnest($1::text[]) o)",
            &[&orgs],
        )
        .unwrap()
        .get(0);
    assert_eq!(nodes, 2, "the organizations are spread over both workers");

    let mut sms_logins = std::collections::HashMap::new();
    for org in &orgs {
        // A TOTP login: the gate refuses the session before the second factor, passes it after.
        let token = login(&mut app, org, "ann");
        let before = insert_session(&mut app, org, "ann", &token).unwrap_err();
        assert!(before.contains("insufficient_factors"), "{before}");
        let proven = one(
            &mut app,
            "SELECT mfa.totp_authenticate($1, 'ann', $2, $3)",
            &[org, &totp_now(SECRET), &token],
        );
        assert_eq!(proven["status_code"], 200, "{proven}");
        assert_eq!(insert_session(&mut app, org, "ann", &token), Ok(1));
        let replay = insert_session(&mut app, org, "ann", &token).unwrap_err();
        assert!(replay.contains("insufficient_factors"), "{replay}");

        // An SMS login: the code goes to the outbox, a worker claims it across organizations.
        let token = login(&mut app, org, "bob");
        let sent = one(
            &mut app,
            "SELECT mfa.otp_sms_send($1, 'bob', NULL, 'en', $2)",
            &[org, &token],
        );
        assert_eq!(sent["status_code"], 200, "{sent}");
        sms_logins.insert(org.clone(), token);
    }
    let mut sms_worker = Client::connect(
        &coordinator
            .url("mfa_cluster")
            .replace("user=postgres", "user=cluster_sms_worker"),
        NoTls,
    )
    .unwrap();
    // The organization whose message waits longest holds only an expired one: a claim of one
    // message still hands out another organization's, instead of nothing.
    let expired: String = admin
        .query_one(
            "UPDATE mfa.sms_outbox SET expires_at = now() - interval '1 second'
              WHERE organization_id = (SELECT organization_id FROM mfa.sms_outbox
                                        ORDER BY visible_at LIMIT 1)
          RETURNING organization_id",
            &[],
        )
        .unwrap()
        .get(0);
    let query =
        "SELECT id, organization_id, body, receipt FROM mfa.sms_outbox_claim($1, '1 minute')";
    let first = sms_worker.query(query, &[&1]).unwrap();
    assert_eq!(
        first.len(),
        1,
        "a deliverable message, past the expired one"
    );
    let first_id: i64 = first[0].get(0);
    let first_receipt: String = first[0].get(3);
    // A delivery that failed comes back later (reported through the organization's node).
    let failed = one(
        &mut sms_worker,
        "SELECT mfa.sms_outbox_fail($1, $2, 'provider timeout')",
        &[&first_id, &first_receipt],
    );
    assert_eq!(failed["status"], "pending", "{failed}");
    let mut claimed = first;
    claimed.extend(sms_worker.query(query, &[&100]).unwrap());
    let orgs_claimed: std::collections::HashSet<String> =
        claimed.iter().map(|m| m.get::<_, String>(1)).collect();
    assert_eq!(
        claimed.len(),
        orgs.len() - 1,
        "one message per organization"
    );
    assert!(!orgs_claimed.contains(&expired));
    for message in &claimed {
        let (id, org, body, receipt): (i64, String, String, String) = (
            message.get(0),
            message.get(1),
            message.get(2),
            message.get(3),
        );
        let code: String = body.chars().filter(char::is_ascii_digit).take(6).collect();
        if id != first_id {
            let done = one(
                &mut sms_worker,
                "SELECT mfa.sms_outbox_complete($1, $2, 'provider-id')",
                &[&id, &receipt],
            );
            assert_eq!(done["status"], "sent", "{done}");
        }
        let token = &sms_logins[&org];
        // Delegated inside a transaction block too.
        let mut tx = app.transaction().unwrap();
        let wrong: Value = tx
            .query_one(
                "SELECT mfa.otp_sms_authenticate($1, 'bob', '000000', $2)",
                &[&org, token],
            )
            .unwrap()
            .get(0);
        assert_eq!(wrong["error_type"], "unable_to_auth_otp_code", "{wrong}");
        tx.rollback().unwrap();
        let right = one(
            &mut app,
            "SELECT mfa.otp_sms_authenticate($1, 'bob', $2, $3)",
            &[&org, &code, token],
        );
        assert_eq!(right["status_code"], 200, "{right}");
        assert_eq!(insert_session(&mut app, &org, "bob", token), Ok(1));
        // A step-up of an SMS member may send a code, and reads every organization's sends to
        // the number: in a transaction block too.
        let mut tx = app.transaction().unwrap();
        let step_up: Value = tx
            .query_one("SELECT mfa.step_up_start($1, 'bob')", &[&org])
            .unwrap()
            .get(0);
        assert_eq!(step_up["status_code"], 200, "{step_up}");
        tx.commit().unwrap();
        let step_up = one(&mut app, "SELECT mfa.step_up_start($1, 'bob')", &[&org]);
        assert_eq!(step_up["status_code"], 200, "{step_up}");
    }

    // A remembered device's token presented again inside a transaction block: the call runs on
    // the coordinator (it may send a code), whose ledger writer hands the suspected theft to the
    // organization's node: written there, though the caller rolls back, and the devices go.
    let org = "cluster-theft";
    one(
        &mut admin,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL', remember_device_days => 30)",
        &[&org],
    );
    one(&mut admin, "SELECT mfa.member_upsert($1, 'dan')", &[&org]);
    one(
        &mut admin,
        "SELECT mfa.totp_migrate($1, 'dan', $2, ARRAY['theft-recovery-code'])",
        &[&org, &SECRET],
    );
    let token = login(&mut app, org, "dan");
    let recovered = one(
        &mut app,
        "SELECT mfa.recovery_codes_recover($1, 'dan', 'theft-recovery-code', $2)",
        &[&org, &token],
    );
    assert_eq!(recovered["status_code"], 200, "{recovered}");
    let device = one(
        &mut app,
        "SELECT mfa.remembered_device_create($1, 'dan', $2)",
        &[&org, &token],
    );
    let copied = device["device_token"].as_str().unwrap().to_string();
    let rotated = one(
        &mut app,
        "SELECT mfa.primary_authenticate($1, 'dan', device_token => $2)",
        &[&org, &copied],
    );
    assert!(rotated["mfa_required"].is_null(), "{rotated}");
    let mut tx = app.transaction().unwrap();
    let stolen: Value = tx
        .query_one(
            "SELECT mfa.primary_authenticate($1, 'dan', device_token => $2)",
            &[&org, &copied],
        )
        .unwrap()
        .get(0);
    assert!(!stolen["mfa_required"].is_null(), "{stolen}");
    tx.rollback().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (thefts, devices): (i64, i64) = admin
            .query_one(
                "SELECT (SELECT count(*) FROM mfa.events WHERE organization_id = $1
                            AND member_id = 'dan' AND event_type = 'remembered_device.theft_suspected'),
                        (SELECT count(*) FROM mfa.remembered_devices
                          WHERE organization_id = $1 AND member_id = 'dan')",
                &[&org],
            )
            .map(|row| (row.get(0), row.get(1)))
            .unwrap();
        if thefts == 1 && devices == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the theft found on the coordinator was written ({thefts} events, {devices} devices left)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // By now codes were checked on every node: the upkeep recorded the forgotten login and let
    // the old event go.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (abandoned, old, left): (i64, i64, i64) = admin
            .query_one(
                "SELECT (SELECT count(*) FROM mfa.events WHERE organization_id = $1 AND member_id = 'eve'
                            AND event_type = 'login.abandoned' AND request_id::text = $2),
                        (SELECT count(*) FROM mfa.events WHERE organization_id = $1
                            AND occurred_at < now() - interval '30 days'),
                        (SELECT count(*) FROM mfa.intermediate_sessions
                          WHERE organization_id = $1 AND member_id = 'eve')",
                &[kept, &forgotten["request_id"].as_str().unwrap()],
            )
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .unwrap();
        if (abandoned, old, left) == (1, 0, 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the upkeep of the organization's node: {abandoned} abandoned logins recorded, {old} old events and {left} expired logins left"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Attacks of the application's role.
    let org = &orgs[0];
    // A sessions table the coordinator keeps local: a row without a token is refused as on one
    // node (the gate's statement reaches the member's node as a router query all the same).
    app.batch_execute(
        "CREATE TABLE app.local_sessions (organization_id text NOT NULL, member_id text NOT NULL,
                                          token text, factors jsonb)",
    )
    .unwrap();
    admin
        .batch_execute(
            "SELECT mfa.session_table_guard('app.local_sessions', 'organization_id', 'member_id', 'token', 'factors')",
        )
        .unwrap();
    let (state, message) = refusal(
        &mut app,
        &format!("INSERT INTO app.local_sessions (organization_id, member_id) VALUES ('{org}', 'ann')"),
    );
    assert_eq!(state, "28000", "{message}");
    // An attempt Citus does not delegate (the call inside an expression) runs on the
    // coordinator, which would count it in a ledger of its own: refused.
    let (state, message) = refusal(
        &mut app,
        &format!("SELECT mfa.totp_authenticate('{org}', 'ann', '000000')::text"),
    );
    assert_eq!(state, "55000", "{message}");
    assert!(
        message.contains("organization_not_on_this_node"),
        "{message}"
    );
    // Its shards' gate triggers, reached from the coordinator: refused on every worker.
    refused_on_every_shard(
        &mut app,
        "SELECT success, result FROM run_command_on_shards('app.sessions', 'ALTER TABLE %s DISABLE TRIGGER USER')",
    );
    let (shard, _, shard_port) = a_shard(&mut app, "sessions");
    let mut on_worker = app_on_node(shard_port);
    on_worker
        .batch_execute("SET citus.override_table_visibility = off")
        .unwrap();
    let suffix = shard.rsplit('_').next().unwrap();
    for command in [
        format!("DROP TRIGGER mfa_session_gate_insert_{suffix} ON {shard}"),
        format!(
            "ALTER TABLE {shard} ENABLE REPLICA TRIGGER mfa_session_gate_verify_insert_{suffix}"
        ),
        format!("CREATE TABLE app.look_alike () INHERITS ({shard})"),
    ] {
        let (state, message) = refusal(&mut on_worker, &command);
        assert_eq!(state, "42501", "{command}: {message}");
    }
    // Every shard's guard is the one-node guard: renaming the gate's triggers from the
    // coordinator (then dropping them) is refused on every shard.
    refused_on_every_shard(
        &mut app,
        "SELECT success, result FROM run_command_on_shards('app.sessions', $c$
                 DO $x$ DECLARE t record; BEGIN
                     FOR t IN SELECT tgname FROM pg_trigger
                               WHERE tgrelid = '%1$s'::regclass AND tgname LIKE 'mfa_session_gate_%%' LOOP
                         EXECUTE format('ALTER TRIGGER %%I ON %1$s RENAME TO %%I', t.tgname, 'renamed_' || t.tgname);
                     END LOOP;
                 END $x$$c$)",
    );
    // On the worker: a shard renamed, an unguarded look-alike in its place, two shards swapped.
    let other_shard: String = on_worker
        .query_one(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'app' AND c.relname ~ '^sessions_[0-9]+$' AND c.relkind = 'r'
                AND format('%I.%I', n.nspname, c.relname) <> $1
              LIMIT 1",
            &[&shard],
        )
        .unwrap()
        .get(0);
    let mut accepted = Vec::new();
    for command in [
        format!("ALTER TABLE {shard} RENAME TO sessions_moved"),
        format!(
            "ALTER TABLE {shard} RENAME TO sessions_moved;
             CREATE TABLE {shard} (LIKE app.sessions_moved)"
        ),
        format!(
            "ALTER TABLE {shard} RENAME TO sessions_swap;
             ALTER TABLE {other_shard} RENAME TO {bare};
             ALTER TABLE app.sessions_swap RENAME TO {other_bare}",
            bare = shard.rsplit('.').next().unwrap(),
            other_bare = other_shard.rsplit('.').next().unwrap()
        ),
        format!("ALTER TABLE {shard} SET SCHEMA public"),
        format!(
            "CREATE TRIGGER mfa_session_gate_insert_1 BEFORE INSERT ON {shard} FOR EACH ROW
             EXECUTE FUNCTION mfa.session_gate('organization_id', 'member_id', 'token', 'factors')"
        ),
        format!("ALTER TRIGGER mfa_session_gate_update_{suffix} ON {shard} DEPENDS ON EXTENSION plpgsql"),
    ] {
        let mut tx = on_worker.transaction().unwrap();
        let answer = tx.batch_execute(&format!(
            "SET LOCAL citus.enable_manual_changes_to_shards = on; {command}"
        ));
        drop(tx);
        match answer {
            Err(error) if sql_error(&error).0 == "42501" => {}
            other => accepted.push(format!("{command}: {other:?}")),
        }
    }
    assert!(accepted.is_empty(), "accepted on a shard: {accepted:#?}");
    let bogus = insert_session(&mut app, org, "ann", "a token never issued").unwrap_err();
    assert!(bogus.contains("insufficient_factors"), "{bogus}");

    // Failed attempts lock the member on the node that holds the organization, durably.
    // (mfa.lock_threshold: 10; at most mfa.member_checks_per_second: 5.)
    for _ in 0..10 {
        one(
            &mut app,
            "SELECT mfa.totp_authenticate($1, 'ann', '000000')",
            &[org],
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let locked: bool = admin
            .query_one(
                "SELECT coalesce((SELECT lock_expires_at > now() FROM mfa.member_lockouts
                                   WHERE organization_id = $1 AND member_id = 'ann'), false)",
                &[org],
            )
            .unwrap()
            .get(0);
        if locked {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lock reached mfa.member_lockouts"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let refused = one(
        &mut app,
        "SELECT mfa.totp_authenticate($1, 'ann', $2)",
        &[org, &totp_now(SECRET)],
    );
    assert_eq!(
        refused["error_type"], "user_lock_limit_reached",
        "{refused}"
    );

    // Key rotation on the cluster: a new key on every node, reloaded, and every secret
    // re-encrypted organization by organization; logins go on with the new key.
    let org = &orgs[1];
    one(&mut admin, "SELECT mfa.member_upsert($1, 'cat')", &[org]);
    one(
        &mut admin,
        "SELECT mfa.totp_migrate($1, 'cat', $2)",
        &[org, &SECRET],
    );
    for node in [&coordinator, &worker, &stray] {
        node.write_key_file(&format!("{}{}", key(0x31), key(0x33)));
        Client::connect(&node.url("mfa_cluster"), NoTls)
            .unwrap()
            .batch_execute("SELECT pg_reload_conf()")
            .unwrap();
    }
    for node in [&coordinator, &worker, &stray] {
        let mut c = Client::connect(&node.url("mfa_cluster"), NoTls).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while c
            .query_one(
                "SELECT count(*) FROM mfa.encryption_keys() WHERE source = 'server'",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0)
            < 2
        {
            assert!(
                Instant::now() < deadline,
                "port {}: the key file was reloaded",
                node.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rotated = one(&mut admin, "SELECT mfa.encryption_key_rotate(4)", &[]);
        if rotated["remaining"]["totp_secrets"] == 0
            && rotated["remaining"]["queued_sms_codes"] == 0
        {
            break;
        }
        assert!(Instant::now() < deadline, "the rotation ends: {rotated}");
    }
    let old: i64 = admin
        .query_one(
            "SELECT coalesce(sum(totp_secrets + queued_sms_codes), 0)::bigint FROM mfa.encryption_keys()
              WHERE key_id IS NOT NULL AND NOT encrypts",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(old, 0, "no secret is left under the old key");
    let encrypting: String = admin
        .query_one(
            "SELECT key_id FROM mfa.encryption_keys() WHERE encrypts",
            &[],
        )
        .unwrap()
        .get(0);
    let moved: i64 = admin
        .query_one(
            "SELECT totp_secrets FROM mfa.encryption_keys() WHERE key_id = $1",
            &[&encrypting],
        )
        .unwrap()
        .get(0);
    assert_eq!(moved, 8, "every authenticator secret is under the new key");
    let token = login(&mut app, org, "cat");
    let proven = one(
        &mut app,
        "SELECT mfa.totp_authenticate($1, 'cat', $2, $3)",
        &[org, &totp_now(SECRET), &token],
    );
    assert_eq!(proven["status_code"], 200, "{proven}");

    // A row that got past the shard's triggers (a superuser's maintenance on a worker) carries
    // no assurance: its factors' seals do not verify, wherever the query runs.
    let forged_org = &orgs[2];
    let placement: (String, i32) = {
        let row = admin
            .query_one(
                "SELECT shard_name, nodeport FROM citus_shards
                  WHERE table_name = 'app.sessions'::regclass
                    AND shardid = get_shard_id_for_distribution_column('app.sessions', $1::text)",
                &[forged_org],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    let mut superuser_on_worker = Client::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=mfa_cluster",
            placement.1
        ),
        NoTls,
    )
    .unwrap();
    superuser_on_worker
        .batch_execute(&format!(
            "SET citus.enable_manual_changes_to_shards = on;
             BEGIN;
             ALTER TABLE {shard} DISABLE TRIGGER USER;
             INSERT INTO {shard} (organization_id, session_id, member_id, token, factors)
             VALUES ('{forged_org}', 999999, 'eve', NULL,
                     '[{{\"type\": \"totp\", \"totp_id\": \"x\", \"last_authenticated_at\": \"2099-01-01T00:00:00Z\"}}]');
             ALTER TABLE {shard} ENABLE TRIGGER USER;
             COMMIT;",
            shard = placement.0
        ))
        .unwrap();
    let assurance: Vec<(String, String)> = app
        .query(
            "SELECT member_id, mfa.session_aal(organization_id, member_id, factors) FROM app.sessions
              WHERE organization_id = $1 ORDER BY member_id",
            &[forged_org],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        assurance,
        [
            ("ann".into(), "aal2".into()),
            ("bob".into(), "aal2".into()),
            ("eve".into(), "aal1".into())
        ]
    );

    // A shard is guarded only whole: a child table the owner gave a shard before the guard makes
    // session_table_guard refuse (it was registered, marked broken and open to the owner).
    distributed_sessions(&mut app, "kid_sessions");
    let (kid_shard, _, kid_port) = a_shard(&mut admin, "kid_sessions");
    let mut owner_there = app_on_node(kid_port);
    owner_there
        .batch_execute(&format!(
            "SET citus.override_table_visibility = off; CREATE TABLE app.shard_kid () INHERITS ({kid_shard})"
        ))
        .unwrap();
    let (state, message) = refusal(
        &mut admin,
        "SELECT mfa.session_table_guard('app.kid_sessions', 'organization_id', 'member_id', 'token', 'factors')",
    );
    assert_eq!(state, "22023", "{message}");
    assert!(message.contains("inherit"), "{message}");
    owner_there
        .batch_execute("DROP TABLE app.shard_kid")
        .unwrap();
    admin
        .batch_execute("SELECT mfa.session_table_guard('app.kid_sessions', 'organization_id', 'member_id', 'token', 'factors')")
        .unwrap();
    // A shard is known by its name, not by Citus's metadata, which the owner can edit (Citus's
    // internal functions trust a table's owner that calls itself a Citus backend): with the
    // shard's metadata deleted on its node before the guard, it is registered all the same.
    distributed_sessions(&mut app, "meta_sessions");
    let (meta_shard, meta_id, meta_port) = a_shard(&mut admin, "meta_sessions");
    let mut owner_there = app_on_node(meta_port);
    owner_there
        .batch_execute(&format!(
            "BEGIN TRANSACTION ISOLATION LEVEL READ COMMITTED;
             SELECT assign_distributed_transaction_id(0, 8, '2021-07-09 15:41:55.542377+02');
             SET application_name TO 'citus_internal gpid=10000000001';
             SELECT citus_internal_delete_shard_metadata({meta_id});
             COMMIT;
             RESET application_name;"
        ))
        .unwrap();
    admin
        .batch_execute("SELECT mfa.session_table_guard('app.meta_sessions', 'organization_id', 'member_id', 'token', 'factors')")
        .unwrap();
    let suffix = meta_shard.rsplit('_').next().unwrap();
    let (state, message) = refusal(
        &mut owner_there,
        &format!(
            "SET citus.override_table_visibility = off; SET citus.enable_manual_changes_to_shards = on;
             DROP TRIGGER mfa_session_gate_insert_{suffix} ON {meta_shard}"
        ),
    );
    assert_eq!(state, "42501", "{message}");

    // The guard comes off a distributed table, shards included, by mfa_admin alone.
    admin
        .batch_execute("SELECT mfa.session_table_unguard('app.sessions')")
        .unwrap();
    let left: Vec<String> = admin
        .query(
            "SELECT result FROM run_command_on_shards('app.sessions',
                 $c$SELECT count(*) FROM pg_trigger WHERE tgrelid = '%s'::regclass AND tgfoid = 'mfa.session_gate()'::regprocedure$c$)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        !left.is_empty() && left.iter().all(|count| count == "0"),
        "{left:?}"
    );
    let registered: Vec<String> = admin
        .query(
            "SELECT result FROM run_command_on_workers($c$SELECT count(*) FROM mfa.guarded_session_tables WHERE table_name ~ '^app[.]sessions_[0-9]+$'$c$)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        registered.iter().all(|count| count == "0"),
        "{registered:?}"
    );
    drop((worker, stray));
}
