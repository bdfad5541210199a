//! Whoever holds the application's role learns no member's full phone number before MFA: not by
//! guessing it into `otp_sms_send` (a right and a wrong guess answer alike, in rolled-back
//! transactions too), not from `primary_authenticate`'s answer, whatever the organization's
//! policy and the member's enrollment. The legitimate flows still work: enrolling a first phone
//! during a login, resending to an enrolled member without passing the number.

mod common;
use common::*;
use postgres::{Client, NoTls};
use serde_json::Value;

const PHONE: &str = "+14155552671";
const WRONG: &str = "+14155552672";

/// A login role that is no superuser and holds `mfa_app` (the settings of `connect` are
/// superuser-only: the operator sets them for the role instead).
fn app_role(su: &mut Client, prefix: &str) -> Client {
    let role = unique(prefix).replace('-', "_");
    su.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN NOSUPERUSER; GRANT mfa_app TO {role};
         ALTER ROLE {role} SET mfa.sms_min_interval_seconds = 0;
         ALTER ROLE {role} SET mfa.sms_sends_per_member_per_hour = 1000;
         ALTER ROLE {role} SET mfa.sms_sends_per_number_per_hour = 1000;
         ALTER ROLE {role} SET mfa.sms_sends_per_prefix_per_hour = 100000"
    ))
    .unwrap();
    Client::connect(&database_url_as(&role), NoTls).expect("connect as the app role")
}

/// What the caller sees of one statement, run in a transaction that is rolled back: the answer
/// without its per-call parts, or the SQLSTATE and message of its error.
fn answer_in_rolled_back(app: &mut Client, sql: &str, org: &str, guess: &str) -> String {
    let mut tx = app.transaction().unwrap();
    let outcome = match tx.query_one(sql, &[&org, &guess]) {
        Ok(row) => {
            let mut answer: Value = row.get(0);
            answer["request_id"] = Value::Null;
            format!("answer {answer}")
        }
        Err(e) => {
            let (code, message) = sql_error(&e);
            format!("error {code} {message}")
        }
    };
    tx.rollback().unwrap();
    outcome
}

#[test]
fn a_guessed_number_answers_alike_right_or_wrong() {
    let mut su = connect();
    let org = new_organization(&mut su, "oracle");
    json(
        &mut su,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL')",
        &[&org],
    );
    json(
        &mut su,
        "SELECT mfa.member_upsert($1, 'ann', $2)",
        &[&org, &PHONE],
    );
    let mut app = app_role(&mut su, "oracle_app");
    let (login, token) = start_login(&mut app, &org, "ann");
    assert_eq!(
        login["mfa_required"]["member_options"]["mfa_phone_number"],
        "+*******2671"
    );
    // With and without the login's token: the number guessed is the only difference.
    for sql in [
        "SELECT mfa.otp_sms_send($1, 'ann', mfa_phone_number => $2)",
        &format!(
            "SELECT mfa.otp_sms_send($1, 'ann', mfa_phone_number => $2, intermediate_session_token => '{token}')"
        ),
    ] {
        let right = answer_in_rolled_back(&mut app, sql, &org, PHONE);
        let wrong = answer_in_rolled_back(&mut app, sql, &org, WRONG);
        println!("right guess: {right}\nwrong guess: {wrong}");
        assert_eq!(right, wrong, "the answer tells a right guess from a wrong one");
        assert!(
            !right.contains(&PHONE[1..]) && !wrong.contains(&WRONG[1..]),
            "{right} / {wrong}"
        );
    }
    // The member's own number is reached without passing it.
    let resent = json(
        &mut app,
        "SELECT mfa.otp_sms_send($1, 'ann', intermediate_session_token => $2)",
        &[&org, &token],
    );
    assert_eq!(resent["status_code"], 200, "{resent}");
    assert_eq!(resent["member"]["mfa_phone_number"], "+*******2671");
    assert!(!resent.to_string().contains(&PHONE[1..]), "{resent}");
}

#[test]
fn a_first_phone_is_still_enrolled_during_a_login() {
    let mut su = connect();
    let org = new_organization(&mut su, "oracle-enroll");
    json(
        &mut su,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL')",
        &[&org],
    );
    json(&mut su, "SELECT mfa.member_upsert($1, 'cy')", &[&org]);
    let mut app = app_role(&mut su, "oracle_enroll_app");
    let (_, token) = start_login(&mut app, &org, "cy");
    let linked = json(
        &mut app,
        "SELECT mfa.otp_sms_send($1, 'cy', $2, intermediate_session_token => $3)",
        &[&org, &PHONE, &token],
    );
    assert_eq!(linked["status_code"], 200, "{linked}");
    assert_eq!(linked["member"]["mfa_phone_number"], "+*******2671");
    let code = sms_code(&mut su, &org);
    let proven = json(
        &mut app,
        "SELECT mfa.otp_sms_authenticate($1, 'cy', $2, intermediate_session_token => $3)",
        &[&org, &code, &token],
    );
    assert_eq!(proven["status_code"], 200, "{proven}");
    assert_eq!(proven["member"]["mfa_phone_number_verified"], true);
}

#[test]
fn primary_authenticate_never_answers_a_full_number() {
    let mut su = connect();
    // OPTIONAL and not enrolled: no MFA is asked, and the answer still carries the member.
    let optional = new_organization(&mut su, "oracle-optional");
    json(
        &mut su,
        "SELECT mfa.member_upsert($1, 'dee', $2)",
        &[&optional, &PHONE],
    );
    let required = new_organization(&mut su, "oracle-required");
    json(
        &mut su,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL')",
        &[&required],
    );
    json(
        &mut su,
        "SELECT mfa.member_upsert($1, 'dee', $2)",
        &[&required, &PHONE],
    );
    let mut app = app_role(&mut su, "oracle_login_app");
    for org in [&optional, &required] {
        for sql in [
            "SELECT mfa.primary_authenticate($1, 'dee')",
            "SELECT mfa.step_up_start($1, 'dee')",
        ] {
            let answer = json(&mut app, sql, &[org]);
            let text = answer.to_string();
            println!("{sql} ({org}): member {}", answer["member"]);
            assert!(
                !text.contains(&PHONE[1..]),
                "{sql} of {org} answered the full number: {text}"
            );
            assert_eq!(
                answer["member"]["mfa_phone_number"], "+*******2671",
                "{sql}"
            );
        }
    }
}
