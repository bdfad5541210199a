//! A login is one audit event: the session's when it succeeds (its story names each factor, when
//! it was proven and the request that proved it), `login.abandoned` when its token dies without
//! a session (at the member's next login, or by the attempt ledger's writer). Tokens name their
//! organization, so another organization's token is told from an unknown one without a lookup.

mod common;
use common::*;
use postgres::Client;
use serde_json::Value;
use std::time::{Duration, Instant};

const SECRET: &str = "JBSWY3DPEHPK3PXP";

/// An organization requiring MFA, member `m` with an authenticator app (enrolled: a returning
/// member), its guarded sessions table, and the application's connection (a LOGIN role in
/// `mfa_app` that owns the table).
fn deployment(superuser: &mut Client, prefix: &str) -> (String, Client, String) {
    let org = new_organization(superuser, prefix);
    json(
        superuser,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL')",
        &[&org],
    );
    json(
        superuser,
        "SELECT mfa.member_upsert($1, 'm', mfa_enrolled => true)",
        &[&org],
    );
    json(
        superuser,
        "SELECT mfa.totp_migrate($1, 'm', $2)",
        &[&org, &SECRET],
    );
    let (app, schema) = guarded_sessions(superuser, prefix, "");
    (org, app, format!("{schema}.sessions"))
}

/// `m`'s session row with `token`: how many rows landed, or the refusal's SQLSTATE.
fn insert_session(app: &mut Client, org: &str, sessions: &str, token: &str) -> Result<u64, String> {
    app.execute(
        &format!(
            "INSERT INTO {sessions} (organization_id, member_id, intermediate_session_token)
             VALUES ($1, 'm', $2)"
        ),
        &[&org, &token],
    )
    .map_err(|e| sql_error(&e).0)
}

/// A whole login of `m` with the code of `offset`: its two answers.
fn login_with_session(app: &mut Client, org: &str, sessions: &str, offset: i64) -> (Value, Value) {
    let (login, proven, token) = proven_login(app, org, offset);
    insert_session(app, org, sessions, &token).unwrap();
    (login, proven)
}

/// A login of `m` proven with the code of `offset`, not yet used: its two answers and its token.
fn proven_login(app: &mut Client, org: &str, offset: i64) -> (Value, Value, String) {
    let (login, token) = start_login(app, org, "m");
    let proven = json(
        app,
        "SELECT mfa.totp_authenticate($1, 'm', $2, $3)",
        &[&org, &totp_at(SECRET, offset), &token],
    );
    assert_eq!(proven["status_code"], 200, "{proven}");
    (login, proven, token)
}

fn events_of(superuser: &mut Client, org: &str) -> Vec<(String, String, Value)> {
    superuser
        .query(
            "SELECT event_type, request_id::text, details FROM mfa.events
              WHERE organization_id = $1 AND member_id = 'm' ORDER BY occurred_at, event_id",
            &[&org],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[test]
fn a_returning_members_login_is_one_event_telling_its_story() {
    let mut superuser = connect();
    let (org, mut app, sessions) = deployment(&mut superuser, "story");
    // The first login sets the member's default method: an event of its own.
    login_with_session(&mut app, &org, &sessions, -1);
    let before = events_of(&mut superuser, &org).len();
    let (login, proven) = login_with_session(&mut app, &org, &sessions, 0);
    let events = events_of(&mut superuser, &org);
    let new: Vec<_> = events[before..].to_vec();
    assert_eq!(new.len(), 1, "one event for the whole login: {new:?}");
    let (event_type, _, details) = &new[0];
    assert_eq!(event_type, "session.allowed");
    assert_eq!(details["factors"], serde_json::json!(["password", "totp"]));
    assert_eq!(
        details["request_ids"],
        serde_json::json!([login["request_id"], proven["request_id"]])
    );
    let times = details["authenticated_at"].as_array().unwrap();
    assert_eq!(times.len(), 2);
    assert!(times[0].as_str() <= times[1].as_str(), "{times:?}");
    // The members report still finds the member's last MFA in it.
    let report = json(
        &mut superuser,
        "SELECT mfa.members_search($1, jsonb_build_object('last_mfa_after', now() - interval '1 minute'))",
        &[&org],
    );
    assert_eq!(report["results_metadata"]["total"], 1, "{report}");
}

#[test]
fn a_login_given_up_is_recorded_once_at_the_members_next_login() {
    let mut superuser = connect();
    let (org, mut app, sessions) = deployment(&mut superuser, "given-up");
    login_with_session(&mut app, &org, &sessions, -1);
    let before = events_of(&mut superuser, &org).len();
    // The password was right, a code was proven, and no session followed.
    let (login, token) = start_login(&mut app, &org, "m");
    let proven = json(
        &mut app,
        "SELECT mfa.totp_authenticate($1, 'm', $2, $3)",
        &[&org, &totp_at(SECRET, 0), &token],
    );
    assert_eq!(proven["status_code"], 200, "{proven}");
    assert_eq!(events_of(&mut superuser, &org).len(), before, "nothing yet");
    superuser
        .execute(
            "UPDATE mfa.intermediate_sessions SET expires_at = now() - interval '1 second'
              WHERE organization_id = $1",
            &[&org],
        )
        .unwrap();
    // A rolled-back next login records nothing (its own token goes with it).
    app.batch_execute("BEGIN").unwrap();
    start_login(&mut app, &org, "m");
    app.batch_execute("ROLLBACK").unwrap();
    assert_eq!(events_of(&mut superuser, &org).len(), before);
    start_login(&mut app, &org, "m");
    start_login(&mut app, &org, "m");
    let new: Vec<_> = events_of(&mut superuser, &org)[before..].to_vec();
    assert_eq!(new.len(), 1, "{new:?}");
    let (event_type, request_id, details) = &new[0];
    assert_eq!(event_type, "login.abandoned");
    assert_eq!(request_id, login["request_id"].as_str().unwrap());
    assert_eq!(details["factors"], serde_json::json!(["password", "totp"]));
    assert_eq!(
        details["request_ids"],
        serde_json::json!([login["request_id"], proven["request_id"]])
    );
}

/// In a database of its own (whose upkeep is due at once), the attempt ledger's writer records
/// the logins whose tokens expired when nobody came back for them.
#[test]
fn the_ledger_writer_records_logins_nobody_came_back_for() {
    let url = fresh_database("reap");
    let mut superuser = connect_to(&url);
    superuser
        .batch_execute(
            "SELECT mfa.organization_upsert('acme', 'REQUIRED_FOR_ALL');
             SELECT mfa.member_upsert('acme', 'm', mfa_enrolled => true);
             SELECT mfa.member_upsert('acme', 'n', mfa_enrolled => true);",
        )
        .unwrap();
    json(
        &mut superuser,
        "SELECT mfa.totp_migrate('acme', 'n', $1)",
        &[&SECRET],
    );
    let mut started = Vec::new();
    for _ in 0..3 {
        let login = json(
            &mut superuser,
            "SELECT mfa.primary_authenticate('acme', 'm')",
            &[],
        );
        started.push(login["request_id"].as_str().unwrap().to_string());
    }
    superuser
        .execute(
            "UPDATE mfa.intermediate_sessions SET expires_at = now() - interval '1 second'",
            &[],
        )
        .unwrap();
    // Any code checked in the database wakes a writer for its due upkeep.
    json(
        &mut superuser,
        "SELECT mfa.totp_authenticate('acme', 'n', '000000')",
        &[],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let recorded: Vec<String> = loop {
        let rows: Vec<String> = superuser
            .query(
                "SELECT request_id::text FROM mfa.events WHERE event_type = 'login.abandoned'
                  ORDER BY request_id",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if rows.len() >= 3 || std::time::Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    started.sort();
    assert_eq!(recorded, started);
    let left: i64 = superuser
        .query_one("SELECT count(*) FROM mfa.intermediate_sessions", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[test]
fn a_token_names_its_organization() {
    let mut superuser = connect();
    let (org, mut app, _) = deployment(&mut superuser, "token-org");
    let other = organization_with_member(&mut superuser, "token-other", "m");
    let (_, token) = start_login(&mut app, &org, "m");
    let error = |app: &mut Client, org: &str, token: &str| -> String {
        let e = app
            .query_one(
                "SELECT mfa.totp_authenticate($1, 'm', '123456', $2)",
                &[&org, &token],
            )
            .unwrap_err();
        sql_error(&e).1
    };
    assert!(error(&mut app, &other, &token)
        .contains("invalid_intermediate_session_token_for_organization"),);
    // A token no key of this server made, of any shape: unknown.
    let mut forged = token.clone().into_bytes();
    forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for unknown in [
        forged.as_str(),
        "A".repeat(75).as_str(),
        "A".repeat(43).as_str(),
        "x",
    ] {
        assert!(
            error(&mut app, &org, unknown).contains("intermediate_session_not_found"),
            "{unknown}"
        );
    }
    // There is no index of every organization's tokens any more.
    let indexes: i64 = superuser
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'mfa'
              AND tablename = 'intermediate_sessions'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(indexes, 1, "the primary key only");
}

/// Logins that a factor's removal or a reset ends are recorded too: a removal must not erase the
/// trace of a password that was right.
#[test]
fn logins_ended_by_a_reset_are_recorded() {
    let mut superuser = connect();
    let (org, mut app, _) = deployment(&mut superuser, "reset-ends");
    let before = events_of(&mut superuser, &org).len();
    let (login, _) = start_login(&mut app, &org, "m");
    json(
        &mut superuser,
        "SELECT mfa.member_reset_mfa($1, 'm')",
        &[&org],
    );
    let new: Vec<_> = events_of(&mut superuser, &org)[before..].to_vec();
    let abandoned: Vec<_> = new
        .iter()
        .filter(|(t, _, _)| t == "login.abandoned")
        .collect();
    assert_eq!(abandoned.len(), 1, "{new:?}");
    assert_eq!(abandoned[0].1, login["request_id"].as_str().unwrap());
    let reset = new
        .iter()
        .find(|(t, _, _)| t == "member.mfa_reset")
        .unwrap();
    assert_eq!(reset.2["logins_in_progress"], 1, "{reset:?}");
}

// Found by review: a login in progress at the update, a step-up never applied, the last MFA's
// time, a member's deletion.

/// An organization requiring MFA and member `m` with an authenticator app whose first code was
/// already checked (so a later code changes nothing but the login: no event of its own).
fn returning_member(c: &mut Client, prefix: &str) -> String {
    let org = new_organization(c, prefix);
    json(
        c,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL')",
        &[&org],
    );
    json(
        c,
        "SELECT mfa.member_upsert($1, 'm', mfa_enrolled => true)",
        &[&org],
    );
    json(c, "SELECT mfa.totp_migrate($1, 'm', $2)", &[&org, &SECRET]);
    let (_, token) = start_login(c, &org, "m");
    let first = json(
        c,
        "SELECT mfa.totp_authenticate($1, 'm', $2, $3)",
        &[&org, &totp_at(SECRET, -1), &token],
    );
    assert_eq!(first["status_code"], 200, "{first}");
    org
}

fn review_events_of(c: &mut Client, org: &str) -> Vec<(String, Value)> {
    events_of(c, org)
        .into_iter()
        .map(|(t, _, d)| (t, d))
        .collect()
}

/// A login of an earlier version without request ids (the update gives those in progress the nil
/// id for each factor; a row without any must not stop anything either), expired and never
/// consumed: it is given up, and recorded under a new request id.
fn legacy_login(c: &mut Client, org: &str, member: &str) {
    let token = data_encoding::BASE64URL_NOPAD.encode(&rand::random::<[u8; 32]>());
    c.execute(
        "INSERT INTO mfa.intermediate_sessions (organization_id, token_hash, member_id, primary_factor, factors, expires_at)
         VALUES ($1, sha256(convert_to($3, 'UTF8')), $2, 'password',
                 jsonb_build_array(jsonb_build_object('type', 'password', 'delivery_method', 'password',
                                                      'last_authenticated_at', now() - interval '20 minutes')),
                 now() - interval '10 minutes')",
        &[&org, &member, &token],
    )
    .unwrap();
}

/// Such a login ends like any other: the member logs in again and the support desk resets them,
/// and it is recorded once.
#[test]
fn a_login_in_progress_at_the_update_does_not_lock_its_member_out() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "r3-legacy", "m");
    legacy_login(&mut c, &org, "m");
    let next = c
        .query_one("SELECT mfa.primary_authenticate($1, 'm')", &[&org])
        .map_err(|e| sql_error(&e));
    let reset = c
        .query_one("SELECT mfa.member_reset_mfa($1, 'm')", &[&org])
        .map_err(|e| sql_error(&e));
    // The pre-update login (no request ids), and the next one, which the reset ended.
    let abandoned: Vec<Value> = review_events_of(&mut c, &org)
        .into_iter()
        .filter(|(t, _)| t == "login.abandoned")
        .map(|(_, details)| details["request_ids"].clone())
        .collect();
    // The row would break the shared test database's upkeep for every later test: gone first.
    c.execute(
        "DELETE FROM mfa.intermediate_sessions WHERE organization_id = $1",
        &[&org],
    )
    .unwrap();
    assert!(next.is_ok(), "the member's next login: {:?}", next.err());
    assert!(reset.is_ok(), "the support desk's reset: {:?}", reset.err());
    assert_eq!(abandoned.len(), 2, "{abandoned:?}");
    assert_eq!(
        abandoned[0],
        serde_json::json!([]),
        "the pre-update login is recorded once"
    );
    assert_eq!(abandoned[1].as_array().map(Vec::len), Some(1));
}

/// The database's upkeep does not stop at such a row: every expired login of the database is
/// recorded and deleted (and an error of a step would be a warning, not the writer's end).
#[test]
fn the_upkeep_survives_a_login_in_progress_at_the_update() {
    let url = fresh_database("r3reap");
    let mut c = connect_to(&url);
    c.batch_execute(
        "SELECT mfa.organization_upsert('old', 'OPTIONAL');
         SELECT mfa.member_upsert('old', 'ann');
         SELECT mfa.organization_upsert('acme', 'REQUIRED_FOR_ALL');
         SELECT mfa.member_upsert('acme', 'm', mfa_enrolled => true);",
    )
    .unwrap();
    json(
        &mut c,
        "SELECT mfa.totp_migrate('acme', 'm', $1)",
        &[&SECRET],
    );
    legacy_login(&mut c, "old", "ann");
    // Another organization's login, given up after the update.
    let login = json(&mut c, "SELECT mfa.primary_authenticate('acme', 'm')", &[]);
    c.execute(
        "UPDATE mfa.intermediate_sessions SET expires_at = now() - interval '1 second'",
        &[],
    )
    .unwrap();
    // A code checked in the database wakes a writer for its due upkeep.
    json(
        &mut c,
        "SELECT mfa.totp_authenticate('acme', 'm', '000000')",
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let recorded: i64 = c
            .query_one(
                "SELECT count(*) FROM mfa.events WHERE event_type = 'login.abandoned'
                  AND request_id = $1::text::uuid",
                &[&login["request_id"].as_str().unwrap()],
            )
            .unwrap()
            .get(0);
        if recorded == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acme's given-up login was never recorded: the upkeep fails on the pre-update row"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A second factor proven with a step-up token writes no event of its own (the step-up's story
/// tells it); a step-up never applied to a session is recorded when its token dies
/// (`step_up.abandoned`), so a successful check is always in the trail.
#[test]
fn a_second_factor_proven_for_a_step_up_never_applied_is_in_the_trail() {
    let mut c = connect();
    let org = returning_member(&mut c, "r3-stepup");
    let before = review_events_of(&mut c, &org).len();
    let step_up = json(&mut c, "SELECT mfa.step_up_start($1, 'm')", &[&org]);
    let token = token_of(&step_up);
    let proven = json(
        &mut c,
        "SELECT mfa.totp_authenticate($1, 'm', $2, $3)",
        &[&org, &totp_at(SECRET, 0), &token],
    );
    assert_eq!(proven["status_code"], 200, "{proven}");
    // The step-up token dies unused; the member's next login ends it.
    c.execute(
        "UPDATE mfa.intermediate_sessions SET expires_at = now() - interval '1 second'
          WHERE organization_id = $1",
        &[&org],
    )
    .unwrap();
    start_login(&mut c, &org, "m");
    // The check's request id, in an event of its own or in a story.
    let request_id = proven["request_id"].as_str().unwrap();
    let told: i64 = c
        .query_one(
            "SELECT count(*) FROM mfa.events WHERE organization_id = $1
                AND (request_id = $2::text::uuid OR details -> 'request_ids' ? $2)",
            &[&org, &request_id],
        )
        .unwrap()
        .get(0);
    let new = review_events_of(&mut c, &org)[before..].to_vec();
    assert_eq!(
        told, 1,
        "the successful TOTP check is nowhere in the trail: {new:?}"
    );
}

/// members_search's last MFA is when the second factor was proven, as the login's story says,
/// not when the event telling it was written (a login given up is written when its token dies:
/// minutes or days later).
#[test]
fn last_mfa_is_when_the_factor_was_proven() {
    let mut c = connect();
    let org = returning_member(&mut c, "r3-lastmfa");
    let (_, token) = start_login(&mut c, &org, "m");
    let proven = json(
        &mut c,
        "SELECT mfa.totp_authenticate($1, 'm', $2, $3)",
        &[&org, &totp_at(SECRET, 0), &token],
    );
    assert_eq!(proven["status_code"], 200, "{proven}");
    std::thread::sleep(Duration::from_millis(1500));
    let mid: String = c
        .query_one("SELECT clock_timestamp()::text", &[])
        .unwrap()
        .get(0);
    std::thread::sleep(Duration::from_millis(1500));
    c.execute(
        "UPDATE mfa.intermediate_sessions SET expires_at = now() - interval '1 second'
          WHERE organization_id = $1",
        &[&org],
    )
    .unwrap();
    start_login(&mut c, &org, "m");
    let total = |c: &mut Client, key: &str| -> Value {
        json(
            c,
            "SELECT mfa.members_search($1, jsonb_build_object($2::text, $3::text::timestamptz))
                    -> 'results_metadata' -> 'total'",
            &[&org, &key, &mid],
        )
    };
    assert_eq!(
        total(&mut c, "last_mfa_before"),
        1,
        "the last MFA was before {mid}"
    );
    assert_eq!(total(&mut c, "last_mfa_after"), 0, "no MFA after {mid}");
}

/// member_delete records the member's logins in progress before they go with the member.
#[test]
fn a_members_deletion_records_their_logins_in_progress() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "r3-delete", "m");
    let (login, _) = start_login(&mut c, &org, "m");
    json(
        &mut c,
        "SELECT to_jsonb(mfa.member_delete($1, 'm'))",
        &[&org],
    );
    let recorded: i64 = c
        .query_one(
            "SELECT count(*) FROM mfa.events WHERE organization_id = $1
                AND event_type = 'login.abandoned' AND request_id = $2::text::uuid",
            &[&org, &login["request_id"].as_str().unwrap()],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        recorded, 1,
        "the password was right; the login is in no event"
    );
}

// A decision whose row never lands: the gate consumed the token, so the login ends there, and
// the trail must not say that a session exists.

/// The events whose story names `request_id` (a login's, or the proof of a step-up).
fn events_telling(superuser: &mut Client, org: &str, request_id: &Value) -> Vec<(String, Value)> {
    superuser
        .query(
            "SELECT event_type, details FROM mfa.events
              WHERE organization_id = $1 AND details -> 'request_ids' ? $2 ORDER BY event_id",
            &[&org, &request_id.as_str().unwrap()],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The id of the newest session row of the table.
fn newest_session(superuser: &mut Client, sessions: &str) -> i64 {
    superuser
        .query_one(&format!("SELECT max(id) FROM {sessions}"), &[])
        .unwrap()
        .get(0)
}

/// The login was told once, as given up without a session row, and its token is used up.
fn assert_given_up_without_a_row(
    superuser: &mut Client,
    app: &mut Client,
    org: &str,
    sessions: &str,
    (login, proven, token): &(Value, Value, String),
) {
    let told = events_telling(superuser, org, &login["request_id"]);
    let types: Vec<&str> = told.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["login.abandoned"], "{told:?}");
    let details = &told[0].1;
    assert_eq!(details["factors"], serde_json::json!(["password", "totp"]));
    assert_eq!(
        details["request_ids"],
        serde_json::json!([login["request_id"], proven["request_id"]])
    );
    assert_eq!(details["session_row_written"], false, "{details}");
    let again = insert_session(app, org, sessions, token);
    assert_eq!(again, Err("28000".to_string()), "the token served once");
}

#[test]
fn an_upsert_that_meets_a_conflict_records_its_login_as_given_up() {
    let mut superuser = connect();
    let (org, mut app, sessions) = deployment(&mut superuser, "conflict");
    login_with_session(&mut app, &org, &sessions, -1);
    let taken = newest_session(&mut superuser, &sessions);
    let login = proven_login(&mut app, &org, 0);
    let inserted = app
        .execute(
            &format!(
                "INSERT INTO {sessions} (organization_id, id, member_id, intermediate_session_token)
                 OVERRIDING SYSTEM VALUE VALUES ($1, $2, 'm', $3) ON CONFLICT DO NOTHING"
            ),
            &[&org, &taken, &login.2],
        )
        .unwrap();
    assert_eq!(inserted, 0);
    assert_given_up_without_a_row(&mut superuser, &mut app, &org, &sessions, &login);
}

/// The owner's trigger that fires after the gate and skips the row, whatever the application's
/// role and search_path are when the transaction commits: the event is written as mfa's owner
/// and resolves nothing through the caller's schemas (a temporary type named uuid here).
#[test]
fn a_row_skipped_by_a_later_trigger_records_its_login_as_given_up() {
    let mut superuser = connect();
    let (org, mut app, sessions) = deployment(&mut superuser, "skipped-row");
    app.batch_execute(&format!(
        "CREATE FUNCTION {sessions}_skip() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RETURN NULL; END $$;
         CREATE TRIGGER zzz_skip BEFORE INSERT ON {sessions}
             FOR EACH ROW EXECUTE FUNCTION {sessions}_skip()"
    ))
    .unwrap();
    let login = proven_login(&mut app, &org, 0);
    app.batch_execute("BEGIN").unwrap();
    let inserted = insert_session(&mut app, &org, &sessions, &login.2)
        .unwrap();
    assert_eq!(inserted, 0);
    app.batch_execute(
        "CREATE DOMAIN pg_temp.uuid AS pg_catalog.uuid CHECK (false);
         SET LOCAL search_path = pg_temp, pg_catalog;
         SET LOCAL ROLE mfa_app;
         COMMIT",
    )
    .unwrap();
    app.batch_execute(&format!("DROP TRIGGER zzz_skip ON {sessions}"))
        .unwrap();
    assert_given_up_without_a_row(&mut superuser, &mut app, &org, &sessions, &login);
}

#[test]
fn a_step_up_skipped_by_a_later_trigger_is_recorded_as_given_up() {
    let mut superuser = connect();
    let (org, mut app, sessions) = deployment(&mut superuser, "skipped-step-up");
    login_with_session(&mut app, &org, &sessions, -1);
    let id = newest_session(&mut superuser, &sessions);
    let factors = |c: &mut Client| -> Value {
        c.query_one(
            &format!("SELECT authentication_factors FROM {sessions} WHERE id = $1"),
            &[&id],
        )
        .unwrap()
        .get(0)
    };
    let before = factors(&mut superuser);
    let step_up = token_of(&json(
        &mut app,
        "SELECT mfa.step_up_start($1, 'm')",
        &[&org],
    ));
    let proven = json(
        &mut app,
        "SELECT mfa.totp_authenticate($1, 'm', $2, $3)",
        &[&org, &totp_at(SECRET, 0), &step_up],
    );
    assert_eq!(proven["status_code"], 200, "{proven}");
    app.batch_execute(&format!(
        "CREATE FUNCTION {sessions}_skip() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF current_setting('app.skip', true) = 'on' THEN RETURN NULL; END IF;
         RETURN NEW; END $$;
         CREATE TRIGGER zzz_skip BEFORE UPDATE ON {sessions}
             FOR EACH ROW EXECUTE FUNCTION {sessions}_skip()"
    ))
    .unwrap();
    let step = |app: &mut Client, skip: &str| {
        app.batch_execute(&format!("SET app.skip = '{skip}'"))
            .unwrap();
        app.execute(
            &format!("UPDATE {sessions} SET intermediate_session_token = $1 WHERE id = $2"),
            &[&step_up, &id],
        )
        .map_err(|e| sql_error(&e).0)
    };
    assert_eq!(step(&mut app, "on"), Ok(0));
    assert_eq!(factors(&mut superuser), before, "the session is unchanged");
    let told = events_telling(&mut superuser, &org, &proven["request_id"]);
    let types: Vec<&str> = told.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["step_up.abandoned"], "{told:?}");
    assert_eq!(told[0].1["factors"], serde_json::json!(["totp"]));
    assert_eq!(told[0].1["session_row_written"], false, "{told:?}");
    assert_eq!(
        step(&mut app, "off"),
        Err("28000".to_string()),
        "the step-up token served once"
    );
}

/// The ordinary path is unchanged: each session row has its one `session.allowed`, also when
/// one INSERT writes two.
#[test]
fn each_session_row_written_has_its_one_event() {
    let mut superuser = connect();
    let (org, mut app, sessions) = deployment(&mut superuser, "one-each");
    let logins = [
        proven_login(&mut app, &org, -1),
        proven_login(&mut app, &org, 0),
    ];
    let inserted = app
        .execute(
            &format!(
                "INSERT INTO {sessions} (organization_id, member_id, intermediate_session_token)
                 VALUES ($1, 'm', $2), ($1, 'm', $3)"
            ),
            &[&org, &logins[0].2, &logins[1].2],
        )
        .unwrap();
    assert_eq!(inserted, 2);
    for (login, proven, _) in &logins {
        let told = events_telling(&mut superuser, &org, &login["request_id"]);
        assert_eq!(told.len(), 1, "{told:?}");
        assert_eq!(told[0].0, "session.allowed");
        assert_eq!(
            told[0].1["request_ids"],
            serde_json::json!([login["request_id"], proven["request_id"]])
        );
        assert!(told[0].1.get("session_row_written").is_none(), "{told:?}");
    }
}

/// A decision undone with its transaction, its savepoint, or a savepoint released into one that
/// is then rolled back, or by a commit that fails, undid its token's consumption too: nothing is
/// written, and the token still makes a session. A transaction that ran the gate cannot be
/// prepared (api::prepared), so a decision never waits in a prepared transaction either.
#[test]
fn a_decision_undone_leaves_no_trace_and_its_token_usable() {
    let mut superuser = connect();
    let (org, mut app, sessions) = deployment(&mut superuser, "undone");
    login_with_session(&mut app, &org, &sessions, -1);
    let taken = newest_session(&mut superuser, &sessions);
    let (login, _, token) = proven_login(&mut app, &org, 0);
    let conflict = format!(
        "INSERT INTO {sessions} (organization_id, id, member_id, intermediate_session_token)
         OVERRIDING SYSTEM VALUE VALUES ('{org}', {taken}, 'm', '{token}') ON CONFLICT DO NOTHING"
    );
    for undone in [
        format!("BEGIN; {conflict}; ROLLBACK"),
        format!("BEGIN; SAVEPOINT a; {conflict}; ROLLBACK TO SAVEPOINT a; COMMIT"),
        format!(
            "BEGIN; SAVEPOINT a; SAVEPOINT b; {conflict}; RELEASE SAVEPOINT b;
             ROLLBACK TO SAVEPOINT a; COMMIT"
        ),
    ] {
        app.batch_execute(&undone).unwrap();
        let told = events_telling(&mut superuser, &org, &login["request_id"]);
        assert_eq!(told, [], "{undone}");
    }
    let prepared = app
        .batch_execute(&format!(
            "BEGIN; {conflict}; PREPARE TRANSACTION 'gate_leftover'"
        ))
        .map_err(|e| sql_error(&e));
    let _ = superuser.batch_execute("ROLLBACK PREPARED 'gate_leftover'");
    assert_eq!(
        prepared.map_err(|(code, _)| code),
        Err("0A000".to_string()),
        "refused"
    );
    app.batch_execute("ROLLBACK").unwrap();
    // A commit whose leftover cannot be written fails as a whole, the consumption with it.
    let read_only = app
        .batch_execute(&format!(
            "BEGIN; {conflict}; SET LOCAL transaction_read_only = on; COMMIT"
        ))
        .map_err(|e| sql_error(&e).0);
    assert_eq!(read_only, Err("25006".to_string()));
    assert_eq!(
        events_telling(&mut superuser, &org, &login["request_id"]),
        []
    );
    insert_session(&mut app, &org, &sessions, &token)
    .unwrap();
    let told = events_telling(&mut superuser, &org, &login["request_id"]);
    let types: Vec<&str> = told.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["session.allowed"]);
}

/// A procedure's COMMIT runs the same pre-commit step inside the procedure's own SPI call, and
/// the procedure goes on after it.
#[test]
fn a_procedure_that_commits_records_its_leftover() {
    let mut superuser = connect();
    let (org, mut app, sessions) = deployment(&mut superuser, "procedure");
    login_with_session(&mut app, &org, &sessions, -1);
    let taken = newest_session(&mut superuser, &sessions);
    let login = proven_login(&mut app, &org, 0);
    app.batch_execute(&format!(
        "CREATE PROCEDURE {sessions}_upsert(token text) LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO {sessions} (organization_id, id, member_id, intermediate_session_token)
             OVERRIDING SYSTEM VALUE VALUES ('{org}', {taken}, 'm', token) ON CONFLICT DO NOTHING;
             COMMIT;
             PERFORM count(*) FROM {sessions};
         END $$"
    ))
    .unwrap();
    app.execute(&format!("CALL {sessions}_upsert($1)"), &[&login.2])
        .unwrap();
    assert_given_up_without_a_row(&mut superuser, &mut app, &org, &sessions, &login);
}

/// A row skipped after the gate leaves its decision owing an event; a row rewritten into its copy
/// inside a savepoint claims it, and the savepoint is rolled back. The claim goes with the
/// savepoint: the first login, whose token stays consumed, is still recorded at commit.
#[test]
fn a_claim_rolled_back_with_its_savepoint_still_leaves_the_login_in_the_trail() {
    let mut superuser = connect();
    let (org, mut app, sessions) = deployment(&mut superuser, "claim-undone");
    let first = proven_login(&mut app, &org, -1);
    let (second_login, _, second) = proven_login(&mut app, &org, 0);
    app.batch_execute(&format!(
        "CREATE TABLE {sessions}_stash (factors jsonb);
         CREATE FUNCTION {sessions}_zz() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF current_setting('app.mode', true) = 'skip' THEN
                 INSERT INTO {sessions}_stash VALUES (NEW.authentication_factors);
                 RETURN NULL;
             END IF;
             IF current_setting('app.mode', true) = 'copy' THEN
                 NEW.intermediate_session_token := current_setting('app.token');
                 NEW.authentication_factors := (SELECT factors FROM {sessions}_stash);
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER zz BEFORE INSERT ON {sessions}
             FOR EACH ROW EXECUTE FUNCTION {sessions}_zz()"
    ))
    .unwrap();
    let insert = |token: &str| {
        format!(
            "INSERT INTO {sessions} (organization_id, member_id, intermediate_session_token)
             VALUES ('{org}', 'm', '{token}')"
        )
    };
    app.batch_execute(&format!(
        "BEGIN;
         SET LOCAL app.mode = 'skip';
         {};
         SAVEPOINT s;
         SET LOCAL app.mode = 'copy';
         SET LOCAL app.token = '{}';
         {};
         ROLLBACK TO SAVEPOINT s;
         COMMIT",
        insert(&first.2),
        first.2,
        insert(&second)
    ))
    .unwrap();
    app.batch_execute(&format!("DROP TRIGGER zz ON {sessions}"))
        .unwrap();
    assert_given_up_without_a_row(&mut superuser, &mut app, &org, &sessions, &first);
    assert_eq!(
        events_telling(&mut superuser, &org, &second_login["request_id"]),
        [],
        "the second login was undone with the savepoint"
    );
}
