//! `mfa.metrics()`: the counters move by exactly the logins and attempts made (they are the
//! server's, so this file's tests make no other logins than the counting one), the outbox and
//! lock figures of an organization are what it holds, and only mfa_admin and pg_monitor's members
//! may read them.

mod common;
use common::*;
use postgres::Client;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Every sample of `mfa.metrics(per_organization)`, keyed by name and labels.
fn metrics(c: &mut Client, per_organization: bool) -> BTreeMap<(String, String), f64> {
    c.query(
        "SELECT name, labels, value FROM mfa.metrics($1)",
        &[&per_organization],
    )
    .unwrap()
    .iter()
    .map(|r| {
        let labels: Value = r.get(1);
        ((r.get::<_, String>(0), labels.to_string()), r.get(2))
    })
    .collect()
}

fn key(name: &str, labels: Value) -> (String, String) {
    (name.to_string(), labels.to_string())
}

fn attempts(method: &str, outcome: &str) -> (String, String) {
    key(
        "mfa_second_factor_attempts_total",
        json!({"method": method, "outcome": outcome}),
    )
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn counters_move_by_exactly_the_attempts_made() {
    let mut c = connect();
    let org = new_organization(&mut c, "metrics");
    json(
        &mut c,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL')",
        &[&org],
    );
    let secret = "JBSWY3DPEHPK3PXP";
    for member in ["ann", "carl"] {
        json(&mut c, "SELECT mfa.member_upsert($1, $2)", &[&org, &member]);
        json(
            &mut c,
            "SELECT mfa.totp_migrate($1, $2, $3)",
            &[&org, &member, &secret],
        );
    }
    json(&mut c, "SELECT mfa.member_upsert($1, 'bob')", &[&org]);
    // `mfa.metrics()` reads the counters of the node it runs on, and an attempt is counted where
    // it runs: on a cluster, the organization's node (Citus delegates the calls there). Read
    // there (on one node, this node).
    let mut node = connect_to(&node_of(&mut c, &database_url(), &org));
    // Carl's lock below, with a lower threshold: a setting of a role of the test's own, which
    // reaches a delegated call (a session's SET does not).
    let locker = app_role(&mut c, "metrics_lock", &["mfa.lock_threshold = 3"]);
    let mut lock = connect_to(&database_url_as(&locker));
    let before = metrics(&mut node, false);

    // Two logins and a step-up.
    let (_, ann_token) = start_login(&mut c, &org, "ann");
    start_login(&mut c, &org, "carl");
    json(&mut c, "SELECT mfa.step_up_start($1, 'ann')", &[&org]);
    // TOTP: two wrong codes and a right one.
    let wrong = wrong_codes(secret, 5);
    for code in &wrong[..2] {
        let answer = json(
            &mut c,
            "SELECT mfa.totp_authenticate($1, 'ann', $2, $3)",
            &[&org, code, &ann_token],
        );
        assert_eq!(
            answer["error_type"], "unable_to_authenticate_totp",
            "{answer}"
        );
    }
    let answer = json(
        &mut c,
        "SELECT mfa.totp_authenticate($1, 'ann', $2, $3)",
        &[&org, &totp_now(secret), &ann_token],
    );
    assert_eq!(answer["status_code"], 200, "{answer}");
    // A wrong recovery code.
    let answer = json(
        &mut c,
        "SELECT mfa.recovery_codes_recover($1, 'ann', 'aaaa-bbbb-cccc')",
        &[&org],
    );
    assert_eq!(answer["status_code"], 401, "{answer}");
    // SMS: a wrong code, then the right one.
    json(
        &mut c,
        "SELECT mfa.otp_sms_send($1, 'bob', '+14155550199')",
        &[&org],
    );
    let code = sms_code(&mut c, &org);
    let other = if code == "000000" { "111111" } else { "000000" };
    let answer = json(
        &mut c,
        "SELECT mfa.otp_sms_authenticate($1, 'bob', $2)",
        &[&org, &other],
    );
    assert_eq!(answer["status_code"], 401, "{answer}");
    let answer = json(
        &mut c,
        "SELECT mfa.otp_sms_authenticate($1, 'bob', $2)",
        &[&org, &code],
    );
    assert_eq!(answer["status_code"], 200, "{answer}");
    // Carl locks himself out with three wrong codes; the fourth attempt is refused unchecked.
    for code in &wrong[2..] {
        json(
            &mut lock,
            "SELECT mfa.totp_authenticate($1, 'carl', $2)",
            &[&org, code],
        );
    }
    let answer = json(
        &mut lock,
        "SELECT mfa.totp_authenticate($1, 'carl', $2)",
        &[&org, &totp_now(secret)],
    );
    assert_eq!(answer["error_type"], "user_lock_limit_reached", "{answer}");

    let after = metrics(&mut node, false);
    let moved: BTreeMap<(String, String), f64> = after
        .iter()
        .filter(|((name, _), _)| name.ends_with("_total"))
        .filter_map(|(k, v)| {
            let delta = v - before.get(k).copied().unwrap_or(0.0);
            (delta != 0.0).then(|| (k.clone(), delta))
        })
        .collect();
    let expected: BTreeMap<(String, String), f64> = [
        (
            key("mfa_logins_started_total", json!({"kind": "login"})),
            2.0,
        ),
        (
            key("mfa_logins_started_total", json!({"kind": "step_up"})),
            1.0,
        ),
        (attempts("totp", "failed"), 5.0),
        (attempts("totp", "succeeded"), 1.0),
        (attempts("totp", "refused"), 1.0),
        (attempts("recovery_code", "failed"), 1.0),
        (attempts("sms_otp", "failed"), 1.0),
        (attempts("sms_otp", "succeeded"), 1.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(moved, expected);

    // Carl's lock, once the ledger's writer recorded it (milliseconds), in his organization.
    let locked = key("mfa_members_locked", json!({"organization_id": org}));
    wait_until("the lock to be recorded", || {
        metrics(&mut node, true).get(&locked) == Some(&1.0)
    });
    assert!(metrics(&mut node, false)[&key("mfa_members_locked", json!({}))] >= 1.0);
    json(&mut c, "SELECT mfa.member_unlock($1, 'carl')", &[&org]);
    wait_until("the unlock to be recorded", || {
        !metrics(&mut node, true).contains_key(&locked)
    });
}

#[test]
fn the_outbox_figures_are_the_organizations_messages() {
    let mut c = connect();
    let org = new_organization(&mut c, "metrics-outbox");
    for (member, phone) in [
        ("moe", "+14155550181"),
        ("max", "+14155550182"),
        ("mel", "+14155550183"),
    ] {
        json(
            &mut c,
            "SELECT mfa.member_upsert($1, $2, $3)",
            &[&org, &member, &phone],
        );
    }
    let send = |c: &mut Client, member: &str| {
        json(c, "SELECT mfa.otp_sms_send($1, $2)", &[&org, &member]);
    };
    // Moe's message is given up, Max's is held by a claim, Mel's waits.
    send(&mut c, "moe");
    let dead: String = c
        .query_one(
            "SELECT mfa.sms_outbox_fail(id, receipt, 'invalid number', false) ->> 'status'
               FROM mfa.sms_outbox_claim(1, '1 minute', $1)",
            &[&org],
        )
        .unwrap()
        .get(0);
    assert_eq!(dead, "dead");
    send(&mut c, "max");
    assert_eq!(
        c.query(
            "SELECT id FROM mfa.sms_outbox_claim(1, '1 minute', $1)",
            &[&org]
        )
        .unwrap()
        .len(),
        1
    );
    std::thread::sleep(Duration::from_millis(1100));
    send(&mut c, "mel");
    let figures = metrics(&mut c, true);
    let of = |status: &str| {
        figures[&key(
            "mfa_sms_outbox_messages",
            json!({"organization_id": org, "status": status}),
        )]
    };
    assert_eq!((of("pending"), of("claimed"), of("dead")), (1.0, 1.0, 1.0));
    // The oldest message not delivered yet is Max's (Moe's is dead), a second or more ago.
    let age = figures[&key(
        "mfa_sms_outbox_oldest_pending_age_seconds",
        json!({"organization_id": org}),
    )];
    assert!((1.0..60.0).contains(&age), "{age}");
    // The totals hold this organization's messages (and those of tests running meanwhile).
    let totals = metrics(&mut c, false);
    for status in ["pending", "claimed", "dead"] {
        assert!(totals[&key("mfa_sms_outbox_messages", json!({"status": status}))] >= 1.0);
    }
    assert!(totals[&key("mfa_sms_outbox_oldest_pending_age_seconds", json!({}))] >= age);
}

#[test]
fn only_administrators_and_monitoring_read_the_metrics() {
    let mut c = connect();
    let app = unique("metrics_app").replace('-', "_");
    let monitor = unique("metrics_monitor").replace('-', "_");
    let worker = unique("metrics_worker").replace('-', "_");
    c.batch_execute(&format!(
        "CREATE ROLE {app} LOGIN IN ROLE mfa_app; CREATE ROLE {monitor} LOGIN IN ROLE pg_monitor;
         CREATE ROLE {worker} LOGIN IN ROLE mfa_sms_worker"
    ))
    .unwrap();
    for role in [&app, &worker] {
        let refused = connect_to(&database_url_as(role))
            .query("SELECT * FROM mfa.metrics()", &[])
            .unwrap_err();
        assert_eq!(sql_error(&refused).0, "42501", "{role}");
    }
    let mut monitoring = connect_to(&database_url_as(&monitor));
    let figures = metrics(&mut monitoring, true);
    assert_eq!(figures[&key("mfa_preloaded", json!({}))], 1.0);
    // pg_monitor reads the metrics and nothing else of mfa's.
    for call in [
        "SELECT mfa.attempt_ledger_stats()",
        "SELECT * FROM mfa.sms_outbox",
    ] {
        let refused = monitoring.query(call, &[]).unwrap_err();
        assert_eq!(sql_error(&refused).0, "42501", "{call}");
    }
    drop(monitoring);
    c.batch_execute(&format!("DROP ROLE {app}, {monitor}, {worker}"))
        .unwrap();
}
