//! Replicas and failover: a primary with a streaming hot standby of its own (`pg_basebackup -R`,
//! the same key file on both, synchronous replication: a commit is acknowledged once the standby
//! has it), under a load of logins, TOTP codes, wrong codes towards locks, SMS sends and delivery
//! workers claiming and completing. The primary is killed (SIGKILL to the postmaster and every
//! backend) and the standby promoted. Then:
//! - no lock that was committed is lost;
//! - failures counted by the ledger but not yet written by its worker are lost at most as many as
//!   were in flight (measured and printed; every failure acknowledged a second before the kill is
//!   durable), and failures after the promotion still lock at the threshold;
//! - no outbox message is lost: every committed send is delivered or dead (at least once), no
//!   acknowledged completion is handed out again;
//! - no consumed token or used TOTP code works again; a remembered device still rotates.
//!
//! Before the promotion, on the standby (under the load, and after the kill): the read-only
//! calls work and the writing ones fail with SQLSTATE 25006, the standby never crashes. A standby
//! without the key file: with the setting naming a missing file it does not start (saying why);
//! without the setting it refuses what needs the key with `encryption_key_mismatch`.
//!
//! Runs on the first PostgreSQL version of a `make test` run (MFA_LONG_TESTS, as test.sh sets it).

mod common;
use common::*;
use postgres::Client;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PRIMARY_PORT: u16 = 29902;
const STANDBY_PORT: u16 = 29903;
const KEYLESS_PORT: u16 = 29904;
const ORG: &str = "failover";
const PHONE_MEMBERS: usize = 20;
const PLAIN_MEMBERS: usize = 10;
const TOTP_MEMBERS: usize = 5;
const ATTACKED: usize = 120;
const THRESHOLD: i64 = 10;
const SECRET_DEVICE: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXZ";
const RECOVERY: &str = "abcd-efgh-ijkl";

fn totp_secret(i: usize) -> String {
    format!("JBSWY3DPEHPK3PXPJBSWY3DPEHPK{:04}", 2000 + i)
        .replace('0', "A")
        .replace('1', "B")
        .replace('8', "C")
        .replace('9', "D")
}

fn random_key() -> String {
    (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

#[derive(Default)]
struct Acknowledged {
    completed: BTreeSet<i64>,
    sends: i64,
    consumed_tokens: Vec<(String, String)>,
    used_codes: Vec<(String, String)>,
    /// Wrong codes answered 401, per attacked member, with when the answer came.
    failures: BTreeMap<String, Vec<Instant>>,
    /// Members whose durable lock a monitor saw committed on the primary.
    committed_locks: BTreeSet<String>,
}

fn try_connect(url: &str) -> Option<Client> {
    Client::connect(url, postgres::NoTls).ok()
}

fn worker_loop(url: String, stop: Arc<AtomicBool>, acks: Arc<Mutex<Acknowledged>>) {
    let Some(mut c) = try_connect(&url) else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        let Ok(rows) = c.query(
            "SELECT id, receipt FROM mfa.sms_outbox_claim(5, '1 second')",
            &[],
        ) else {
            return;
        };
        for row in rows {
            let id: i64 = row.get(0);
            let receipt: String = row.get(1);
            if c.query_one(
                "SELECT mfa.sms_outbox_complete($1, $2, 'SM-failover')",
                &[&id, &receipt],
            )
            .is_err()
            {
                return;
            }
            acks.lock().unwrap().completed.insert(id);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sender_loop(url: String, stop: Arc<AtomicBool>, acks: Arc<Mutex<Acknowledged>>) {
    let Some(mut c) = try_connect(&url) else {
        return;
    };
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let member = format!("p{}", i % PHONE_MEMBERS);
        if c.query_one("SELECT mfa.otp_sms_send($1, $2)", &[&ORG, &member])
            .is_err()
        {
            return;
        }
        acks.lock().unwrap().sends += 1;
    }
}

fn login_loop(url: String, stop: Arc<AtomicBool>, acks: Arc<Mutex<Acknowledged>>) {
    let Some(mut c) = try_connect(&url) else {
        return;
    };
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let member = format!("u{}", i % PLAIN_MEMBERS);
        let Ok(row) = c.query_one(
            "SELECT mfa.primary_authenticate($1, $2) ->> 'intermediate_session_token'",
            &[&ORG, &member],
        ) else {
            return;
        };
        let token: String = row.get(0);
        if c.query_one(
            "SELECT mfa.check_session_policy($1, $2, $3)",
            &[&ORG, &member, &token],
        )
        .is_err()
        {
            return;
        }
        acks.lock().unwrap().consumed_tokens.push((member, token));
        let t = i % TOTP_MEMBERS;
        let code = totp_now(&totp_secret(t));
        let Ok(row) = c.query_one(
            "SELECT mfa.totp_authenticate($1, $2, $3) ->> 'status_code'",
            &[&ORG, &format!("t{t}"), &code],
        ) else {
            return;
        };
        if row.get::<_, Option<String>>(0).as_deref() == Some("200") {
            acks.lock()
                .unwrap()
                .used_codes
                .push((format!("t{t}"), code));
        }
    }
}

/// Wrong codes for the attacked members a`from`.. one after the other, each until it is locked,
/// so that locks are written all along and a member is mid-way at the kill.
fn attacker_loop(url: String, from: usize, stop: Arc<AtomicBool>, acks: Arc<Mutex<Acknowledged>>) {
    let Some(mut c) = try_connect(&url) else {
        return;
    };
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) && i < ATTACKED / 2 {
        let member = format!("a{}", from + i);
        let wrong = wrong_codes(&totp_secret(from + i), 1)[0].clone();
        let Ok(row) = c.query_one(
            "SELECT mfa.totp_authenticate($1, $2, $3) ->> 'status_code'",
            &[&ORG, &member, &wrong],
        ) else {
            return;
        };
        match row.get::<_, Option<String>>(0).as_deref() {
            Some("401") => acks
                .lock()
                .unwrap()
                .failures
                .entry(member)
                .or_default()
                .push(Instant::now()),
            _ => i += 1,
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls the primary's durable locks.
fn lock_monitor(url: String, stop: Arc<AtomicBool>, acks: Arc<Mutex<Acknowledged>>) {
    let Some(mut c) = try_connect(&url) else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        let Ok(rows) = c.query(
            "SELECT member_id FROM mfa.member_lockouts WHERE organization_id = $1 AND lock_expires_at > now()",
            &[&ORG],
        ) else {
            return;
        };
        let mut acks = acks.lock().unwrap();
        for row in rows {
            acks.committed_locks.insert(row.get(0));
        }
        drop(acks);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Durable failures of a member: the worker's failure events (not refusals of a locked member).
fn durable_failures(c: &mut Client, member: &str) -> i64 {
    c.query_one(
        "SELECT count(*) FROM mfa.events WHERE organization_id = $1 AND member_id = $2
            AND details->>'outcome' = 'failure'
            AND details->>'error_type' IS DISTINCT FROM 'user_lock_limit_reached'
            AND details->>'error_type' IS DISTINCT FROM 'too_many_requests'",
        &[&ORG, &member],
    )
    .unwrap()
    .get(0)
}

fn is_locked(c: &mut Client, member: &str) -> bool {
    json(c, "SELECT mfa.member_get($1, $2)", &[&ORG, &member])["is_locked"] == true
}

/// A login of dev presenting `device_token`: its new token when honoured.
fn use_device(c: &mut Client, device_token: &str) -> Option<String> {
    let login = json(
        c,
        "SELECT mfa.primary_authenticate($1, 'dev', device_token => $2, device_fingerprint => 'fp')",
        &[&ORG, &device_token],
    );
    login["device_token"].as_str().map(String::from)
}

/// Each writing call on a standby, with the SQLSTATE it raised ("ok" when it did not raise).
fn writing_calls_on_standby(s: &mut Client, token: &str) -> Vec<(String, String)> {
    let wrong = wrong_codes(&totp_secret(2), 1)[0].clone();
    let right = totp_now(&totp_secret(1));
    let calls: Vec<(&str, String)> = vec![
        ("primary_authenticate", format!("SELECT mfa.primary_authenticate('{ORG}', 'u1')")),
        ("totp_authenticate (right code)", format!("SELECT mfa.totp_authenticate('{ORG}', 't1', '{right}')")),
        ("totp_authenticate (wrong code)", format!("SELECT mfa.totp_authenticate('{ORG}', 't2', '{wrong}')")),
        ("recovery_codes_recover", format!("SELECT mfa.recovery_codes_recover('{ORG}', 'dev', 'zzzz-zzzz-zzzz')")),
        ("otp_sms_send", format!("SELECT mfa.otp_sms_send('{ORG}', 'p1')")),
        ("otp_sms_authenticate", format!("SELECT mfa.otp_sms_authenticate('{ORG}', 'p1', '123456')")),
        ("check_session_policy", format!("SELECT mfa.check_session_policy('{ORG}', 'u1', '{token}')")),
        ("step_up_start", format!("SELECT mfa.step_up_start('{ORG}', 'u1')")),
        ("sms_outbox_claim", "SELECT * FROM mfa.sms_outbox_claim(10, '1 minute')".into()),
        ("member_upsert", format!("SELECT mfa.member_upsert('{ORG}', 'newcomer')")),
        ("member_unlock", format!("SELECT mfa.member_unlock('{ORG}', 'a0')")),
        ("organization_upsert", "SELECT mfa.organization_upsert('another')".into()),
        ("remembered_device_revoke", format!("SELECT mfa.remembered_device_revoke('{ORG}', 'dev')")),
        ("session INSERT", format!(
            "INSERT INTO public.sessions (organization_id, member_id, intermediate_session_token) VALUES ('{ORG}', 'u1', '{token}')"
        )),
    ];
    calls
        .into_iter()
        .map(|(name, sql)| {
            let outcome = match s.batch_execute(&sql) {
                Ok(()) => "ok".to_string(),
                Err(e) => {
                    let (state, message) = sql_error(&e);
                    if state == "25006" {
                        state
                    } else {
                        format!("{state} {message}")
                    }
                }
            };
            (name.to_string(), outcome)
        })
        .collect()
}

/// A call: its name, its statement and what its answer must satisfy.
type Call = (&'static str, &'static str, fn(&serde_json::Value) -> bool);

/// The read-only calls on the standby, each with what it gave ("ok" when it worked as expected).
fn reading_calls_on_standby(s: &mut Client) -> Vec<(String, String)> {
    let calls: [Call; 5] = [
        (
            "member_get",
            "SELECT mfa.member_get('failover', 'u1')",
            |v| v["member_id"] == "u1",
        ),
        (
            "organization_get",
            "SELECT mfa.organization_get('failover')",
            |v| v["organization_id"] == ORG,
        ),
        (
            "session_aal",
            "SELECT to_jsonb(mfa.session_aal(organization_id, member_id, authentication_factors))
               FROM public.sessions WHERE member_id = 't0'",
            |v| v == "aal2",
        ),
        (
            "last_mfa_at",
            "SELECT to_jsonb(mfa.last_mfa_at(organization_id, member_id, authentication_factors))
               FROM public.sessions WHERE member_id = 't0'",
            |v| v.is_string(),
        ),
        (
            "remembered_devices_get",
            "SELECT mfa.remembered_devices_get('failover', 'dev')",
            |v| v["remembered_devices"].as_array().map(Vec::len) == Some(1),
        ),
    ];
    calls
        .into_iter()
        .map(|(name, sql, expected)| {
            let outcome = match s.query_one(sql, &[]) {
                Ok(row) => {
                    let v: serde_json::Value = row.get(0);
                    if expected(&v) {
                        "ok".to_string()
                    } else {
                        format!("answered {v}")
                    }
                }
                Err(e) => {
                    let (state, message) = sql_error(&e);
                    format!("{state} {message}")
                }
            };
            (name.to_string(), outcome)
        })
        .collect()
}

fn assert_no_crash(log: &str, what: &str) {
    for sign in [
        "PANIC",
        "terminated by signal",
        "was terminated",
        "server process",
    ] {
        assert!(
            !log.contains(sign),
            "{what}: the server log shows {sign:?}:\n{log}"
        );
    }
}

fn base_backup(primary: &Cluster, name: &str, port: u16) -> Cluster {
    let standby = Cluster::base_backup(primary, name, port, &["-R"]);
    standby.append_settings(&format!("port = {port}\nhot_standby = on"));
    standby
}

#[test]
fn failover_to_a_promoted_standby_loses_no_lock_message_or_token() {
    if std::env::var("MFA_LONG_TESTS").map_or(true, |v| v.is_empty()) {
        println!("failover: skipped (runs on the first version of make test: MFA_LONG_TESTS=1)");
        return;
    }
    let started = Instant::now();
    let keys = format!("{}\n", random_key());
    let primary = Cluster::start_with_key_file(
        "failover-primary",
        PRIMARY_PORT,
        "wal_level = replica\nmax_wal_senders = 6\nwal_keep_size = '256MB'\nsynchronous_commit = on",
        &keys,
    );
    let url = primary.create_database("mfa_failover");
    let mut c = connect_to(&url);
    c.batch_execute(
        "ALTER DATABASE mfa_failover SET mfa.sms_min_interval_seconds = 0;
         ALTER DATABASE mfa_failover SET mfa.sms_sends_per_number_per_hour = 1000;
         ALTER DATABASE mfa_failover SET mfa.sms_sends_per_member_per_hour = 1000;
         ALTER DATABASE mfa_failover SET mfa.sms_sends_per_prefix_per_hour = 1000000;
         ALTER DATABASE mfa_failover SET mfa.member_checks_per_second = 100;",
    )
    .unwrap();
    json(
        &mut c,
        "SELECT mfa.organization_upsert($1, 'OPTIONAL', remember_device_days => 30)",
        &[&ORG],
    );
    for i in 0..PHONE_MEMBERS {
        json(
            &mut c,
            "SELECT mfa.member_upsert($1, $2, $3)",
            &[&ORG, &format!("p{i}"), &format!("+1415555{:04}", 3000 + i)],
        );
    }
    for i in 0..PLAIN_MEMBERS {
        json(
            &mut c,
            "SELECT mfa.member_upsert($1, $2)",
            &[&ORG, &format!("u{i}")],
        );
    }
    for (prefix, n) in [("t", TOTP_MEMBERS), ("a", ATTACKED)] {
        for i in 0..n {
            let member = format!("{prefix}{i}");
            json(&mut c, "SELECT mfa.member_upsert($1, $2)", &[&ORG, &member]);
            json(
                &mut c,
                "SELECT mfa.totp_migrate($1, $2, $3)",
                &[&ORG, &member, &totp_secret(i)],
            );
        }
    }
    // A guarded sessions table with a sealed session of t0.
    c.batch_execute(
        "CREATE TABLE public.sessions (id serial PRIMARY KEY, organization_id text NOT NULL,
             member_id text NOT NULL, intermediate_session_token text, authentication_factors jsonb)",
    )
    .unwrap();
    c.execute("SELECT mfa.session_table_guard('public.sessions')", &[])
        .unwrap();
    let token = start_login(&mut c, ORG, "t0").1;
    let used = totp_now(&totp_secret(0));
    let totp = json(
        &mut c,
        "SELECT mfa.totp_authenticate($1, 't0', $2, $3)",
        &[&ORG, &used, &token],
    );
    assert_eq!(totp["status_code"], 200, "{totp}");
    c.execute(
        "INSERT INTO public.sessions (organization_id, member_id, intermediate_session_token) VALUES ($1, 't0', $2)",
        &[&ORG, &token],
    )
    .unwrap();
    // dev remembers a device (a recovery code proves the login), which rotates twice.
    json(&mut c, "SELECT mfa.member_upsert($1, 'dev')", &[&ORG]);
    json(
        &mut c,
        "SELECT mfa.totp_migrate($1, 'dev', $2, ARRAY[$3])",
        &[&ORG, &SECRET_DEVICE, &RECOVERY],
    );
    let login = start_login(&mut c, ORG, "dev").1;
    let recovered = json(
        &mut c,
        "SELECT mfa.recovery_codes_recover($1, 'dev', $2, $3)",
        &[&ORG, &RECOVERY, &login],
    );
    assert_eq!(recovered["status_code"], 200, "{recovered}");
    let mut device = json(
        &mut c,
        "SELECT mfa.remembered_device_create($1, 'dev', $2, 'fp')",
        &[&ORG, &login],
    )["device_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut rotated_away = Vec::new();
    for _ in 0..2 {
        let next = use_device(&mut c, &device).expect("the device is honoured");
        rotated_away.push(std::mem::replace(&mut device, next));
    }
    // Messages queued before the load.
    for i in 0..50 {
        json(
            &mut c,
            "SELECT mfa.otp_sms_send($1, $2)",
            &[&ORG, &format!("p{}", i % PHONE_MEMBERS)],
        );
    }

    // The standby, then synchronous replication (set after the base backup: the promoted
    // standby must not wait for a standby of its own).
    let standby = base_backup(&primary, "failover-standby", STANDBY_PORT);
    standby.append_settings(&format!(
        "mfa.encryption_key_file = '{}'",
        standby.key_file()
    ));
    standby.start_server();
    c.batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while c
        .query_opt(
            "SELECT FROM pg_stat_replication WHERE sync_state = 'sync' AND state = 'streaming'",
            &[],
        )
        .unwrap()
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the standby never streamed synchronously"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let standby_url = standby.url("mfa_failover");
    let committed_before: BTreeSet<i64> = c
        .query("SELECT message_id FROM mfa.sms_outbox", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(c);

    // The load.
    let acks = Arc::new(Mutex::new(Acknowledged::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for _ in 0..2 {
        let (url, stop, acks) = (url.clone(), stop.clone(), acks.clone());
        threads.push(std::thread::spawn(move || worker_loop(url, stop, acks)));
    }
    {
        let (url, stop, acks) = (url.clone(), stop.clone(), acks.clone());
        threads.push(std::thread::spawn(move || sender_loop(url, stop, acks)));
    }
    {
        let (url, stop, acks) = (url.clone(), stop.clone(), acks.clone());
        threads.push(std::thread::spawn(move || login_loop(url, stop, acks)));
    }
    for from in [0, ATTACKED / 2] {
        let (url, stop, acks) = (url.clone(), stop.clone(), acks.clone());
        threads.push(std::thread::spawn(move || {
            attacker_loop(url, from, stop, acks)
        }));
    }
    {
        let (url, stop, acks) = (url.clone(), stop.clone(), acks.clone());
        threads.push(std::thread::spawn(move || lock_monitor(url, stop, acks)));
    }
    // The standby under load: reads work, writes fail with 25006.
    std::thread::sleep(Duration::from_millis(1500));
    let mut s = connect_to(&standby_url);
    let mut reads = reading_calls_on_standby(&mut s);
    let under_load = writing_calls_on_standby(&mut s, &token);
    std::thread::sleep(Duration::from_millis(1500));

    let killed_at = Instant::now();
    primary.kill9();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    // After the kill, before the promotion.
    let mut s = connect_to(&standby_url);
    reads.extend(reading_calls_on_standby(&mut s));
    let after_kill = writing_calls_on_standby(&mut s, &token);
    let in_recovery: bool = s
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get(0);
    assert!(in_recovery);
    drop(s);
    assert_no_crash(&standby.log(), "the standby before its promotion");
    for (name, outcome) in reads.iter().chain(&under_load).chain(&after_kill) {
        println!("failover: on the standby, {name}: {outcome}");
    }
    // Asserted at the end, so that one run shows the failover's figures too.
    let wrong_on_standby: Vec<_> = reads
        .iter()
        .filter(|(_, outcome)| outcome != "ok")
        .chain(
            under_load
                .iter()
                .chain(&after_kill)
                .filter(|(_, outcome)| outcome != "25006"),
        )
        .cloned()
        .collect();

    // The promotion.
    let promote_started = Instant::now();
    let out = standby.run("pg_ctl", &["-D", &standby.dir, "-w", "-t", "60", "promote"]);
    assert!(
        out.status.success(),
        "pg_ctl promote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = connect_to(&standby_url);
    let promoted_in = promote_started.elapsed();
    let acks = Arc::try_unwrap(acks).ok().unwrap().into_inner().unwrap();

    // No committed lock lost.
    let locks_before = acks.committed_locks.len();
    for member in &acks.committed_locks {
        assert!(
            is_locked(&mut c, member),
            "{member}'s committed lock was lost"
        );
        let code = totp_now(&totp_secret(member[1..].parse().unwrap()));
        let again = json(
            &mut c,
            "SELECT mfa.totp_authenticate($1, $2, $3)",
            &[&ORG, member, &code],
        );
        assert_eq!(again["status_code"], 429, "{member}: {again}");
    }
    let locks_after: i64 = c
        .query_one(
            "SELECT count(*) FROM mfa.member_lockouts WHERE organization_id = $1 AND lock_expires_at > now()",
            &[&ORG],
        )
        .unwrap()
        .get(0);
    assert!(locks_after >= locks_before as i64);
    // Failures: acknowledged vs durable, per member; those acknowledged a second before the kill
    // are all durable.
    let (mut acknowledged, mut durable, mut lost, mut lost_old) = (0, 0, 0, 0);
    let mut extra_allowed = 0;
    for (member, times) in &acks.failures {
        let d = durable_failures(&mut c, member);
        let a = times.len() as i64;
        acknowledged += a;
        durable += d.min(a);
        lost += (a - d).max(0);
        let old = times
            .iter()
            .filter(|t| killed_at.duration_since(**t) > Duration::from_secs(1))
            .count() as i64;
        lost_old += (old - d).max(0);
        // Failures after the promotion still lock: from the durable count, at most the
        // threshold's rest is checked.
        if !is_locked(&mut c, member) {
            let wrong = wrong_codes(&totp_secret(member[1..].parse().unwrap()), 1)[0].clone();
            let mut checked = 0;
            loop {
                let answer = json(
                    &mut c,
                    "SELECT mfa.totp_authenticate($1, $2, $3)",
                    &[&ORG, member, &wrong],
                );
                if answer["status_code"] == 401 {
                    checked += 1;
                    assert!(
                        checked <= THRESHOLD,
                        "{member}: {checked} failures after the promotion and no lock"
                    );
                } else {
                    assert_eq!(answer["error_type"], "user_lock_limit_reached", "{answer}");
                    break;
                }
            }
            assert!(
                checked <= THRESHOLD - d.min(THRESHOLD),
                "{member}: {d} durable failures, then {checked} more checked before the lock"
            );
            // Guesses beyond the threshold that the failover gave this attacker.
            extra_allowed += (a + checked - THRESHOLD).max(0);
            assert!(is_locked(&mut c, member));
        }
    }
    assert_eq!(
        lost_old, 0,
        "failures acknowledged more than a second before the kill were lost"
    );
    assert!(
        extra_allowed <= lost,
        "{extra_allowed} guesses beyond the threshold, {lost} failures lost"
    );

    // The outbox: nothing lost, everything delivered (or dead) once the claims expire; no
    // acknowledged completion handed out again.
    let present: BTreeSet<i64> = c
        .query("SELECT message_id FROM mfa.sms_outbox", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        committed_before.is_subset(&present),
        "a committed message was lost"
    );
    let queued_since = (present.len() - committed_before.len()) as i64;
    assert!(
        queued_since >= acks.sends,
        "{} acknowledged sends, {queued_since} new messages",
        acks.sends
    );
    let sent: BTreeSet<i64> = c
        .query(
            "SELECT message_id FROM mfa.sms_outbox WHERE status = 'sent'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        acks.completed.is_subset(&sent),
        "an acknowledged completion was lost"
    );
    let mut delivered_after = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = c
            .query(
                "SELECT id, receipt FROM mfa.sms_outbox_claim(1000, '1 minute')",
                &[],
            )
            .unwrap();
        for row in &rows {
            let (id, receipt): (i64, String) = (row.get(0), row.get(1));
            assert!(
                !acks.completed.contains(&id),
                "message {id} handed out again"
            );
            c.query_one(
                "SELECT mfa.sms_outbox_complete($1, $2, 'SM-after-failover')",
                &[&id, &receipt],
            )
            .unwrap();
            delivered_after += 1;
        }
        let pending: i64 = c
            .query_one(
                "SELECT count(*) FROM mfa.sms_outbox WHERE status = 'pending'",
                &[],
            )
            .unwrap()
            .get(0);
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} messages never delivered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (total, finished): (i64, i64) = c
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE status IN ('sent', 'dead', 'expired')) FROM mfa.sms_outbox",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(total, finished);

    // No replay.
    for (member, token) in &acks.consumed_tokens {
        let again = c
            .query_one(
                "SELECT mfa.check_session_policy($1, $2, $3)",
                &[&ORG, member, token],
            )
            .unwrap_err();
        assert_eq!(sql_error(&again).0, "28000", "a consumed token works again");
    }
    for (member, code) in &acks.used_codes {
        let again = json(
            &mut c,
            "SELECT mfa.totp_authenticate($1, $2, $3)",
            &[&ORG, member, code],
        );
        assert_ne!(again["status_code"], 200, "a used TOTP code works again");
    }
    let again = c
        .execute(
            "INSERT INTO public.sessions (organization_id, member_id, intermediate_session_token) VALUES ($1, 't0', $2)",
            &[&ORG, &token],
        )
        .unwrap_err();
    assert_eq!(sql_error(&again).0, "28000");
    // The remembered device still rotates; the tokens it rotated away are copies.
    let next = use_device(&mut c, &device).expect("the device is honoured after the failover");
    let newer = use_device(&mut c, &next).expect("and rotates");
    assert_ne!(newer, next);
    assert!(use_device(&mut c, &rotated_away[0]).is_none());

    let acked_completions = acks.completed.len();
    println!(
        "failover: promoted in {:.1} s; messages: {} committed ({} acknowledged sends during the load), {} delivered before the kill, {} delivered after the promotion, 0 lost; locks: {} committed before the kill, {} after the promotion; failures: {} acknowledged, {} durable, {} lost (all acknowledged within the last second), {} more checks than the threshold after the promotion; {} consumed tokens and {} used TOTP codes refused again; the whole test {:.1} s",
        promoted_in.as_secs_f64(),
        total,
        acks.sends,
        acked_completions,
        delivered_after,
        locks_before,
        locks_after,
        acknowledged,
        durable,
        lost,
        extra_allowed,
        acks.consumed_tokens.len(),
        acks.used_codes.len(),
        started.elapsed().as_secs_f64()
    );
    // A member with an authenticator, for the node without the key below.
    json(&mut c, "SELECT mfa.member_upsert($1, 'k0')", &[&ORG]);
    json(
        &mut c,
        "SELECT mfa.totp_migrate($1, 'k0', $2)",
        &[&ORG, &SECRET_DEVICE],
    );
    drop(c);

    // A standby without the key file. Setting naming a missing file: it does not start.
    let keyless = base_backup(&standby, "failover-keyless", KEYLESS_PORT);
    let _ = std::fs::remove_file(keyless.key_file());
    keyless.append_settings(&format!(
        "mfa.encryption_key_file = '{}'",
        keyless.key_file()
    ));
    let out = keyless.run(
        "pg_ctl",
        &[
            "-D",
            &keyless.dir,
            "-l",
            &format!("{}/server.log", keyless.dir),
            "-w",
            "-t",
            "30",
            "start",
        ],
    );
    assert!(
        !out.status.success(),
        "a standby with a missing key file started"
    );
    let log = keyless.log();
    assert!(
        log.contains("mfa.encryption_key_file"),
        "the log says why the standby did not start:\n{log}"
    );
    let refusal = log
        .lines()
        .find(|l| l.contains("mfa.encryption_key_file"))
        .unwrap_or_default()
        .to_string();
    // Without the setting: it starts, and refuses what needs the key.
    keyless.append_settings("mfa.encryption_key_file = ''");
    keyless.start_server();
    let mut k = connect_to(&keyless.url("mfa_failover"));
    let aal = k.query_one(
        "SELECT mfa.session_aal(organization_id, member_id, authentication_factors) FROM public.sessions WHERE member_id = 't0'",
        &[],
    );
    let aal = match aal {
        Ok(row) => format!("returned {}", row.get::<_, String>(0)),
        Err(e) => format!("raised {:?}", sql_error(&e)),
    };
    println!("failover: a standby without the key file: missing file: {refusal}; no setting: session_aal {aal}");
    let out = keyless.run("pg_ctl", &["-D", &keyless.dir, "-w", "-t", "60", "promote"]);
    assert!(out.status.success());
    let mut k = connect_to(&keyless.url("mfa_failover"));
    // Authentication needs the key: refused with a clear error, never answered as a wrong code
    // (which would count a failure towards a lock) nor let through.
    let mut refusals = Vec::new();
    for (what, sql) in [
        (
            "totp_authenticate",
            format!(
                "SELECT mfa.totp_authenticate('{ORG}', 'k0', '{}')",
                totp_now(SECRET_DEVICE)
            ),
        ),
        (
            "otp_sms_send",
            format!("SELECT mfa.otp_sms_send('{ORG}', 'p3')"),
        ),
        (
            "primary_authenticate",
            format!("SELECT mfa.primary_authenticate('{ORG}', 'u3')"),
        ),
    ] {
        let outcome = match k.query_one(&sql, &[]) {
            Ok(row) => format!("answered {}", row.get::<_, serde_json::Value>(0)),
            Err(e) => {
                let (state, message) = sql_error(&e);
                format!("{state} {message}")
            }
        };
        println!("failover: promoted without the key file, {what}: {outcome}");
        refusals.push((what, outcome));
    }
    let k0 = json(&mut k, "SELECT mfa.member_get($1, 'k0')", &[&ORG]);
    println!(
        "failover: promoted without the key file, k0 afterwards: locked {}",
        k0["is_locked"]
    );
    let totp = &refusals[0].1;
    assert!(
        totp.contains("encryption_key_mismatch"),
        "a TOTP login on a node without the key: {totp}"
    );
    assert!(
        !aal.starts_with("returned aal2"),
        "a seal verified without the key: {aal}"
    );
    assert!(
        wrong_on_standby.is_empty(),
        "on the standby, read-only calls that did not work and writing calls that did not fail with 25006: {wrong_on_standby:#?}"
    );
    assert_no_crash(&keyless.log(), "the key-less standby");
}
