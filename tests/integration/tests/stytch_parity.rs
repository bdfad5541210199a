//! What a backend written against Stytch reads in the answers (issue 37): the session factors'
//! `created_at` / `updated_at` as Stytch means them, the `organization` object beside the member,
//! the recovery code factor's `recovery_code_factor`, and Stytch's `error_type`s.

mod common;
use common::*;
use postgres::Client;
use serde_json::Value;

/// A guarded sessions table in a schema of its own; its name.
fn guarded_sessions(c: &mut Client) -> String {
    let schema = unique("parity").replace('-', "_");
    c.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.sessions (
             id serial PRIMARY KEY, organization_id text NOT NULL, member_id text NOT NULL,
             intermediate_session_token text, authentication_factors jsonb);
         SELECT mfa.session_table_guard('{schema}.sessions');"
    ))
    .unwrap();
    format!("{schema}.sessions")
}

/// Proves the SMS code sent to `ann` with `token`: the answer.
fn sms_proof(c: &mut Client, org: &str, token: &str) -> Value {
    json(
        c,
        "SELECT mfa.otp_sms_send($1, 'ann', intermediate_session_token => $2)",
        &[&org, &token],
    );
    let code = sms_code(c, org);
    let answer = json(
        c,
        "SELECT mfa.otp_sms_authenticate($1, 'ann', $2, $3)",
        &[&org, &code, &token],
    );
    assert_eq!(answer["status_code"], 200, "{answer}");
    answer
}

fn of_type<'a>(factors: &'a Value, kind: &str) -> &'a Value {
    factors
        .as_array()
        .and_then(|f| f.iter().find(|f| f["type"] == kind))
        .unwrap_or_else(|| panic!("no {kind} factor in {factors}"))
}

/// Stytch: `created_at` is when the factor was first authenticated (in the session), `updated_at`
/// when it last changed, `last_authenticated_at` when it was last authenticated. A step-up that
/// authenticates the same factor again moves the last two; `created_at` stays. The gate's seals
/// still verify over the answered shape, and an altered `created_at` does not.
#[test]
fn factor_times_are_stytch_s_and_survive_a_step_up() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "times", "ann");
    json(
        &mut c,
        "SELECT mfa.member_upsert($1, 'ann', '+14155550143', mfa_phone_number_verified => true)",
        &[&org],
    );
    let table = guarded_sessions(&mut c);
    let (_, token) = start_login(&mut c, &org, "ann");
    let proved = sms_proof(&mut c, &org, &token);
    for factor in proved["authentication_factors"].as_array().unwrap() {
        // A factor authenticated once: first and last authentication and last change are one time.
        assert_eq!(
            factor["created_at"], factor["last_authenticated_at"],
            "{factor}"
        );
        assert_eq!(
            factor["updated_at"], factor["last_authenticated_at"],
            "{factor}"
        );
    }
    let id: i32 = c
        .query_one(
            &format!("INSERT INTO {table} (organization_id, member_id, intermediate_session_token) VALUES ($1, 'ann', $2) RETURNING id"),
            &[&org, &token],
        )
        .unwrap()
        .get(0);
    let answered = |c: &mut Client| -> Value {
        c.query_one(
            &format!("SELECT mfa.session_verified_factors(organization_id, member_id, authentication_factors) FROM {table} WHERE id = $1"),
            &[&id],
        )
        .unwrap()
        .get(0)
    };
    let before = answered(&mut c);
    assert_eq!(before.as_array().unwrap().len(), 2, "{before}");
    let first_sms = of_type(&before, "otp").clone();
    assert_eq!(first_sms["created_at"], first_sms["last_authenticated_at"]);
    assert_eq!(first_sms["updated_at"], first_sms["last_authenticated_at"]);
    // The same answer as the login's.
    assert_eq!(
        first_sms["last_authenticated_at"],
        of_type(&proved["authentication_factors"], "otp")["last_authenticated_at"]
    );

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let step_up = json(&mut c, "SELECT mfa.step_up_start($1, 'ann')", &[&org]);
    let step_token = token_of(&step_up);
    sms_proof(&mut c, &org, &step_token);
    c.execute(
        &format!("UPDATE {table} SET intermediate_session_token = $2 WHERE id = $1"),
        &[&id, &step_token],
    )
    .unwrap();
    let after = answered(&mut c);
    assert_eq!(after.as_array().unwrap().len(), 2, "{after}");
    let sms = of_type(&after, "otp");
    assert_eq!(sms["created_at"], first_sms["created_at"], "{after}");
    assert_ne!(
        sms["last_authenticated_at"],
        first_sms["last_authenticated_at"]
    );
    assert_eq!(sms["updated_at"], sms["last_authenticated_at"]);
    assert!(
        sms["updated_at"].as_str() > sms["created_at"].as_str(),
        "{sms}"
    );
    // The password was not authenticated again: unchanged.
    assert_eq!(of_type(&after, "password"), of_type(&before, "password"));

    let check = |c: &mut Client, factors: &Value| -> (String, usize) {
        let row = c
            .query_one(
                "SELECT mfa.session_aal($1, 'ann', $2),
                        jsonb_array_length(mfa.session_verified_factors($1, 'ann', $2))",
                &[&org, factors],
            )
            .unwrap();
        (row.get(0), row.get::<_, i32>(1) as usize)
    };
    let stored: Value = c
        .query_one(
            &format!("SELECT authentication_factors FROM {table} WHERE id = $1"),
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(check(&mut c, &stored), ("aal2".to_string(), 2));
    // The answered shape (times added) verifies as the stored one does.
    assert_eq!(check(&mut c, &after), ("aal2".to_string(), 2));
    // A created_at moved by hand does not.
    let mut forged = after.clone();
    for factor in forged.as_array_mut().unwrap() {
        if factor["type"] == "otp" {
            factor["created_at"] = Value::String("2001-01-01T00:00:00+00:00".into());
        }
    }
    assert_eq!(check(&mut c, &forged), ("aal1".to_string(), 1));
}

/// The organization object of `organization_get` beside the member, in the answers Stytch gives
/// it in.
#[test]
fn answers_carry_the_organization() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "orgobj", "ann");
    json(
        &mut c,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL', 'RESTRICTED', ARRAY['totp', 'sms_otp'])",
        &[&org],
    );
    let expected = json(&mut c, "SELECT mfa.organization_get($1)", &[&org]);
    assert_eq!(expected["mfa_policy"], "REQUIRED_FOR_ALL");
    let (_, token) = start_login(&mut c, &org, "ann");
    let created = json(
        &mut c,
        "SELECT mfa.totp_create($1, 'ann', intermediate_session_token => $2)",
        &[&org, &token],
    );
    let secret = created["secret"].as_str().unwrap().to_string();
    let authenticated = json(
        &mut c,
        "SELECT mfa.totp_authenticate($1, 'ann', $2, $3)",
        &[&org, &totp_now(&secret), &token],
    );
    assert_eq!(authenticated["status_code"], 200, "{authenticated}");
    let answers = [
        ("totp_create", created),
        ("totp_authenticate", authenticated),
        (
            "member_get",
            json(&mut c, "SELECT mfa.member_get($1, 'ann')", &[&org]),
        ),
        (
            "member_upsert",
            json(
                &mut c,
                "SELECT mfa.member_upsert($1, 'ann', mfa_enrolled => true)",
                &[&org],
            ),
        ),
        (
            "recovery_codes_get",
            json(&mut c, "SELECT mfa.recovery_codes_get($1, 'ann')", &[&org]),
        ),
        (
            "recovery_codes_rotate",
            json(
                &mut c,
                "SELECT mfa.recovery_codes_rotate($1, 'ann', $2)",
                &[&org, &token],
            ),
        ),
        (
            "otp_sms_send",
            json(
                &mut c,
                "SELECT mfa.otp_sms_send($1, 'ann', '+14155550144', intermediate_session_token => $2)",
                &[&org, &token],
            ),
        ),
    ];
    for (call, answer) in &answers {
        assert_eq!(answer["organization"], expected, "{call}: {answer}");
    }
}

/// A recovery code factor names the code it spent (Stytch's `totp_recovery_code_id`): another
/// code, another id; neither the code nor its stored hash shows.
#[test]
fn a_recovery_code_factor_names_its_code() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "rcf", "ann");
    let codes = ["aaaa-bbbb-cccc", "dddd-eeee-ffff"]
        .map(String::from)
        .to_vec();
    json(
        &mut c,
        "SELECT mfa.totp_migrate($1, 'ann', 'JBSWY3DPEHPK3PXP', $2)",
        &[&org, &codes],
    );
    let mut ids = Vec::new();
    for code in &codes {
        let (_, token) = start_login(&mut c, &org, "ann");
        let answer = json(
            &mut c,
            "SELECT mfa.recovery_codes_recover($1, 'ann', $2, $3)",
            &[&org, code, &token],
        );
        assert_eq!(answer["status_code"], 200, "{answer}");
        let factor = of_type(&answer["authentication_factors"], "recovery_codes");
        assert_eq!(factor["delivery_method"], "recovery_code");
        let sub = &factor["recovery_code_factor"];
        let id = sub["totp_recovery_code_id"].as_str().unwrap().to_string();
        assert_eq!(sub.as_object().unwrap().len(), 1, "{sub}");
        assert_eq!(id.len(), 36, "a uuid: {id}");
        let text = answer.to_string();
        assert!(!text.contains(code.as_str()) && !text.contains(&code.replace('-', "")));
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
    // The id is the code's own: no stored hash in it.
    let hashes: Vec<Vec<u8>> = c
        .query(
            "SELECT code_hash FROM mfa.recovery_codes WHERE organization_id = $1",
            &[&org],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for hash in hashes {
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        for id in &ids {
            assert!(!hex.contains(&id.replace('-', "")[..16]));
        }
    }
}

/// Stytch's names: a six-digit code that is not the app's is `unable_to_authenticate_totp`, a
/// code that is no TOTP code at all `invalid_totp_code`; recovery codes without an active factor
/// they stand for are `no_active_recovery_code_backed_factor` (SQLSTATE as before, P0002).
#[test]
fn errors_have_stytch_s_names() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "errnames", "ann");
    json(
        &mut c,
        "SELECT mfa.totp_migrate($1, 'ann', 'JBSWY3DPEHPK3PXP')",
        &[&org],
    );
    let wrong = wrong_codes("JBSWY3DPEHPK3PXP", 1).remove(0);
    let (_, token) = start_login(&mut c, &org, "ann");
    let answer = json(
        &mut c,
        "SELECT mfa.totp_authenticate($1, 'ann', $2, $3)",
        &[&org, &wrong, &token],
    );
    assert_eq!(
        answer["error_type"], "unable_to_authenticate_totp",
        "{answer}"
    );
    assert_eq!(answer["status_code"], 401);
    let answer = json(
        &mut c,
        "SELECT mfa.totp_authenticate($1, 'ann', 'abc123', $2)",
        &[&org, &token],
    );
    assert_eq!(answer["error_type"], "invalid_totp_code", "{answer}");

    let bare = organization_with_member(&mut c, "errnames-bare", "bob");
    let refused = c
        .query_one(
            "SELECT mfa.recovery_codes_recover($1, 'bob', 'aaaa-bbbb-cccc')",
            &[&bare],
        )
        .unwrap_err();
    let (code, message) = sql_error(&refused);
    assert_eq!(code, "P0002");
    assert!(
        message.starts_with("no_active_recovery_code_backed_factor:"),
        "{message}"
    );
}
