//! What the login flow tells its caller before a second factor is proven: whoever holds the
//! application's role learns no member's full phone number from it, and a locked member's phone
//! gets no code.

mod common;
use common::*;

const PHONE: &str = "+14155550199";

#[test]
fn answers_before_mfa_mask_the_phone_number_everywhere() {
    let mut c = connect();
    let org = new_organization(&mut c, "masked");
    json(
        &mut c,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL')",
        &[&org],
    );
    json(
        &mut c,
        "SELECT mfa.member_upsert($1, 'ann', $2)",
        &[&org, &PHONE],
    );
    let app = app_role(&mut c, "masked", &[]);
    c.batch_execute(&format!("SET ROLE {app}")).unwrap();
    let (login, token) = start_login(&mut c, &org, "ann");
    let sent = json(
        &mut c,
        "SELECT mfa.otp_sms_send($1, 'ann', intermediate_session_token => $2)",
        &[&org, &token],
    );
    let created = json(
        &mut c,
        "SELECT mfa.totp_create($1, 'ann', intermediate_session_token => $2)",
        &[&org, &token],
    );
    let step_up = json(&mut c, "SELECT mfa.step_up_start($1, 'ann')", &[&org]);
    let digits = &PHONE[1..];
    for (name, answer) in [
        ("primary_authenticate", &login),
        ("otp_sms_send", &sent),
        ("totp_create", &created),
        ("step_up_start", &step_up),
    ] {
        let text = answer.to_string();
        assert!(
            !text.contains(digits),
            "{name} answered the full number: {text}"
        );
        assert_eq!(
            answer["member"]["mfa_phone_number"], "+*******0199",
            "{name}"
        );
    }
    c.batch_execute("RESET ROLE").unwrap();
}

#[test]
fn a_locked_member_gets_no_code() {
    let mut c = connect();
    let org = new_organization(&mut c, "locked-send");
    json(
        &mut c,
        "SELECT mfa.member_upsert($1, 'bob', $2)",
        &[&org, &PHONE],
    );
    json(
        &mut c,
        "SELECT mfa.totp_migrate($1, 'bob', 'JBSWY3DPEHPK3PXP')",
        &[&org],
    );
    // The application's role with a threshold of 2 (a role's setting reaches a delegated call).
    let role = app_role(&mut c, "locked_send", &["mfa.lock_threshold = 2"]);
    let mut app = postgres::Client::connect(&database_url_as(&role), postgres::NoTls).unwrap();
    for _ in 0..2 {
        json(
            &mut app,
            "SELECT mfa.totp_authenticate($1, 'bob', '000000')",
            &[&org],
        );
    }
    let before = queued_messages(&mut c, &org);
    let refused = c
        .query_one("SELECT mfa.otp_sms_send($1, 'bob')", &[&org])
        .unwrap_err();
    let (state, message) = sql_error(&refused);
    assert_eq!(state, "53400");
    assert!(message.starts_with("user_lock_limit_reached"), "{message}");
    let after = queued_messages(&mut c, &org);
    assert_eq!(after, before);
}
