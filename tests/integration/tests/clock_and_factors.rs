//! Two ways around MFA for whoever holds `mfa_app`, closed: a long transaction that keeps codes and
//! tokens alive past their expiry (decisions were made on the transaction's `now()`), and minting
//! recovery codes with no factor proven (`recovery_codes_rotate` needed only the member's id).

mod common;
use common::*;

/// Inside one open transaction, a code or token whose life ends during it is dead from then on.
#[test]
fn a_long_transaction_cannot_outlive_a_code_or_a_token() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "clock", "ann");
    json(
        &mut c,
        "SELECT mfa.member_upsert($1, 'ann', '+14155550142')",
        &[&org],
    );
    let (_, token) = start_login(&mut c, &org, "ann");
    json(
        &mut c,
        "SELECT mfa.otp_sms_send($1, 'ann', intermediate_session_token => $2)",
        &[&org, &token],
    );
    let code = sms_code(&mut c, &org);
    // Both lives end a second from now (the lifetimes' settings cannot go that low). The time is
    // read first: Citus refuses a volatile function in an UPDATE of a distributed table.
    let soon: std::time::SystemTime = c
        .query_one("SELECT clock_timestamp() + interval '1 second'", &[])
        .unwrap()
        .get(0);
    c.execute(
        "UPDATE mfa.sms_codes SET expires_at = $2 WHERE organization_id = $1",
        &[&org, &soon],
    )
    .unwrap();
    c.execute(
        "UPDATE mfa.intermediate_sessions SET expires_at = $2 WHERE organization_id = $1",
        &[&org, &soon],
    )
    .unwrap();
    let mut t = c.transaction().unwrap();
    t.execute("SELECT pg_sleep(1.5)", &[]).unwrap();
    let late: serde_json::Value = t
        .query_one(
            "SELECT mfa.otp_sms_authenticate($1, 'ann', $2)",
            &[&org, &code],
        )
        .unwrap()
        .get(0);
    assert_eq!(late["error_type"], "otp_code_expired", "{late}");
    let refused = t
        .query_one(
            "SELECT mfa.check_session_policy($1, 'ann', $2)",
            &[&org, &token],
        )
        .unwrap_err();
    assert_eq!(sql_error(&refused).0, "28000");
}

/// `recovery_codes_rotate` mints a factor: it needs one proven first, as adding a factor does.
#[test]
fn recovery_codes_cannot_be_minted_without_a_proven_factor() {
    let mut c = connect();
    let org = new_organization(&mut c, "mint");
    json(
        &mut c,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL')",
        &[&org],
    );
    json(&mut c, "SELECT mfa.member_upsert($1, 'bob')", &[&org]);
    json(
        &mut c,
        "SELECT mfa.totp_migrate($1, 'bob', 'JBSWY3DPEHPK3PXP', ARRAY['aaaa-bbbb-cccc'])",
        &[&org],
    );
    // The attack as the application's role: a login with the password alone, then new codes.
    let app = app_role(&mut c, "mint", &[]);
    c.batch_execute(&format!("SET ROLE {app}")).unwrap();
    let (_, token) = start_login(&mut c, &org, "bob");
    let without_token = c
        .query_one("SELECT mfa.recovery_codes_rotate($1, 'bob')", &[&org])
        .unwrap_err();
    assert_eq!(sql_error(&without_token).0, "28000");
    let with_password_only = c
        .query_one(
            "SELECT mfa.recovery_codes_rotate($1, 'bob', $2)",
            &[&org, &token],
        )
        .unwrap_err();
    assert_eq!(sql_error(&with_password_only).0, "28000");
    // The member's real code still works and the session still needs it.
    let refused = c
        .query_one(
            "SELECT mfa.check_session_policy($1, 'bob', $2)",
            &[&org, &token],
        )
        .unwrap_err();
    assert_eq!(sql_error(&refused).0, "28000");
    let (_, token) = start_login(&mut c, &org, "bob");
    let recovered = json(
        &mut c,
        "SELECT mfa.recovery_codes_recover($1, 'bob', 'aaaa-bbbb-cccc', $2)",
        &[&org, &token],
    );
    assert_eq!(recovered["status_code"], 200, "{recovered}");
    // With a factor proven in this login, the member rotates.
    let rotated = json(
        &mut c,
        "SELECT mfa.recovery_codes_rotate($1, 'bob', $2)",
        &[&org, &token],
    );
    assert_eq!(rotated["recovery_codes"].as_array().unwrap().len(), 10);
    c.batch_execute("RESET ROLE").unwrap();
}
