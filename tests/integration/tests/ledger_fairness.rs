//! The attempt ledger is shared by the whole server; one tenant must not be able to switch it off
//! for the others. Here the application role of one database keeps every free background worker
//! slot busy with parallel queries of its own (user settings are enough) and floods the record
//! queue with refused session INSERTs, while members of another database log in and the first
//! database's administrator unlocks a member.

mod common;
use common::*;
use postgres::{Client, NoTls};
use serde_json::Value;
use std::time::{Duration, Instant};

const SECRET: &str = "JBSWY3DPEHPK3PXP";
/// Records in the queue: the flood below is several times that.
const QUEUE: usize = 64;
const RECOVERY_CODES: [&str; 2] = ["0000-fair-code", "0001-fair-code"];
const SETTINGS: &str =
    "max_worker_processes = 6\nmax_parallel_workers = 6\nmfa.attempt_queue_records = 64\n\
                        mfa.member_checks_per_second = 100";

/// A database of `cluster` with organization `acme`, member `m0` (an authenticator app) and an
/// application role that owns a guarded sessions table there.
fn tenant(cluster: &Cluster, name: &str) -> (Client, Client, String) {
    let url = cluster.create_database(name);
    let mut su = Client::connect(&url, NoTls).unwrap();
    json(
        &mut su,
        "SELECT mfa.organization_upsert('acme', 'REQUIRED_FOR_ALL', remember_device_days => 30)",
        &[],
    );
    json(&mut su, "SELECT mfa.member_upsert('acme', 'm0')", &[]);
    json(
        &mut su,
        "SELECT mfa.totp_migrate('acme', 'm0', $1, $2)",
        &[&SECRET, &RECOVERY_CODES.map(String::from).to_vec()],
    );
    let role = format!("{name}_app");
    su.batch_execute(&format!(
        "DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT mfa_app TO {role};
         CREATE SCHEMA app AUTHORIZATION {role};
         SET ROLE {role};
         CREATE TABLE app.sessions (id serial PRIMARY KEY, organization_id text NOT NULL,
             member_id text NOT NULL, intermediate_session_token text, authentication_factors jsonb);
         CREATE TABLE app.big AS SELECT g AS n FROM generate_series(1, 100000) g;
         RESET ROLE;
         SELECT mfa.session_table_guard('app.sessions');"
    ))
    .unwrap();
    let app = Client::connect(
        &format!(
            "host=127.0.0.1 port={} user={role} dbname={name}",
            cluster.port
        ),
        NoTls,
    )
    .unwrap();
    (su, app, role)
}

/// Parallel workers running now.
fn parallel_workers(c: &mut Client) -> i64 {
    c.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel worker'",
        &[],
    )
    .unwrap()
    .get(0)
}

/// The application role of `database` takes every background worker slot it can get with
/// parallel queries that run for a few seconds (only user settings): the threads, and the
/// parallel workers seen busy.
fn starve(
    cluster: &Cluster,
    role: &str,
    database: &str,
) -> (Vec<std::thread::JoinHandle<()>>, i64) {
    let url = format!(
        "host=127.0.0.1 port={} user={role} dbname={database}",
        cluster.port
    );
    let starvers: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&url, NoTls).unwrap();
                c.batch_execute(
                    "SET max_parallel_workers_per_gather = 6; SET max_parallel_workers = 6;
                     SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
                     SET min_parallel_table_scan_size = 0; SET parallel_leader_participation = off;
                     SET statement_timeout = '6s'",
                )
                .unwrap();
                let _ = c.query(
                    "SELECT count(*) FROM app.big WHERE pg_sleep(0.0002) IS NOT NULL",
                    &[],
                );
            })
        })
        .collect();
    let mut c = Client::connect(&url, NoTls).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while parallel_workers(&mut c) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let taken = parallel_workers(&mut c);
    assert!(taken > 0, "the parallel queries got no worker");
    (starvers, taken)
}

/// `count` refused session INSERTs (no token) by the application role of `database`, each a
/// denial the ledger is to record, caught so that one statement makes them all.
fn flood_denials(cluster: &Cluster, role: &str, database: &str, count: usize) {
    let mut flooder = Client::connect(
        &format!(
            "host=127.0.0.1 port={} user={role} dbname={database}",
            cluster.port
        ),
        NoTls,
    )
    .unwrap();
    flooder
        .batch_execute(&format!(
            "DO $$ BEGIN FOR i IN 1..{count} LOOP
                 BEGIN INSERT INTO app.sessions (organization_id, member_id) VALUES ('acme', 'm0');
                 EXCEPTION WHEN others THEN NULL; END;
             END LOOP; END $$"
        ))
        .unwrap();
}

#[test]
fn one_database_cannot_starve_or_fill_the_ledger_for_another() {
    let cluster = Cluster::start("ledger-fairness", 28850, SETTINGS);
    let (mut su_a, _app_a, role_a) = tenant(&cluster, "fair_a");
    let (_su_b, mut app_b, _) = tenant(&cluster, "fair_b");

    let (starvers, taken) = starve(&cluster, &role_a, "fair_a");
    let flood = 8 * QUEUE;
    flood_denials(&cluster, &role_a, "fair_a", flood);

    // A member of database b logs in with a correct code while that goes on.
    let started = Instant::now();
    let (_, token) = start_login(&mut app_b, "acme", "m0");
    let answer: Value = app_b
        .query_one(
            "SELECT mfa.totp_authenticate('acme', 'm0', $1, $2)",
            &[&totp_now(SECRET), &token],
        )
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("a correct code in another database was refused: {e:?}"));
    let took = started.elapsed();
    assert_eq!(answer["status_code"], 200, "{answer}");
    eprintln!(
        "correct code in another database during the flood ({taken} parallel workers busy): {} ms",
        took.as_millis()
    );
    // Database a's administrator can still unlock a member of its own.
    su_a.query_one("SELECT mfa.member_unlock('acme', 'm0')", &[])
        .unwrap_or_else(|e| panic!("member_unlock failed during the flood: {e:?}"));

    for s in starvers {
        s.join().unwrap();
    }
    // Every refused INSERT is counted in database a's audit trail: an event each, or an event
    // that stands for the `coalesced_denials` that found no room in the queue.
    let deadline = Instant::now() + Duration::from_secs(30);
    let counted = loop {
        let counted: i64 = su_a
            .query_one(
                "SELECT coalesce(sum(coalesce((details ->> 'coalesced_denials')::bigint, 1)), 0)::bigint
                   FROM mfa.events WHERE event_type = 'session.denied'",
                &[],
            )
            .unwrap()
            .get(0);
        if counted >= flood as i64 || Instant::now() > deadline {
            break counted;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(counted, flood as i64, "denials counted in the audit trail");
}

/// A suspected theft (a rotated device token presented again) during a starved flood of the same
/// database, in a transaction that is rolled back: the signal is not dropped, and the member's
/// devices are revoked once the writer gets to it.
#[test]
fn a_theft_signal_is_never_dropped() {
    let cluster = Cluster::start("ledger-theft", 28851, SETTINGS);
    let (mut su, mut app, role) = tenant(&cluster, "fair_t");
    let (_, token) = start_login(&mut app, "acme", "m0");
    let recovered = json(
        &mut app,
        "SELECT mfa.recovery_codes_recover('acme', 'm0', $1, $2)",
        &[&RECOVERY_CODES[0], &token],
    );
    assert_eq!(recovered["status_code"], 200, "{recovered}");
    let laptop = json(
        &mut app,
        "SELECT mfa.remembered_device_create('acme', 'm0', $1)",
        &[&token],
    )["device_token"]
        .as_str()
        .unwrap()
        .to_string();
    // Presented once: honoured, and rotated (the laptop's token is retired).
    let used = json(
        &mut app,
        "SELECT mfa.primary_authenticate('acme', 'm0', device_token => $1)",
        &[&laptop],
    );
    assert!(used["mfa_required"].is_null(), "{used}");
    let devices = |c: &mut Client| -> usize {
        json(c, "SELECT mfa.remembered_devices_get('acme', 'm0')", &[])["remembered_devices"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(devices(&mut su), 1);

    let (starvers, _) = starve(&cluster, &role, "fair_t");
    flood_denials(&cluster, &role, "fair_t", 8 * QUEUE);
    // The copied cookie presented again, in a transaction rolled back (its own revocation with it).
    let mut tx = app.transaction().unwrap();
    let stolen: Value = tx
        .query_one(
            "SELECT mfa.primary_authenticate('acme', 'm0', device_token => $1)",
            &[&laptop],
        )
        .map(|r| r.get(0))
        .unwrap_or_else(|e| Value::String(format!("{e:?}")));
    tx.rollback().unwrap();
    eprintln!("the retired token presented during the flood: {stolen}");
    for s in starvers {
        s.join().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while devices(&mut su) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        devices(&mut su),
        0,
        "the suspected theft revoked the devices"
    );
}

/// One database's members failing at once (more of them than the member table holds) fill only
/// that database's part of the table: a member of another database still gets an entry, and
/// their correct code passes.
#[test]
fn one_databases_failing_members_cannot_fill_the_member_table() {
    let cluster = Cluster::start(
        "ledger-members",
        28852,
        "mfa.attempt_ledger_members = 128\nmfa.member_checks_per_second = 100",
    );
    let (mut su_a, mut app_a, _) = tenant(&cluster, "fair_m");
    let (_su_b, mut app_b, _) = tenant(&cluster, "fair_n");
    su_a.batch_execute(&format!(
        "SELECT mfa.member_upsert('acme', 'f' || i), mfa.totp_migrate('acme', 'f' || i, '{SECRET}')
           FROM generate_series(1, 200) i"
    ))
    .unwrap();
    // One wrong code each: 200 members with a failure in the window, none quiet.
    let refused: i64 = app_a
        .query_one(
            "WITH tries AS (
                 SELECT mfa.totp_authenticate('acme', 'f' || i, '000000',
                            mfa.primary_authenticate('acme', 'f' || i) ->> 'intermediate_session_token') AS answer
                   FROM generate_series(1, 200) i)
             SELECT count(*) FROM tries",
            &[],
        )
        .map(|_| 0)
        .unwrap_or(1);
    eprintln!(
        "database a's 200 failing members: stopped by the member table: {}",
        refused == 1
    );
    let (_, token) = start_login(&mut app_b, "acme", "m0");
    let answer: Value = app_b
        .query_one(
            "SELECT mfa.totp_authenticate('acme', 'm0', $1, $2)",
            &[&totp_now(SECRET), &token],
        )
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("a correct code in another database was refused: {e:?}"));
    assert_eq!(answer["status_code"], 200, "{answer}");
}
