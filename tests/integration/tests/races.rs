//! Races between real connections: one code, one token, one message — exactly one winner.

mod common;
use common::*;
use postgres::{Client, NoTls};

const RACERS: usize = 8;

/// `RACERS` connections present one secret for ann of `org` at once through `function`
/// (`mfa.<function>($1 organization, 'ann', $2 secret)`); exactly one may succeed. The answers.
fn present_at_once(function: &str, org: &str, secret: &str) -> Vec<serde_json::Value> {
    let sql = format!("SELECT mfa.{function}($1, 'ann', $2)");
    let (org, secret) = (org.to_string(), secret.to_string());
    let results = race(RACERS, move |client, _| {
        json(client, &sql, &[&org, &secret])
    });
    assert_eq!(
        results.iter().filter(|r| r["status_code"] == 200).count(),
        1,
        "{results:?}"
    );
    results
}

#[test]
fn one_totp_code_presented_at_once_succeeds_once() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "race-totp", "ann");
    let created = json(&mut c, "SELECT mfa.totp_create($1, 'ann')", &[&org]);
    let secret = created["secret"].as_str().unwrap().to_string();
    // Activate with one code, then race on the next step's code.
    let first = json(
        &mut c,
        "SELECT mfa.totp_authenticate($1, 'ann', $2)",
        &[&org, &totp_now(&secret)],
    );
    assert_eq!(first["status_code"], 200, "{first}");
    std::thread::sleep(std::time::Duration::from_secs(
        31 - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 30,
    ));
    let code = totp_now(&secret);
    let results = present_at_once("totp_authenticate", &org, &code);
    // The others saw the code used, or were throttled (more checks at once than
    // mfa.member_checks_per_second) without being checked.
    assert!(
        results.iter().filter(|r| r["status_code"] != 200).all(|r| {
            r["error_type"] == "totp_code_already_authenticated"
                || r["error_type"] == "too_many_requests"
        }),
        "{results:?}"
    );
}

#[test]
fn one_sms_code_presented_at_once_succeeds_once() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "race-sms", "ann");
    json(
        &mut c,
        "SELECT mfa.otp_sms_send($1, 'ann', '+14155550101')",
        &[&org],
    );
    let code = sms_code(&mut c, &org);
    present_at_once("otp_sms_authenticate", &org, &code);
}

#[test]
fn one_token_creates_one_session() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "race-session", "ann");
    let table = format!("sessions_{}", org.replace('-', "_"));
    c.batch_execute(&format!(
        "CREATE TABLE {table} (id serial PRIMARY KEY, org text, member text, token text);
         CREATE TRIGGER gate BEFORE INSERT ON {table} FOR EACH ROW
         EXECUTE FUNCTION mfa.enforce_session_policy('org', 'member', 'token')"
    ))
    .unwrap();
    let (_, token) = start_login(&mut c, &org, "ann");
    let (org2, table2) = (org.clone(), table.clone());
    let results = race(RACERS, move |client, _| {
        client
            .execute(
                &format!("INSERT INTO {table2} (org, member, token) VALUES ($1, 'ann', $2)"),
                &[&org2, &token],
            )
            .map_err(|e| {
                e.as_db_error()
                    .map(|d| d.code().code().to_string())
                    .unwrap_or_default()
            })
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|code| code == "28000"),
        "{results:?}"
    );
    let rows: i64 = c
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    c.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

#[test]
fn one_recovery_code_presented_at_once_succeeds_once() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "race-recovery", "ann");
    let created = json(&mut c, "SELECT mfa.totp_create($1, 'ann')", &[&org]);
    let secret = created["secret"].as_str().unwrap().to_string();
    let recovery = created["recovery_codes"][0].as_str().unwrap().to_string();
    let active = json(
        &mut c,
        "SELECT mfa.totp_authenticate($1, 'ann', $2)",
        &[&org, &totp_now(&secret)],
    );
    assert_eq!(active["status_code"], 200, "{active}");
    present_at_once("recovery_codes_recover", &org, &recovery);
    let left = json(&mut c, "SELECT mfa.recovery_codes_get($1, 'ann')", &[&org]);
    assert_eq!(left["recovery_codes_remaining"], 9, "{left}");
}

/// Many sends to one member at once: no deadlock, each either queues a message or is refused by
/// the rate limit, and exactly the newest queued code works.
#[test]
fn concurrent_sends_to_one_member_leave_one_live_code() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "race-send", "ann");
    json(
        &mut c,
        "SELECT mfa.member_upsert($1, 'ann', '+14155550199')",
        &[&org],
    );
    let org2 = org.clone();
    let results = race(RACERS, move |client, _| {
        client
            .query_one("SELECT mfa.otp_sms_send($1, 'ann')", &[&org2])
            .map(|_| ())
            .map_err(|e| sql_error(&e).0)
    });
    assert!(
        results
            .iter()
            .all(|r| r.is_ok() || r.as_ref().unwrap_err() == "53400"),
        "{results:?}"
    );
    let sent = results.iter().filter(|r| r.is_ok()).count() as i64;
    let queued = queued_messages(&mut c, &org);
    assert_eq!(queued, sent);
    // Every queued message carries a code, and only the newest one authenticates.
    let mut codes: Vec<(i64, String)> = c
        .query(
            "SELECT id, substring(body from '[0-9]{6}') FROM mfa.sms_outbox_claim(1000, '1 hour', $1)",
            &[&org],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    codes.sort();
    let (newest, older) = codes.split_last().unwrap();
    // Up to RACERS - 1 wrong codes in a burst: above the throttle and the live code's cap
    // (tests/attempt_ledger.rs tests those); here only which code works matters.
    // Set for a role of the test's own: a session's SET does not reach a call delegated to
    // another node of a cluster.
    let role = app_role(
        &mut c,
        "race_sends",
        &[
            "mfa.member_checks_per_second = 100",
            "mfa.sms_code_max_attempts = 100",
        ],
    );
    let mut app = Client::connect(&database_url_as(&role), NoTls).unwrap();
    for (_, code) in older {
        if code != &newest.1 {
            let r = json(
                &mut app,
                "SELECT mfa.otp_sms_authenticate($1, 'ann', $2)",
                &[&org, code],
            );
            assert_eq!(r["status_code"], 401, "a superseded code worked: {r}");
        }
    }
    let r = json(
        &mut app,
        "SELECT mfa.otp_sms_authenticate($1, 'ann', $2)",
        &[&org, &newest.1],
    );
    assert_eq!(r["status_code"], 200, "{r}");
}

/// The allowlist changes while sends run (in a database of its own: the allowlist is
/// project-wide). A send either queues its message under a list that allowed it or is refused;
/// no deadlock, and never a message to a country outside the list in force when it committed.
#[test]
fn allowlist_changes_while_sending() {
    let url = fresh_database("mfa_allowlist_race");
    let mut c = connect_to(&url);
    let org = new_organization(&mut c, "race-allow");
    for i in 0..RACERS {
        json(
            &mut c,
            "SELECT mfa.member_upsert($1, $2, $3)",
            &[&org, &format!("m{i}"), &format!("+1416555{:04}", 100 + i)],
        );
    }
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(RACERS + 1));
    let toggler = {
        let (url, barrier) = (url.clone(), barrier.clone());
        std::thread::spawn(move || {
            let mut t = connect_to(&url);
            barrier.wait();
            for round in 0..40 {
                let list: Vec<&str> = if round % 2 == 0 {
                    vec!["US"]
                } else {
                    vec!["US", "CA"]
                };
                t.query_one("SELECT mfa.country_code_allowlist_set($1)", &[&list])
                    .unwrap();
            }
        })
    };
    let senders: Vec<_> = (0..RACERS)
        .map(|i| {
            let (url, org, barrier) = (url.clone(), org.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut s = connect_to(&url);
                s.batch_execute("SET mfa.sms_sends_per_number_per_hour = 1000; SET mfa.sms_sends_per_member_per_hour = 1000")
                    .unwrap();
                barrier.wait();
                let mut outcomes = (0, 0);
                for _ in 0..20 {
                    match s.query_one("SELECT mfa.otp_sms_send($1, $2)", &[&org, &format!("m{i}")])
                    {
                        Ok(_) => outcomes.0 += 1,
                        Err(e) => {
                            let (state, message) = sql_error(&e);
                            assert_eq!(state, "22023", "{message}");
                            assert!(
                                message.starts_with("invalid_phone_number_country_code"),
                                "{message}"
                            );
                            outcomes.1 += 1;
                        }
                    }
                }
                outcomes
            })
        })
        .collect();
    toggler.join().unwrap();
    let outcomes: Vec<(i64, i64)> = senders.into_iter().map(|h| h.join().unwrap()).collect();
    let sent: i64 = outcomes.iter().map(|o| o.0).sum();
    let queued: i64 = c
        .query_one(
            "SELECT count(*) FROM mfa.sms_outbox WHERE country_code = 'CA'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(queued, sent, "{outcomes:?}");
    // The list in force at the end is {CA, US}; with {US} only, a send is refused.
    c.query_one("SELECT mfa.country_code_allowlist_set($1)", &[&vec!["US"]])
        .unwrap();
    let refused = c
        .query_one("SELECT mfa.otp_sms_send($1, 'm0')", &[&org])
        .unwrap_err();
    assert_eq!(sql_error(&refused).0, "22023");
}

/// Logins of one member started at once, some rolled back, while tokens of logins the member gave
/// up are still there: every start succeeds (no lock wait turns into an error), the given-up
/// tokens are gone, and exactly the committed starts' tokens are live.
#[test]
fn concurrent_login_starts_clear_the_given_up_tokens_once() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "race-starts", "ann");
    for _ in 0..3 {
        start_login(&mut c, &org, "ann");
    }
    // The time is read first: Citus refuses a volatile function in an UPDATE of a distributed table.
    let past: std::time::SystemTime = c
        .query_one("SELECT clock_timestamp() - interval '1 second'", &[])
        .unwrap()
        .get(0);
    c.execute(
        "UPDATE mfa.intermediate_sessions SET expires_at = $2 WHERE organization_id = $1",
        &[&org, &past],
    )
    .unwrap();
    let org2 = org.clone();
    let results = race(RACERS, move |client, i| {
        let mut t = client.transaction().unwrap();
        let started = t
            .query_one(
                "SELECT mfa.primary_authenticate($1, 'ann') ->> 'intermediate_session_token'",
                &[&org2],
            )
            .map(|row| row.get::<_, String>(0))
            .map_err(|e| e.to_string());
        t.execute("SELECT pg_sleep(0.05)", &[]).unwrap();
        if i % 2 == 0 {
            t.commit().unwrap();
        } else {
            t.rollback().unwrap();
        }
        started
    });
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let (expired, live): (i64, i64) = {
        let row = c
            .query_one(
                "SELECT count(*) FILTER (WHERE expires_at <= clock_timestamp()),
                        count(*) FILTER (WHERE expires_at > clock_timestamp())
                   FROM mfa.intermediate_sessions WHERE organization_id = $1 AND member_id = 'ann'",
                &[&org],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((expired, live), (0, (RACERS / 2) as i64));
}
