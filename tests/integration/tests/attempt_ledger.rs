//! The lockout against whoever holds `mfa_app`: a non-superuser application role that rolls back,
//! catches exceptions, runs checks in parallel or gets killed mid-transaction still gets no more
//! than `mfa.lock_threshold` guesses per member per lock window, no more than
//! `mfa.member_checks_per_second` in a burst, and every checked guess is audited by the attempt
//! ledger's worker. Also: the ledger requires the preload, and a kill -9 loses at most what the
//! worker had not written (failures acknowledged a second before the crash are durable).

mod common;
use common::*;
use postgres::{Client, NoTls};
use serde_json::Value;
use std::time::{Duration, Instant};

const SECRET: &str = "JBSWY3DPEHPK3PXP";
const RECOVERY: &str = "aaaa-bbbb-cccc";

/// An organization that requires MFA, its member bob with an authenticator app of known secret,
/// and an application role (non-superuser, `mfa_app`). `role_settings` are the operator's
/// settings for that role (`ALTER ROLE … SET`, superuser only, like every lockout setting).
struct Victim {
    org: String,
    role: String,
}

fn victim(prefix: &str, role_settings: &[&str]) -> Victim {
    let mut su = connect();
    let org = new_organization(&mut su, prefix);
    json(
        &mut su,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL')",
        &[&org],
    );
    json(&mut su, "SELECT mfa.member_upsert($1, 'bob')", &[&org]);
    json(
        &mut su,
        "SELECT mfa.totp_migrate($1, 'bob', $2, ARRAY[$3])",
        &[&org, &SECRET, &RECOVERY],
    );
    let role = unique(&format!("{prefix}_app")).replace('-', "_");
    su.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN; GRANT mfa_app TO {role}"
    ))
    .unwrap();
    for setting in role_settings {
        su.batch_execute(&format!("ALTER ROLE {role} SET {setting}"))
            .unwrap();
    }
    Victim { org, role }
}

impl Victim {
    fn app(&self) -> Client {
        Client::connect(&database_url_as(&self.role), NoTls).expect("connect as the app role")
    }
}

/// On a cluster whose coordinator does not hold `org` (the attack's DO block runs there, not
/// delegated): the attack is refused before any guess is checked, and nothing is counted or
/// audited for bob. Returns whether that was the case (the test then ends).
fn refused_on_another_node(v: &Victim) -> bool {
    let mut su = connect();
    if !organization_elsewhere(&mut su, &v.org) {
        return false;
    }
    let e = v.app().batch_execute(&attack(&v.org, 3)).unwrap_err();
    assert_not_on_this_node(&e);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(audited_failures(&mut su, &v.org), 0);
    assert_eq!(durable_lockout(&mut su, &v.org), (0, false));
    // The member is not locked: a delegated call with the right code passes.
    let right = json(
        &mut v.app(),
        "SELECT mfa.totp_authenticate($1, 'bob', $2)",
        &[&v.org, &totp_now(SECRET)],
    );
    assert_eq!(right["status_code"], 200, "{right}");
    true
}

/// The attack: each guess in an exception block that is rolled back, and the whole
/// transaction rolled back at the end (the tally raised as the error).
fn attack(org: &str, guesses: usize) -> String {
    let codes = wrong_codes(SECRET, guesses)
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "DO $$
         DECLARE r jsonb; k text; tally jsonb := '{{}}';
         BEGIN
           FOREACH k IN ARRAY ARRAY[{codes}] LOOP
             BEGIN
               r := mfa.totp_authenticate('{org}', 'bob', k);
               k := coalesce(r->>'error_type', r->>'status_code');
               tally := jsonb_set(tally, ARRAY[k], to_jsonb(coalesce((tally->>k)::int, 0) + 1));
               RAISE EXCEPTION 'undo';
             EXCEPTION WHEN raise_exception THEN NULL;
             END;
           END LOOP;
           RAISE EXCEPTION 'tally %', tally;
         END $$"
    )
}

/// Runs `attack`: returns how many answers of each kind it saw.
fn rolled_back_brute_force(app: &mut Client, org: &str, guesses: usize) -> Value {
    let e = app.batch_execute(&attack(org, guesses)).unwrap_err();
    let (_, message) = sql_error(&e);
    let tally = message
        .strip_prefix("tally ")
        .unwrap_or_else(|| panic!("{message}"));
    serde_json::from_str(tally).unwrap()
}

/// Waits up to 20 s for `f` to hold (the worker writes in its own time); returns its last value.
fn eventually<T: std::fmt::Debug>(mut f: impl FnMut() -> T, ok: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = f();
        if ok(&value) || Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Failed code checks audited for bob of `org` (refusals of a locked member, audited in the
/// caller's transaction, are not checks).
fn audited_failures(c: &mut Client, org: &str) -> i64 {
    c.query_one(
        "SELECT count(*) FROM mfa.events WHERE organization_id = $1 AND member_id = 'bob'
            AND details->>'outcome' = 'failure'
            AND details->>'error_type' IS DISTINCT FROM 'user_lock_limit_reached'",
        &[&org],
    )
    .unwrap()
    .get(0)
}

/// bob's durable lock state: (failed_attempts, locked now).
fn durable_lockout(c: &mut Client, org: &str) -> (i32, bool) {
    c.query_opt(
        "SELECT failed_attempts, coalesce(lock_expires_at > clock_timestamp(), false)
           FROM mfa.member_lockouts WHERE organization_id = $1 AND member_id = 'bob'",
        &[&org],
    )
    .unwrap()
    .map(|r| (r.get(0), r.get(1)))
    .unwrap_or((0, false))
}

#[test]
fn a_rolled_back_brute_force_is_capped_locked_and_audited() {
    let v = victim("ledger-dos", &["mfa.member_checks_per_second = 100"]);
    if refused_on_another_node(&v) {
        return;
    }
    let tally = rolled_back_brute_force(&mut v.app(), &v.org, 300);
    // mfa.lock_threshold (10) guesses checked, the other 290 refused unchecked.
    assert_eq!(
        tally,
        serde_json::json!({"unable_to_authenticate_totp": 10, "user_lock_limit_reached": 290})
    );
    let mut su = connect();
    assert_eq!(
        eventually(|| audited_failures(&mut su, &v.org), |n| *n == 10),
        10
    );
    let last_locked: bool = su
        .query_one(
            "SELECT (details->>'locked')::boolean FROM mfa.events WHERE organization_id = $1
                AND details->>'outcome' = 'failure' ORDER BY event_id DESC LIMIT 1",
            &[&v.org],
        )
        .unwrap()
        .get(0);
    assert!(last_locked, "the tenth failure locked bob");
    assert!(
        eventually(|| durable_lockout(&mut su, &v.org), |l| l.1).1,
        "the lock is written"
    );
    // Locked: even the right code is refused.
    let right = json(
        &mut v.app(),
        "SELECT mfa.totp_authenticate($1, 'bob', $2)",
        &[&v.org, &totp_now(SECRET)],
    );
    assert_eq!(right["error_type"], "user_lock_limit_reached", "{right}");
    assert_eq!(
        json(&mut su, "SELECT mfa.member_get($1, 'bob')", &[&v.org])["is_locked"],
        true
    );
}

#[test]
fn a_burst_is_throttled_even_under_a_high_threshold() {
    let v = victim("ledger-burst", &["mfa.lock_threshold = 100"]);
    if refused_on_another_node(&v) {
        return;
    }
    let started = Instant::now();
    let tally = rolled_back_brute_force(&mut v.app(), &v.org, 300);
    let seconds = started.elapsed().as_secs() as i64 + 1;
    let checked = tally["unable_to_authenticate_totp"].as_i64().unwrap_or(0);
    let throttled = tally["too_many_requests"].as_i64().unwrap_or(0);
    println!("burst of 300 over {seconds} s: {checked} checked, {throttled} throttled");
    // mfa.member_checks_per_second (5) in each second the burst touched.
    assert!(checked >= 5 && checked <= 5 * (seconds + 1), "{tally}");
    assert_eq!(checked + throttled, 300, "{tally}");
    let mut su = connect();
    assert_eq!(
        eventually(|| audited_failures(&mut su, &v.org), |n| *n == checked),
        checked
    );
    // The first refusal of each second is audited.
    let audited = eventually(
        || -> i64 {
            su.query_one(
                "SELECT count(*) FROM mfa.events WHERE organization_id = $1
                    AND details->>'outcome' = 'throttled'",
                &[&v.org],
            )
            .unwrap()
            .get(0)
        },
        |n| *n >= 1,
    );
    assert!(audited >= 1 && audited <= seconds + 1, "{audited} audited");
    // A failure after the burst carries how many were refused since the last one.
    std::thread::sleep(Duration::from_millis(1100));
    let after = json(
        &mut v.app(),
        "SELECT mfa.totp_authenticate($1, 'bob', $2)",
        &[&v.org, &wrong_codes(SECRET, 1)[0]],
    );
    assert_eq!(
        after["error_type"], "unable_to_authenticate_totp",
        "{after}"
    );
    let summed = eventually(
        || -> i64 {
            su.query_one(
                "SELECT coalesce(sum((details->>'throttled_since_last_failure')::int), 0)
                   FROM mfa.events WHERE organization_id = $1",
                &[&v.org],
            )
            .unwrap()
            .get(0)
        },
        |n| *n == throttled,
    );
    assert_eq!(summed, throttled);
}

#[test]
fn rollback_savepoints_and_a_killed_connection_all_count() {
    let v = victim("ledger-rollback", &["mfa.member_checks_per_second = 100"]);
    let codes = wrong_codes(SECRET, 3);
    let mut app = v.app();
    // A whole transaction rolled back.
    app.batch_execute("BEGIN").unwrap();
    json(
        &mut app,
        "SELECT mfa.totp_authenticate($1, 'bob', $2)",
        &[&v.org, &codes[0]],
    );
    app.batch_execute("ROLLBACK").unwrap();
    // A savepoint rolled back, then the transaction committed.
    app.batch_execute("BEGIN; SAVEPOINT s").unwrap();
    json(
        &mut app,
        "SELECT mfa.recovery_codes_recover($1, 'bob', 'zzzz-zzzz-zzzz')",
        &[&v.org],
    );
    app.batch_execute("ROLLBACK TO SAVEPOINT s; COMMIT")
        .unwrap();
    // A connection killed with its transaction open.
    let mut doomed = v.app();
    doomed.batch_execute("BEGIN").unwrap();
    let pid: i32 = doomed
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    json(
        &mut doomed,
        "SELECT mfa.totp_authenticate($1, 'bob', $2)",
        &[&v.org, &codes[1]],
    );
    let mut su = connect();
    su.execute("SELECT pg_terminate_backend($1::int)", &[&pid])
        .unwrap();
    assert!(doomed.batch_execute("COMMIT").is_err());

    assert_eq!(
        eventually(|| audited_failures(&mut su, &v.org), |n| *n == 3),
        3
    );
    assert_eq!(
        eventually(|| durable_lockout(&mut su, &v.org), |l| l.0 == 3).0,
        3
    );
}

#[test]
fn eight_parallel_wrong_codes_add_eight() {
    let v = victim("ledger-parallel", &["mfa.member_checks_per_second = 100"]);
    let codes = wrong_codes(SECRET, 16);
    let round = |codes: Vec<String>| -> Vec<String> {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(codes.len()));
        let handles: Vec<_> = codes
            .into_iter()
            .map(|code| {
                let (barrier, url, org) =
                    (barrier.clone(), database_url_as(&v.role), v.org.clone());
                std::thread::spawn(move || {
                    let mut c = Client::connect(&url, NoTls).unwrap();
                    barrier.wait();
                    let r = json(
                        &mut c,
                        "SELECT mfa.totp_authenticate($1, 'bob', $2)",
                        &[&org, &code],
                    );
                    r["error_type"].as_str().unwrap().to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    };
    let first = round(codes[..8].to_vec());
    assert!(
        first.iter().all(|e| e == "unable_to_authenticate_totp"),
        "{first:?}"
    );
    let mut su = connect();
    assert_eq!(
        eventually(|| durable_lockout(&mut su, &v.org), |l| l.0 == 8).0,
        8
    );
    // Eight more at once: two fit under the threshold of 10, six are refused unchecked.
    let second = round(codes[8..].to_vec());
    let checked = second
        .iter()
        .filter(|e| *e == "unable_to_authenticate_totp")
        .count();
    assert_eq!(checked, 2, "{second:?}");
    assert!(second
        .iter()
        .all(|e| e == "unable_to_authenticate_totp" || e == "user_lock_limit_reached"));
    assert_eq!(
        eventually(|| audited_failures(&mut su, &v.org), |n| *n == 10),
        10
    );
    assert!(eventually(|| durable_lockout(&mut su, &v.org), |l| l.1).1);
}

#[test]
fn an_sms_code_dies_after_its_wrong_attempts() {
    let v = victim("ledger-sms", &["mfa.member_checks_per_second = 100"]);
    let mut su = connect();
    json(
        &mut su,
        "SELECT mfa.member_upsert($1, 'bob', '+14155550123')",
        &[&v.org],
    );
    json(&mut su, "SELECT mfa.otp_sms_send($1, 'bob')", &[&v.org]);
    let code = sms_code(&mut su, &v.org);
    let mut app = v.app();
    let wrong: Vec<String> = wrong_codes(SECRET, 6)
        .into_iter()
        .filter(|c| *c != code)
        .collect();
    for w in &wrong[..5] {
        let r = json(
            &mut app,
            "SELECT mfa.otp_sms_authenticate($1, 'bob', $2)",
            &[&v.org, w],
        );
        assert_eq!(r["status_code"], 401, "{r}");
    }
    // mfa.sms_code_max_attempts (5) spent: the right code is dead too.
    let dead = json(
        &mut app,
        "SELECT mfa.otp_sms_authenticate($1, 'bob', $2)",
        &[&v.org, &code],
    );
    assert_eq!(dead["error_type"], "unable_to_auth_otp_code", "{dead}");
    // A new code starts over.
    json(&mut su, "SELECT mfa.otp_sms_send($1, 'bob')", &[&v.org]);
    let fresh = sms_code(&mut su, &v.org);
    let ok = json(
        &mut app,
        "SELECT mfa.otp_sms_authenticate($1, 'bob', $2)",
        &[&v.org, &fresh],
    );
    assert_eq!(ok["status_code"], 200, "{ok}");
}

#[test]
fn a_denied_session_is_a_durable_event() {
    let v = victim("ledger-denied", &[]);
    let mut su = connect();
    let schema = format!("{}_s", v.role);
    su.batch_execute(&format!(
        "CREATE SCHEMA {schema} AUTHORIZATION {role};
         CREATE TABLE {schema}.sessions (id serial PRIMARY KEY, organization_id text NOT NULL,
             member_id text NOT NULL, intermediate_session_token text, authentication_factors jsonb);
         ALTER TABLE {schema}.sessions OWNER TO {role};
         SELECT mfa.session_table_guard('{schema}.sessions');",
        role = v.role
    ))
    .unwrap();
    let mut app = v.app();
    let (_, token) = start_login(&mut app, &v.org, "bob");
    // No second factor yet: refused, and the refusal's rollback keeps its audit event.
    let refused = app.execute(
        &format!(
            "INSERT INTO {schema}.sessions (organization_id, member_id, intermediate_session_token)
             VALUES ($1, 'bob', $2)"
        ),
        &[&v.org, &token],
    );
    assert!(refused.is_err());
    let denied = eventually(
        || -> i64 {
            su.query_one(
                "SELECT count(*) FROM mfa.events WHERE organization_id = $1 AND member_id = 'bob'
                    AND event_type = 'session.denied' AND actor = $2::name",
                &[&v.org, &v.role],
            )
            .unwrap()
            .get(0)
        },
        |n| *n == 1,
    );
    assert_eq!(denied, 1);
}

#[test]
fn without_the_preload_authentication_is_refused() {
    let cluster = Cluster::start("nopreload", 28821, "shared_preload_libraries = ''");
    let url = cluster.create_database("mfa_nopreload");
    let mut c = Client::connect(&url, NoTls).unwrap();
    json(
        &mut c,
        "SELECT mfa.organization_upsert('acme', 'REQUIRED_FOR_ALL')",
        &[],
    );
    json(&mut c, "SELECT mfa.member_upsert('acme', 'bob')", &[]);
    json(
        &mut c,
        "SELECT mfa.totp_migrate('acme', 'bob', $1, ARRAY[$2])",
        &[&SECRET, &RECOVERY],
    );
    let e = c
        .query_one(
            "SELECT mfa.totp_authenticate('acme', 'bob', $1)",
            &[&totp_now(SECRET)],
        )
        .unwrap_err();
    let (state, message) = sql_error(&e);
    assert_eq!(state, "55000", "{message}");
    assert!(message.contains("mfa_not_preloaded") && message.contains("shared_preload_libraries"));
}

/// A cluster of its own with the extension preloaded and `settings`, and a database in it whose
/// organization `acme` has members `m0` … `m{members - 1}`, each with an authenticator app.
fn cluster_with_members(
    name: &str,
    port: u16,
    settings: &str,
    members: usize,
) -> (Cluster, String) {
    let cluster = Cluster::start(name, port, settings);
    let url = cluster.create_database(&format!("mfa_{}", name.replace('-', "_")));
    let mut c = Client::connect(&url, NoTls).unwrap();
    json(&mut c, "SELECT mfa.organization_upsert('acme')", &[]);
    for i in 0..members {
        let member = format!("m{i}");
        json(&mut c, "SELECT mfa.member_upsert('acme', $1)", &[&member]);
        json(
            &mut c,
            "SELECT mfa.totp_migrate('acme', $1, $2, ARRAY[$3])",
            &[&member, &SECRET, &RECOVERY],
        );
    }
    (cluster, url)
}

/// Failures are acknowledged to the caller at once and written by the worker right after: a
/// kill -9 loses at most those of the last moment. Here: every failure acknowledged more than a
/// second before the crash is in mfa.events after the restart, and none is invented.
#[test]
fn kill9_during_a_failure_burst_loses_at_most_the_last_second() {
    const ATTACKERS: usize = 4;
    let (cluster, url) = cluster_with_members(
        "ledger-crash",
        28822,
        "mfa.lock_threshold = 1000000\nmfa.member_checks_per_second = 100",
        ATTACKERS,
    );
    let codes = std::sync::Arc::new(wrong_codes(SECRET, 1000));
    let handles: Vec<_> = (0..ATTACKERS)
        .map(|i| {
            let (url, codes) = (url.clone(), codes.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(&url, NoTls).unwrap();
                let mut acknowledged = vec![];
                for code in codes.iter().cycle() {
                    match c.query_one(
                        "SELECT mfa.totp_authenticate('acme', $1, $2)",
                        &[&format!("m{i}"), code],
                    ) {
                        Ok(_) => acknowledged.push(Instant::now()),
                        Err(_) => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let killed_at = Instant::now();
    cluster.kill9();
    let acknowledged: Vec<Instant> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    cluster.start_server();
    let mut c = Client::connect(&url, NoTls).unwrap();
    let durable: i64 = c
        .query_one(
            "SELECT count(*) FROM mfa.events WHERE details->>'outcome' = 'failure'",
            &[],
        )
        .unwrap()
        .get(0);
    let old = acknowledged
        .iter()
        .filter(|t| **t + Duration::from_secs(1) < killed_at)
        .count() as i64;
    let total = acknowledged.len() as i64;
    println!(
        "kill -9 after {total} acknowledged failures: {durable} durable, {} lost; {old} were acknowledged more than 1 s before the crash",
        total - durable.min(total)
    );
    assert!(old > 0, "the burst ran");
    assert!(
        durable >= old,
        "{durable} durable < {old} acknowledged over a second earlier"
    );
    assert!(
        durable <= total + ATTACKERS as i64,
        "{durable} durable > {total} made"
    );
}

/// A flood of failures faster than the worker writes them waits for room in the queue instead of
/// being refused: with the smallest queue (64 records), 8 connections failing as fast as they can
/// get no `attempt_ledger_full`, and every failure they were answered is audited.
#[test]
fn a_flood_waits_for_the_worker_instead_of_being_refused() {
    const CLIENTS: usize = 8;
    let (_cluster, url) = cluster_with_members(
        "ledger-flood",
        28823,
        "mfa.attempt_queue_records = 64\nmfa.lock_threshold = 100\nmfa.member_checks_per_second = 100\nsynchronous_commit = off",
        CLIENTS * 10,
    );
    let mut c = Client::connect(&url, NoTls).unwrap();
    let codes = std::sync::Arc::new(wrong_codes(SECRET, 50));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let (url, codes) = (url.clone(), codes.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(&url, NoTls).unwrap();
                let (mut answered, mut refused) = (0i64, vec![]);
                let until = Instant::now() + Duration::from_secs(3);
                let mut n = 0;
                while Instant::now() < until {
                    let member = format!("m{}", t * 10 + n % 10);
                    match c.query_one(
                        "SELECT mfa.totp_authenticate('acme', $1, $2)",
                        &[&member, &codes[n % codes.len()]],
                    ) {
                        Ok(_) => answered += 1,
                        Err(e) => refused.push(sql_error(&e).1),
                    }
                    n += 1;
                }
                (answered, refused)
            })
        })
        .collect();
    let results: Vec<(i64, Vec<String>)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let answered: i64 = results.iter().map(|r| r.0).sum();
    let refused: Vec<&String> = results.iter().flat_map(|r| &r.1).collect();
    let audited = eventually(
        || -> i64 {
            c.query_one(
                "SELECT count(*) FROM mfa.events WHERE details->>'outcome' = 'failure'",
                &[],
            )
            .unwrap()
            .get(0)
        },
        |n| *n >= answered,
    );
    println!("flood through a 64-record queue: {answered} failures answered, {} refused, {audited} audited", refused.len());
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(audited, answered);
}
