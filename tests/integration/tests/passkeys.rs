//! Passkeys (WebAuthn) over real connections, with a software authenticator (ES256 and EdDSA)
//! that answers the options the database hands out as a browser would: enrollment during a
//! REQUIRED_FOR_ALL login, logins, replays, one assertion raced over 8 connections, the lockout,
//! rollbacks, a method restriction, a cloned authenticator, a foreign origin, and step-up on a
//! guarded session that an RLS policy asks to be phishing-resistant.

mod common;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::passkey::{Authenticator, ORIGIN};
use common::*;
use postgres::Client;
use serde_json::{json, Value};

const DOMAIN: &str = "passkeys.test";

fn setup(client: &mut Client) {
    json(
        client,
        "SELECT to_jsonb(mfa.webauthn_allowed_origins_set(ARRAY[$1, 'http://localhost:8080']))",
        &[&ORIGIN],
    );
}

/// A REQUIRED_FOR_ALL organization with member `m`, who enrolls `authenticator` during their
/// first login: the answer of `webauthn_register`, which lets that login's session in.
fn enrolled(
    client: &mut Client,
    prefix: &str,
    authenticator: &mut Authenticator,
) -> (String, Value) {
    let org = required_organization(client, prefix);
    let (registered, token) = register_in_login(client, &org, authenticator);
    let policy = json(
        client,
        "SELECT mfa.check_session_policy($1, 'm', $2)",
        &[&org, &token],
    );
    assert_eq!(policy["status_code"], 200, "{policy}");
    (org, registered)
}

/// Options and the authenticator's answer for a login (or step-up) of `token`.
fn assertion(
    client: &mut Client,
    org: &str,
    token: &str,
    authenticator: &mut Authenticator,
) -> Value {
    let start = json(
        client,
        "SELECT mfa.webauthn_authenticate_start($1, 'm', $2, $3)",
        &[&org, &DOMAIN, &token],
    );
    authenticator.assert(&start["public_key_credential_request_options"])
}

fn authenticate(client: &mut Client, org: &str, response: &Value, token: &str) -> Value {
    json(
        client,
        "SELECT mfa.webauthn_authenticate($1, 'm', $2, $3)",
        &[&org, response, &token],
    )
}

#[test]
fn enrollment_during_a_required_login_then_logins_es256_and_eddsa() {
    for (name, mut authenticator) in [
        ("es", Authenticator::es256()),
        ("ed", Authenticator::eddsa()),
    ] {
        let mut client = connect();
        let (org, registered) = enrolled(&mut client, &format!("pk-{name}"), &mut authenticator);
        assert_eq!(registered["member"]["mfa_enrolled"], true, "{registered}");
        assert_eq!(registered["member"]["default_mfa_method"], "webauthn");
        assert_eq!(
            registered["recovery_codes"].as_array().map(Vec::len),
            Some(10)
        );
        let factor = &registered["authentication_factors"][1];
        assert_eq!(factor["type"], "webauthn", "{registered}");
        assert_eq!(factor["delivery_method"], "webauthn_registration");
        assert_eq!(factor["webauthn_factor"]["domain"], DOMAIN);

        for _ in 0..3 {
            let (login, token) = start_login(&mut client, &org, "m");
            assert_eq!(
                login["mfa_required"]["member_options"]["webauthn_registrations"],
                1
            );
            let response = assertion(&mut client, &org, &token, &mut authenticator);
            let answer = authenticate(&mut client, &org, &response, &token);
            assert_eq!(answer["status_code"], 200, "{answer}");
            let policy = json(
                &mut client,
                "SELECT mfa.check_session_policy($1, 'm', $2)",
                &[&org, &token],
            );
            assert_eq!(policy["status_code"], 200, "{policy}");
        }
        let listed = json(
            &mut client,
            "SELECT mfa.webauthn_registrations_get($1, 'm')",
            &[&org],
        );
        let passkey = &listed["webauthn_registrations"][0];
        assert!(passkey["last_authenticated_at"].is_string(), "{listed}");
        assert!(passkey.get("public_key").is_none() && passkey.get("credential_id").is_none());
        let stored: i64 = client
            .query_one(
                "SELECT sign_count FROM mfa.webauthn_registrations WHERE organization_id = $1",
                &[&org],
            )
            .unwrap()
            .get(0);
        assert_eq!(stored, 3);
    }
}

#[test]
fn an_assertion_works_once_also_when_raced_and_replayed() {
    let mut client = connect();
    let mut authenticator = Authenticator::es256();
    let (org, _) = enrolled(&mut client, "pk-race", &mut authenticator);
    let (_, token) = start_login(&mut client, &org, "m");
    let response = assertion(&mut client, &org, &token, &mut authenticator);
    let (org2, token2, response2) = (org.clone(), token.clone(), response.clone());
    let answers = race(8, move |c, _| authenticate(c, &org2, &response2, &token2));
    let successes = answers.iter().filter(|a| a["status_code"] == 200).count();
    assert_eq!(successes, 1, "{answers:?}");
    for refused in answers.iter().filter(|a| a["status_code"] != 200) {
        assert!(
            matches!(
                refused["error_type"].as_str(),
                Some("invalid_webauthn_challenge") | Some("too_many_requests")
            ),
            "{refused}"
        );
    }
    // Replayed later (past the per-second limit the race met), against a fresh challenge of the
    // same login: the signature is over the old one.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    json(
        &mut client,
        "SELECT mfa.webauthn_authenticate_start($1, 'm', $2, $3)",
        &[&org, &DOMAIN, &token],
    );
    let replayed = authenticate(&mut client, &org, &response, &token);
    assert_eq!(
        replayed["error_type"], "invalid_webauthn_challenge",
        "{replayed}"
    );
    // An assertion made for one login does not serve another.
    let (_, other) = start_login(&mut client, &org, "m");
    let for_first = assertion(&mut client, &org, &token, &mut authenticator);
    let crossed = authenticate(&mut client, &org, &for_first, &other);
    assert_eq!(
        crossed["error_type"], "invalid_webauthn_challenge",
        "{crossed}"
    );
}

#[test]
fn bad_signatures_lock_the_member() {
    let mut client = connect();
    let mut authenticator = Authenticator::eddsa();
    let (org, _) = enrolled(&mut client, "pk-lock", &mut authenticator);
    let (_, token) = start_login(&mut client, &org, "m");
    let mut locked_after = None;
    for i in 1..=12 {
        let mut response = assertion(&mut client, &org, &token, &mut authenticator);
        let signature = response["response"]["signature"]
            .as_str()
            .unwrap()
            .to_string();
        let mut bytes = B64.decode(signature).unwrap();
        bytes[10] ^= 1;
        response["response"]["signature"] = json!(B64.encode(bytes));
        let answer = authenticate(&mut client, &org, &response, &token);
        assert_eq!(
            answer["status_code"].as_i64().map(|s| s >= 400),
            Some(true),
            "{answer}"
        );
        if answer["error_type"] == "user_lock_limit_reached" {
            locked_after = Some(i - 1);
            break;
        }
        assert_eq!(answer["error_type"], "unable_to_auth_webauthn", "{answer}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert_eq!(locked_after, Some(10), "the default lock threshold is 10");
    // Locked: even a good assertion is refused.
    let good = assertion(&mut client, &org, &token, &mut authenticator);
    let answer = authenticate(&mut client, &org, &good, &token);
    assert_eq!(answer["error_type"], "user_lock_limit_reached", "{answer}");
}

#[test]
fn rollbacks_neither_keep_a_passkey_nor_spend_a_login_twice() {
    let mut client = connect();
    setup(&mut client);
    let org = organization_with_member(&mut client, "pk-rollback", "m");
    let mut authenticator = Authenticator::es256();
    // A registration rolled back leaves nothing behind.
    let mut tx = client.transaction().unwrap();
    let start = json_tx(
        &mut tx,
        "SELECT mfa.webauthn_register_start($1, 'm', $2)",
        &[&org, &DOMAIN],
    );
    let response = authenticator.register(&start["public_key_credential_creation_options"]);
    let registered = json_tx(
        &mut tx,
        "SELECT mfa.webauthn_register($1, 'm', $2)",
        &[&org, &response],
    );
    assert_eq!(registered["status_code"], 200, "{registered}");
    tx.rollback().unwrap();
    let count: i32 = client
        .query_one(
            "SELECT webauthn_registrations FROM mfa.members WHERE organization_id = $1",
            &[&org],
        )
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
    // Registered for real this time.
    let mut authenticator = Authenticator::es256();
    let start = json(
        &mut client,
        "SELECT mfa.webauthn_register_start($1, 'm', $2)",
        &[&org, &DOMAIN],
    );
    let response = authenticator.register(&start["public_key_credential_creation_options"]);
    let registered = json(
        &mut client,
        "SELECT mfa.webauthn_register($1, 'm', $2)",
        &[&org, &response],
    );
    assert_eq!(registered["status_code"], 200, "{registered}");
    // A success rolled back is undone whole (challenge and counter with it): the assertion is
    // good once more, and then never again.
    let (_, token) = start_login(&mut client, &org, "m");
    let response = assertion(&mut client, &org, &token, &mut authenticator);
    let mut tx = client.transaction().unwrap();
    let answer = json_tx(
        &mut tx,
        "SELECT mfa.webauthn_authenticate($1, 'm', $2, $3)",
        &[&org, &response, &token],
    );
    assert_eq!(answer["status_code"], 200, "{answer}");
    tx.rollback().unwrap();
    assert_eq!(
        authenticate(&mut client, &org, &response, &token)["status_code"],
        200
    );
    let again = authenticate(&mut client, &org, &response, &token);
    assert_eq!(again["error_type"], "invalid_webauthn_challenge", "{again}");
}

/// The error a statement that must fail raises.
fn refused(
    client: &mut Client,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> postgres::Error {
    client
        .query_one(sql, params)
        .err()
        .unwrap_or_else(|| panic!("{sql} succeeded"))
}

fn json_tx(
    tx: &mut postgres::Transaction,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Value {
    tx.query_one(sql, params)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

#[test]
fn a_restricted_organization_refuses_passkeys() {
    let mut client = connect();
    setup(&mut client);
    let org = organization_with_member(&mut client, "pk-restricted", "m");
    json(
        &mut client,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL', 'RESTRICTED', ARRAY['totp'])",
        &[&org],
    );
    let (_, token) = start_login(&mut client, &org, "m");
    let e = refused(
        &mut client,
        "SELECT mfa.webauthn_register_start($1, 'm', $2, $3)",
        &[&org, &DOMAIN, &token],
    );
    assert_eq!(sql_error(&e).0, "42501", "{e}");
    let e = refused(
        &mut client,
        "SELECT mfa.webauthn_authenticate($1, 'm', '{}'::jsonb, $2)",
        &[&org, &token],
    );
    assert_eq!(sql_error(&e).0, "42501", "{e}");
}

#[test]
fn a_cloned_authenticator_is_caught_and_a_foreign_origin_refused() {
    let mut client = connect();
    let mut authenticator = Authenticator::es256();
    let (org, _) = enrolled(&mut client, "pk-clone", &mut authenticator);
    let (_, token) = start_login(&mut client, &org, "m");
    let response = assertion(&mut client, &org, &token, &mut authenticator);
    assert_eq!(
        authenticate(&mut client, &org, &response, &token)["status_code"],
        200
    );
    // A copy of the key whose counter lags behind.
    authenticator.counter = 0;
    let (_, token) = start_login(&mut client, &org, "m");
    let cloned = assertion(&mut client, &org, &token, &mut authenticator);
    let answer = authenticate(&mut client, &org, &cloned, &token);
    assert_eq!(answer["error_type"], "webauthn_clone_suspected", "{answer}");
    let flagged = json(
        &mut client,
        "SELECT mfa.webauthn_registrations_get($1, 'm')",
        &[&org],
    );
    assert!(
        flagged["webauthn_registrations"][0]["clone_suspected_at"].is_string(),
        "{flagged}"
    );
    let events: i64 = client
        .query_one(
            "SELECT count(*) FROM mfa.events WHERE organization_id = $1 AND event_type = 'webauthn.clone_suspected'",
            &[&org],
        )
        .unwrap()
        .get(0);
    assert_eq!(events, 1);
    // From then on the passkey is refused: no challenge is handed out for it.
    let e = refused(
        &mut client,
        "SELECT mfa.webauthn_authenticate_start($1, 'm', $2, $3)",
        &[&org, &DOMAIN, &token],
    );
    assert!(
        sql_error(&e).1.contains("webauthn_registration_not_found"),
        "{e}"
    );

    // A page of another origin (a phishing site relaying the options) gets a refusal.
    let mut phished = Authenticator::es256();
    let (org, _) = enrolled(&mut client, "pk-origin", &mut phished);
    let (_, token) = start_login(&mut client, &org, "m");
    phished.origin = "https://passkeys-test.evil.example".into();
    let response = assertion(&mut client, &org, &token, &mut phished);
    let answer = authenticate(&mut client, &org, &response, &token);
    assert_eq!(answer["error_type"], "unable_to_auth_webauthn", "{answer}");
    assert!(
        answer["error_message"].as_str().unwrap().contains("origin"),
        "{answer}"
    );
}

#[test]
fn step_up_by_passkey_on_a_guarded_session_meets_a_phishing_resistant_policy() {
    let mut superuser = connect();
    setup(&mut superuser);
    let mut authenticator = Authenticator::es256();
    let (org, _) = enrolled(&mut superuser, "pk-stepup", &mut authenticator);
    let secret = "JBSWY3DPEHPK3PXP";
    json(
        &mut superuser,
        "SELECT mfa.totp_migrate($1, 'm', $2)",
        &[&org, &secret],
    );
    let (owner_role, admin_role, schema) = application_roles(&mut superuser, "pk");
    let mut owner = connect_to(&database_url_as(&owner_role));
    owner
        .batch_execute(&format!(
            "CREATE TABLE {schema}.sessions (
                 id serial PRIMARY KEY, organization_id text NOT NULL, member_id text NOT NULL,
                 intermediate_session_token text, authentication_factors jsonb);
             -- Payroll needs a phishing-resistant session: a row per session id the app sets.
             CREATE TABLE {schema}.payroll (session_id int, amount int);
             ALTER TABLE {schema}.payroll ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
             CREATE POLICY phishing_resistant ON {schema}.payroll USING (EXISTS (
                 SELECT FROM {schema}.sessions s
                  WHERE s.id = payroll.session_id
                    AND mfa.session_phishing_resistant(s.organization_id, s.member_id, s.authentication_factors)));"
        ))
        .unwrap();
    connect_to(&database_url_as(&admin_role))
        .execute(
            &format!("SELECT mfa.session_table_guard('{schema}.sessions')"),
            &[],
        )
        .unwrap();
    // A login by TOTP: a session, but not a phishing-resistant one.
    let (_, token) = start_login(&mut owner, &org, "m");
    let totp = json(
        &mut owner,
        "SELECT mfa.totp_authenticate($1, 'm', $2, $3)",
        &[&org, &totp_now(secret), &token],
    );
    assert_eq!(totp["status_code"], 200, "{totp}");
    let id: i32 = owner
        .query_one(
            &format!("INSERT INTO {schema}.sessions (organization_id, member_id, intermediate_session_token) VALUES ($1, 'm', $2) RETURNING id"),
            &[&org, &token],
        )
        .unwrap()
        .get(0);
    owner
        .execute(
            &format!("INSERT INTO {schema}.payroll VALUES ($1, 100)"),
            &[&id],
        )
        .unwrap_err(); // the policy's WITH CHECK (its USING) refuses it
    superuser
        .execute(
            &format!("INSERT INTO {schema}.payroll VALUES ($1, 100)"),
            &[&id],
        )
        .unwrap();
    let visible = |owner: &mut Client| -> i64 {
        owner
            .query_one(&format!("SELECT count(*) FROM {schema}.payroll"), &[])
            .unwrap()
            .get(0)
    };
    assert_eq!(visible(&mut owner), 0);
    // Step-up with the passkey: the session becomes phishing-resistant.
    let step_up = json(&mut owner, "SELECT mfa.step_up_start($1, 'm')", &[&org]);
    let step_token = token_of(&step_up);
    let response = assertion(&mut owner, &org, &step_token, &mut authenticator);
    let answer = authenticate(&mut owner, &org, &response, &step_token);
    assert_eq!(answer["status_code"], 200, "{answer}");
    owner
        .execute(
            &format!("UPDATE {schema}.sessions SET intermediate_session_token = $2 WHERE id = $1"),
            &[&id, &step_token],
        )
        .unwrap();
    assert_eq!(visible(&mut owner), 1);
    let amr: Vec<String> = owner
        .query_one(
            &format!("SELECT mfa.session_amr(organization_id, member_id, authentication_factors) FROM {schema}.sessions WHERE id = $1"),
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(amr, ["mfa", "otp", "pwd", "swk", "user"]);
    // Factors copied as they are onto a row that got past the gate carry no seal for it.
    let forged: bool = superuser
        .query_one(
            &format!("SELECT mfa.session_phishing_resistant($1, 'someone-else', authentication_factors) FROM {schema}.sessions WHERE id = $2"),
            &[&org, &id],
        )
        .unwrap()
        .get(0);
    assert!(!forged);
}

/// A REQUIRED_FOR_ALL organization with member `m`, and the origins set.
fn required_organization(client: &mut Client, prefix: &str) -> String {
    setup(client);
    let org = organization_with_member(client, prefix, "m");
    json(
        client,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL')",
        &[&org],
    );
    org
}

/// `m` registers `authenticator` during a login of theirs: the answer.
fn register_in_login(
    client: &mut Client,
    org: &str,
    authenticator: &mut Authenticator,
) -> (Value, String) {
    let (_, token) = start_login(client, org, "m");
    let start = json(
        client,
        "SELECT mfa.webauthn_register_start($1, 'm', $2, $3)",
        &[&org, &DOMAIN, &token],
    );
    let response = authenticator.register(&start["public_key_credential_creation_options"]);
    let answer = json(
        client,
        "SELECT mfa.webauthn_register($1, 'm', $2, $3)",
        &[&org, &response, &token],
    );
    assert_eq!(answer["status_code"], 200, "{answer}");
    (answer, token)
}

#[test]
fn recovery_codes_of_an_app_never_activated_die_with_the_first_passkey() {
    let mut client = connect();
    let org = required_organization(&mut client, "pk-stale-codes");
    // Whoever holds mfa_app starts an authenticator app for the member (who has no factor yet)
    // and keeps its recovery codes, never activating it.
    let pending = json(&mut client, "SELECT mfa.totp_create($1, 'm')", &[&org]);
    let stolen = pending["recovery_codes"][0].as_str().unwrap().to_string();
    // The member enrolls a passkey: fresh codes, the stolen ones dead.
    let mut authenticator = Authenticator::es256();
    let (registered, _) = register_in_login(&mut client, &org, &mut authenticator);
    assert_eq!(
        registered["recovery_codes"].as_array().map(Vec::len),
        Some(10),
        "{registered}"
    );
    let (_, token) = start_login(&mut client, &org, "m");
    let recovered = json(
        &mut client,
        "SELECT mfa.recovery_codes_recover($1, 'm', $2, $3)",
        &[&org, &stolen, &token],
    );
    assert_eq!(
        recovered["error_type"], "invalid_recovery_code",
        "{recovered}"
    );
}

#[test]
fn an_app_started_before_another_factor_goes_when_that_factor_is_enrolled() {
    let mut client = connect();
    // A passkey enrolled after the app was started.
    let org = required_organization(&mut client, "pk-pending-app");
    let pending = json(&mut client, "SELECT mfa.totp_create($1, 'm')", &[&org]);
    let secret = pending["secret"].as_str().unwrap().to_string();
    register_in_login(&mut client, &org, &mut Authenticator::eddsa());
    let (_, token) = start_login(&mut client, &org, "m");
    let e = refused(
        &mut client,
        "SELECT mfa.totp_authenticate($1, 'm', $2, $3)",
        &[&org, &totp_now(&secret), &token],
    );
    assert!(sql_error(&e).1.starts_with("totp_not_found"), "{e}");
    // A phone verified after the app was started.
    let org = new_organization(&mut client, "pk-pending-app-sms");
    json(
        &mut client,
        "SELECT mfa.member_upsert($1, 'm', '+14155550142')",
        &[&org],
    );
    let pending = json(&mut client, "SELECT mfa.totp_create($1, 'm')", &[&org]);
    let secret = pending["secret"].as_str().unwrap().to_string();
    json(&mut client, "SELECT mfa.otp_sms_send($1, 'm')", &[&org]);
    let code = sms_code(&mut client, &org);
    let verified = json(
        &mut client,
        "SELECT mfa.otp_sms_authenticate($1, 'm', $2)",
        &[&org, &code],
    );
    assert_eq!(verified["status_code"], 200, "{verified}");
    let (_, token) = start_login(&mut client, &org, "m");
    let e = refused(
        &mut client,
        "SELECT mfa.totp_authenticate($1, 'm', $2, $3)",
        &[&org, &totp_now(&secret), &token],
    );
    assert!(sql_error(&e).1.starts_with("totp_not_found"), "{e}");
}

#[test]
fn registering_a_passkey_is_not_a_phishing_resistant_sign_in() {
    let mut client = connect();
    let org = required_organization(&mut client, "pk-register-pr");
    let secret = "JBSWY3DPEHPK3PXP";
    json(
        &mut client,
        "SELECT mfa.totp_migrate($1, 'm', $2)",
        &[&org, &secret],
    );
    // A login proven by a (phishable) code registers a new passkey in the same login.
    let (_, token) = start_login(&mut client, &org, "m");
    let totp = json(
        &mut client,
        "SELECT mfa.totp_authenticate($1, 'm', $2, $3)",
        &[&org, &totp_now(secret), &token],
    );
    assert_eq!(totp["status_code"], 200, "{totp}");
    let mut authenticator = Authenticator::es256();
    let start = json(
        &mut client,
        "SELECT mfa.webauthn_register_start($1, 'm', $2, $3)",
        &[&org, &DOMAIN, &token],
    );
    let response = authenticator.register(&start["public_key_credential_creation_options"]);
    let registered = json(
        &mut client,
        "SELECT mfa.webauthn_register($1, 'm', $2, $3)",
        &[&org, &response, &token],
    );
    let factors = registered["authentication_factors"].clone();
    let (resistant, amr): (bool, Vec<String>) = client
        .query_one(
            "SELECT mfa.session_phishing_resistant($1::jsonb), mfa.session_amr($1::jsonb)",
            &[&factors],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert!(!resistant, "{factors}");
    assert!(
        !amr.contains(&"hwk".to_string()),
        "unattested keys are software keys: {amr:?}"
    );
    // A sign-in with it is.
    let (_, token) = start_login(&mut client, &org, "m");
    let response = assertion(&mut client, &org, &token, &mut authenticator);
    let signed_in = authenticate(&mut client, &org, &response, &token);
    let resistant: bool = client
        .query_one(
            "SELECT mfa.session_phishing_resistant($1::jsonb)",
            &[&signed_in["authentication_factors"]],
        )
        .unwrap()
        .get(0);
    assert!(resistant, "{signed_in}");
}

#[test]
fn recovery_codes_count_only_for_a_factor_the_organization_allows() {
    let mut client = connect();
    let org = required_organization(&mut client, "pk-codes-restricted");
    let migrated = json(
        &mut client,
        "SELECT mfa.totp_migrate($1, 'm', 'JBSWY3DPEHPK3PXP', ARRAY['aaaa-bbbb-cccc'])",
        &[&org],
    );
    assert_eq!(migrated["status_code"], 200, "{migrated}");
    json(
        &mut client,
        "SELECT mfa.organization_upsert($1, NULL, 'RESTRICTED', ARRAY['webauthn'])",
        &[&org],
    );
    let (_, token) = start_login(&mut client, &org, "m");
    let e = refused(
        &mut client,
        "SELECT mfa.recovery_codes_recover($1, 'm', 'aaaa-bbbb-cccc', $2)",
        &[&org, &token],
    );
    assert_eq!(sql_error(&e).0, "42501", "{e}");
}

#[test]
fn answers_that_arrive_out_of_order_are_stale_not_clones() {
    let mut client = connect();
    let mut authenticator = Authenticator::es256();
    let (org, _) = enrolled(&mut client, "pk-out-of-order", &mut authenticator);
    let (_, first) = start_login(&mut client, &org, "m");
    let (_, second) = start_login(&mut client, &org, "m");
    let for_first = assertion(&mut client, &org, &first, &mut authenticator);
    let for_second = assertion(&mut client, &org, &second, &mut authenticator);
    assert_eq!(
        authenticate(&mut client, &org, &for_second, &second)["status_code"],
        200
    );
    let late = authenticate(&mut client, &org, &for_first, &first);
    assert_eq!(late["error_type"], "invalid_webauthn_challenge", "{late}");
    // The passkey is not flagged: it signs in again.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (_, third) = start_login(&mut client, &org, "m");
    let response = assertion(&mut client, &org, &third, &mut authenticator);
    assert_eq!(
        authenticate(&mut client, &org, &response, &third)["status_code"],
        200
    );
}

#[test]
fn a_first_enrollment_answers_the_phone_masked() {
    let mut client = connect();
    setup(&mut client);
    let org = new_organization(&mut client, "pk-phone-mask");
    json(
        &mut client,
        "SELECT mfa.member_upsert($1, 'm', '+14155550123')",
        &[&org],
    );
    let mut authenticator = Authenticator::es256();
    let start = json(
        &mut client,
        "SELECT mfa.webauthn_register_start($1, 'm', $2)",
        &[&org, &DOMAIN],
    );
    let response = authenticator.register(&start["public_key_credential_creation_options"]);
    let registered = json(
        &mut client,
        "SELECT mfa.webauthn_register($1, 'm', $2)",
        &[&org, &response],
    );
    assert_eq!(registered["status_code"], 200, "{registered}");
    assert_eq!(
        registered["member"]["mfa_phone_number"], "+*******0123",
        "{registered}"
    );
}

#[test]
fn an_expired_challenge_and_another_domain_are_refused() {
    let mut client = connect();
    let mut authenticator = Authenticator::es256();
    let (org, _) = enrolled(&mut client, "pk-expired", &mut authenticator);
    let (_, token) = start_login(&mut client, &org, "m");
    let response = assertion(&mut client, &org, &token, &mut authenticator);
    // Five minutes later (the clock moved on, as far as the challenge knows).
    client
        .execute(
            "UPDATE mfa.webauthn_challenges SET expires_at = now() - interval '1 second'
              WHERE organization_id = $1",
            &[&org],
        )
        .unwrap();
    let late = authenticate(&mut client, &org, &response, &token);
    assert_eq!(late["error_type"], "invalid_webauthn_challenge", "{late}");
    // A passkey registered for passkeys.test, asked for under app.passkeys.test (the origin's
    // own host): the authenticator here signs for whatever it is asked (a browser would not even
    // find the passkey), the database refuses.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let start = json(
        &mut client,
        "SELECT mfa.webauthn_authenticate_start($1, 'm', 'app.passkeys.test', $2)",
        &[&org, &token],
    );
    let response = authenticator.assert(&start["public_key_credential_request_options"]);
    let elsewhere = authenticate(&mut client, &org, &response, &token);
    assert_eq!(
        elsewhere["error_type"], "unable_to_auth_webauthn",
        "{elsewhere}"
    );
    assert!(
        elsewhere["error_message"]
            .as_str()
            .unwrap()
            .contains("another domain"),
        "{elsewhere}"
    );
}

#[test]
fn a_passkey_flagged_as_cloned_is_refused_even_for_a_challenge_handed_out_before() {
    let mut client = connect();
    let mut authenticator = Authenticator::es256();
    let (org, _) = enrolled(&mut client, "pk-flagged", &mut authenticator);
    let (_, early) = start_login(&mut client, &org, "m");
    let early_options = json(
        &mut client,
        "SELECT mfa.webauthn_authenticate_start($1, 'm', $2, $3)",
        &[&org, &DOMAIN, &early],
    )["public_key_credential_request_options"]
        .clone();
    let (_, token) = start_login(&mut client, &org, "m");
    let response = assertion(&mut client, &org, &token, &mut authenticator);
    assert_eq!(
        authenticate(&mut client, &org, &response, &token)["status_code"],
        200
    );
    // The clone answers a newer challenge with an old counter: flagged.
    let mut clone = Authenticator {
        counter: 0,
        ..authenticator
    };
    let (_, token) = start_login(&mut client, &org, "m");
    let cloned = assertion(&mut client, &org, &token, &mut clone);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let answer = authenticate(&mut client, &org, &cloned, &token);
    assert_eq!(answer["error_type"], "webauthn_clone_suspected", "{answer}");
    // The challenge handed out before, answered with a counter that moved forward: still refused.
    clone.counter = 1000;
    let response = clone.assert(&early_options);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let answer = authenticate(&mut client, &org, &response, &early);
    assert_eq!(answer["error_type"], "webauthn_clone_suspected", "{answer}");
}
