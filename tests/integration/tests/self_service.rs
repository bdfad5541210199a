//! A member removes their own factors through the application (a non-superuser role in
//! `mfa_app`), only with a token carrying a second factor proven with it; `mfa_admin` removes
//! any, resets a member's MFA, and replaces a verified phone only when it says so.

mod common;
use common::*;
use postgres::Client;
use serde_json::Value;

const SECRET: &str = "JBSWY3DPEHPK3PXP";

struct Desk {
    superuser: Client,
    app: Client,
    admin: Client,
    org: String,
    /// The TOTP step each proven login uses, from the current one: each code works once, and
    /// mfa accepts one step either side.
    step: i64,
}

/// An organization (`policy`) that remembers devices, member `m` with an authenticator app and a
/// verified phone; the application's and the support desk's roles.
fn desk(prefix: &str, policy: &str) -> Desk {
    let mut superuser = connect();
    let org = new_organization(&mut superuser, prefix);
    json(
        &mut superuser,
        "SELECT mfa.organization_upsert($1, $2, remember_device_days => 30)",
        &[&org, &policy],
    );
    json(
        &mut superuser,
        "SELECT mfa.member_upsert($1, 'm', '+14155550188', mfa_phone_number_verified => true)",
        &[&org],
    );
    json(
        &mut superuser,
        "SELECT mfa.totp_migrate($1, 'm', $2)",
        &[&org, &SECRET],
    );
    let (app_role, admin_role, _) = application_roles(&mut superuser, prefix);
    let app = connect_to(&database_url_as(&app_role));
    let admin = connect_to(&database_url_as(&admin_role));
    Desk {
        superuser,
        app,
        admin,
        org,
        step: -1,
    }
}

impl Desk {
    /// A login of `m` with its TOTP code proven: its token.
    fn proven_login(&mut self) -> String {
        assert!(self.step <= 1, "at most three proven logins a test");
        let (_, token) = start_login(&mut self.app, &self.org, "m");
        let code = totp_at(SECRET, self.step);
        self.step += 1;
        let answer = json(
            &mut self.app,
            "SELECT mfa.totp_authenticate($1, 'm', $2, $3)",
            &[&self.org, &code, &token],
        );
        assert_eq!(answer["status_code"], 200, "{answer}");
        token
    }

    fn app_refused(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> (String, String) {
        let e = self
            .app
            .query_one(sql, params)
            .err()
            .unwrap_or_else(|| panic!("{sql} succeeded"));
        sql_error(&e)
    }

    fn member(&mut self) -> Value {
        json(
            &mut self.superuser,
            "SELECT mfa.member_get($1, 'm')",
            &[&self.org],
        )
    }

    fn devices(&mut self) -> i64 {
        self.superuser
            .query_one(
                "SELECT count(*) FROM mfa.remembered_devices WHERE organization_id = $1",
                &[&self.org],
            )
            .unwrap()
            .get(0)
    }
}

#[test]
fn a_member_removes_a_factor_only_with_a_fresh_second_factor() {
    let mut d = desk("self-remove", "OPTIONAL");
    let org = d.org.clone();
    let delete = "SELECT mfa.member_delete_totp($1, 'm', $2)";
    // No token, or a token that proved nothing yet.
    let none: Option<String> = None;
    let (state, message) = d.app_refused(delete, &[&org, &none]);
    assert_eq!(state, "28000", "{message}");
    let (_, bare) = start_login(&mut d.app, &org, "m");
    let (state, message) = d.app_refused(delete, &[&org, &Some(bare.clone())]);
    assert_eq!(
        (state.as_str(), message.starts_with("insufficient_factors")),
        ("28000", true),
        "{message}"
    );
    // A factor proven in a transaction rolled back is not on the token.
    let mut tx = d.app.transaction().unwrap();
    let proven: Value = tx
        .query_one(
            "SELECT mfa.totp_authenticate($1, 'm', $2, $3)",
            &[&org, &totp_now(SECRET), &bare],
        )
        .unwrap()
        .get(0);
    assert_eq!(proven["status_code"], 200, "{proven}");
    tx.rollback().unwrap();
    let (state, _) = d.app_refused(delete, &[&org, &Some(bare)]);
    assert_eq!(state, "28000");
    // A token that has expired (its second factor with it).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let stale = d.proven_login();
    d.superuser
        .execute(
            "UPDATE mfa.intermediate_sessions SET expires_at = now() - interval '1 second'
              WHERE organization_id = $1",
            &[&org],
        )
        .unwrap();
    let (state, message) = d.app_refused(delete, &[&org, &Some(stale)]);
    assert!(
        message.starts_with("intermediate_session_not_found"),
        "{state} {message}"
    );
    // A fresh one: removed, and the member's remembered devices with it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let fresh = d.proven_login();
    let device = json(
        &mut d.app,
        "SELECT mfa.remembered_device_create($1, 'm', $2)",
        &[&org, &fresh],
    );
    assert_eq!(device["status_code"], 200, "{device}");
    assert_eq!(d.devices(), 1);
    let removed = json(&mut d.app, delete, &[&org, &Some(fresh)]);
    assert_eq!(removed["totp_registration_id"], Value::Null, "{removed}");
    assert_eq!(d.devices(), 0);
    let by: String = d
        .superuser
        .query_one(
            "SELECT details ->> 'by' FROM mfa.events WHERE organization_id = $1 AND event_type = 'totp.deleted'",
            &[&org],
        )
        .unwrap()
        .get(0);
    assert_eq!(by, "member");
}

#[test]
fn the_last_factor_a_required_organization_demands_is_the_support_desks_to_remove() {
    let mut d = desk("self-last", "REQUIRED_FOR_ALL");
    let org = d.org.clone();
    // The phone goes first (the app stays)…
    let token = d.proven_login();
    let removed = json(
        &mut d.app,
        "SELECT mfa.member_delete_mfa_phone_number($1, 'm', $2)",
        &[&org, &token],
    );
    assert_eq!(removed["mfa_phone_number"], Value::Null, "{removed}");
    // … the app, now the last factor, does not.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let token = d.proven_login();
    let (state, message) = d.app_refused(
        "SELECT mfa.member_delete_totp($1, 'm', $2)",
        &[&org, &token],
    );
    assert_eq!(state, "55000", "{message}");
    assert!(
        message.starts_with("cannot_remove_last_mfa_factor"),
        "{message}"
    );
    // mfa_admin removes it, without a token.
    let removed = json(
        &mut d.admin,
        "SELECT mfa.member_delete_totp($1, 'm')",
        &[&org],
    );
    assert_eq!(removed["totp_registration_id"], Value::Null, "{removed}");
}

#[test]
fn the_support_desk_resets_a_members_mfa() {
    let mut d = desk("self-reset", "REQUIRED_FOR_ALL");
    let org = d.org.clone();
    let token = d.proven_login();
    json(
        &mut d.app,
        "SELECT mfa.remembered_device_create($1, 'm', $2)",
        &[&org, &token],
    );
    let (_, in_progress) = start_login(&mut d.app, &org, "m");
    // Not the application's to do.
    let (state, _) = d.app_refused("SELECT mfa.member_reset_mfa($1, 'm')", &[&org]);
    assert_eq!(state, "42501");
    let reset = json(
        &mut d.admin,
        "SELECT mfa.member_reset_mfa($1, 'm')",
        &[&org],
    );
    for (field, expected) in [
        ("mfa_enrolled", Value::Bool(false)),
        ("mfa_phone_number", Value::Null),
        ("mfa_phone_number_verified", Value::Bool(false)),
        ("totp_registration_id", Value::Null),
        ("default_mfa_method", Value::Null),
    ] {
        assert_eq!(reset[field], expected, "{field}: {reset}");
    }
    assert_eq!(d.devices(), 0);
    let left: i64 = d
        .superuser
        .query_one(
            "SELECT (SELECT count(*) FROM mfa.recovery_codes WHERE organization_id = $1)
                  + (SELECT count(*) FROM mfa.totp_registrations WHERE organization_id = $1)
                  + (SELECT count(*) FROM mfa.intermediate_sessions WHERE organization_id = $1)",
            &[&org],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    // The login that was in progress is gone with its token.
    let (_, message) = d.app_refused(
        "SELECT mfa.check_session_policy($1, 'm', $2)",
        &[&org, &in_progress],
    );
    assert!(
        message.contains("intermediate_session_not_found"),
        "{message}"
    );
    // At the next login the member enrolls again.
    let (login, _) = start_login(&mut d.app, &org, "m");
    assert_eq!(
        login["mfa_required"]["member_options"]["totp_registration_id"],
        Value::Null
    );
}

#[test]
fn a_verified_phone_is_replaced_only_when_asked_and_then_revokes_devices() {
    let mut d = desk("self-phone", "OPTIONAL");
    let org = d.org.clone();
    let token = d.proven_login();
    json(
        &mut d.app,
        "SELECT mfa.remembered_device_create($1, 'm', $2)",
        &[&org, &token],
    );
    let e = d
        .admin
        .query_one("SELECT mfa.member_upsert($1, 'm', '+14155550199')", &[&org])
        .unwrap_err();
    let (state, message) = sql_error(&e);
    assert_eq!(state, "55000", "{message}");
    assert!(
        message.starts_with("active_mfa_phone_number_exists"),
        "{message}"
    );
    assert_eq!(d.member()["mfa_phone_number"], "+14155550188");
    let replaced = json(
        &mut d.admin,
        "SELECT mfa.member_upsert($1, 'm', '+14155550199', replace_mfa_phone_number => true)",
        &[&org],
    );
    assert_eq!(replaced["mfa_phone_number"], "+14155550199", "{replaced}");
    assert_eq!(replaced["mfa_phone_number_verified"], false);
    assert_eq!(
        d.devices(),
        0,
        "a new number revokes the remembered devices"
    );
    // An import says the number is verified.
    let imported = json(
        &mut d.admin,
        "SELECT mfa.member_upsert($1, 'm', mfa_phone_number_verified => true)",
        &[&org],
    );
    assert_eq!(imported["mfa_phone_number_verified"], true, "{imported}");
}

#[test]
fn a_migration_imports_members_in_bulk_and_reports_each() {
    let mut superuser = connect();
    let org = new_organization(&mut superuser, "import");
    let members = serde_json::json!([
        {"member_id": "ann", "mfa_phone_number": "+14155550101", "mfa_phone_number_verified": true,
         "default_mfa_method": "sms_otp"},
        {"member_id": "bob", "totp_secret": SECRET, "recovery_codes": ["aaaa-bbbb-cccc"],
         "mfa_enrolled": true, "default_mfa_method": "totp"},
        {"member_id": "cy", "totp_secret": SECRET},
        {"member_id": "dee", "mfa_phone_number": "not a phone"},
        {"member_id": "eve", "totp_secret": "not base32!"},
        {"member_id": "fay", "default_mfa_method": "totp"},
        {"member_id": "", "mfa_enrolled": true},
        {"member_id": "gus", "colour": "blue"},
        "not an object"
    ]);
    let answer = json(
        &mut superuser,
        "SELECT mfa.members_import($1, $2)",
        &[&org, &members],
    );
    assert_eq!(
        (answer["imported"].clone(), answer["failed"].clone()),
        (3.into(), 6.into()),
        "{answer}"
    );
    let results = answer["results"].as_array().unwrap();
    let kinds: Vec<&str> = results
        .iter()
        .map(|r| r["error_type"].as_str().unwrap_or("ok"))
        .collect();
    assert_eq!(
        kinds,
        [
            "ok",
            "ok",
            "ok",
            "invalid_phone_number",
            "invalid_totp_secret",
            "default_mfa_member_missing_factor",
            "invalid_member_id",
            "invalid_argument",
            "invalid_argument"
        ],
        "{answer}"
    );
    // Codes given are imported, none given: new ones, shown in the answer once.
    assert_eq!(results[1].get("recovery_codes"), None);
    assert_eq!(
        results[2]["recovery_codes"].as_array().map(Vec::len),
        Some(10)
    );
    let ann = json(&mut superuser, "SELECT mfa.member_get($1, 'ann')", &[&org]);
    assert_eq!(
        (
            ann["mfa_phone_number_verified"].clone(),
            ann["default_mfa_method"].clone()
        ),
        (true.into(), "sms_otp".into())
    );
    // A member that failed left nothing behind: not even the member (fay's default came last).
    let left: i64 = superuser
        .query_one(
            "SELECT count(*) FROM mfa.members WHERE organization_id = $1",
            &[&org],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 3, "ann, bob and cy only");
    let bob = json(
        &mut superuser,
        "SELECT mfa.recovery_codes_get($1, 'bob')",
        &[&org],
    );
    assert_eq!(bob["recovery_codes_remaining"], 1, "{bob}");
}

#[test]
fn a_login_that_proved_a_removed_factor_dies_with_it() {
    let mut d = desk("self-stale", "REQUIRED_FOR_ALL");
    let org = d.org.clone();
    // A login proven with the app (by a thief who had it, say)…
    let stale = d.proven_login();
    // … then the support desk removes the app (the phone stays).
    json(
        &mut d.admin,
        "SELECT mfa.member_delete_totp($1, 'm')",
        &[&org],
    );
    // The login's proof is gone with the app: no device, no session, no removal with it.
    for sql in [
        "SELECT mfa.remembered_device_create($1, 'm', $2)",
        "SELECT mfa.check_session_policy($1, 'm', $2)",
        "SELECT mfa.member_delete_mfa_phone_number($1, 'm', $2)",
    ] {
        let (_, message) = d.app_refused(sql, &[&org, &stale]);
        assert!(
            message.contains("intermediate_session_not_found"),
            "{sql}: {message}"
        );
    }
    // The same after a phone number is replaced.
    json(
        &mut d.admin,
        "SELECT mfa.totp_migrate($1, 'm', $2)",
        &[&org, &SECRET],
    );
    let stale = d.proven_login();
    json(
        &mut d.admin,
        "SELECT mfa.member_upsert($1, 'm', '+14155550177', replace_mfa_phone_number => true)",
        &[&org],
    );
    let (_, message) = d.app_refused(
        "SELECT mfa.remembered_device_create($1, 'm', $2)",
        &[&org, &stale],
    );
    assert!(
        message.contains("intermediate_session_not_found"),
        "{message}"
    );
}

#[test]
fn the_last_factor_the_organization_allows_is_the_last_factor() {
    let mut d = desk("self-allowed", "REQUIRED_FOR_ALL");
    let org = d.org.clone();
    // Restricted to SMS: the app the member also has counts for nothing.
    json(
        &mut d.admin,
        "SELECT mfa.organization_upsert($1, NULL, 'RESTRICTED', ARRAY['sms_otp'])",
        &[&org],
    );
    let (_, token) = start_login(&mut d.app, &org, "m");
    json(
        &mut d.app,
        "SELECT mfa.otp_sms_send($1, 'm', intermediate_session_token => $2)",
        &[&org, &token],
    );
    let code = sms_code(&mut d.superuser, &org);
    let proven = json(
        &mut d.app,
        "SELECT mfa.otp_sms_authenticate($1, 'm', $2, $3)",
        &[&org, &code, &token],
    );
    assert_eq!(proven["status_code"], 200, "{proven}");
    let (state, message) = d.app_refused(
        "SELECT mfa.member_delete_mfa_phone_number($1, 'm', $2)",
        &[&org, &token],
    );
    assert_eq!(state, "55000", "{message}");
    assert!(
        message.starts_with("cannot_remove_last_mfa_factor"),
        "{message}"
    );
}

#[test]
fn an_import_stops_when_its_statement_is_cancelled() {
    let mut superuser = connect();
    let org = new_organization(&mut superuser, "import-cancel");
    let members: Vec<Value> = (0..3000)
        .map(|i| serde_json::json!({"member_id": format!("m{i}"), "totp_secret": SECRET}))
        .collect();
    superuser
        .batch_execute("SET statement_timeout = '200ms'")
        .unwrap();
    let e = superuser
        .query_one(
            "SELECT mfa.members_import($1, $2)",
            &[&org, &Value::Array(members)],
        )
        .expect_err("the import outlasts its statement_timeout");
    assert_eq!(sql_error(&e).0, "57014", "{e}");
    superuser.batch_execute("RESET statement_timeout").unwrap();
    let left: i64 = superuser
        .query_one(
            "SELECT count(*) FROM mfa.members WHERE organization_id = $1",
            &[&org],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the cancelled call left nothing");
}
