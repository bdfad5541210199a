//! Races between real connections: one code, one token, one message — exactly one winner.

mod common;
use common::*;

const RACERS: usize = 8;

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
    let org2 = org.clone();
    let results = race(RACERS, move |client, _| {
        json(
            client,
            "SELECT mfa.totp_authenticate($1, 'ann', $2)",
            &[&org2, &code],
        )
    });
    let wins = results.iter().filter(|r| r["status_code"] == 200).count();
    assert_eq!(wins, 1, "{results:?}");
    assert!(results
        .iter()
        .filter(|r| r["status_code"] != 200)
        .all(|r| r["error_type"] == "totp_code_already_authenticated"));
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
    let org2 = org.clone();
    let results = race(RACERS, move |client, _| {
        json(
            client,
            "SELECT mfa.otp_sms_authenticate($1, 'ann', $2)",
            &[&org2, &code],
        )
    });
    assert_eq!(
        results.iter().filter(|r| r["status_code"] == 200).count(),
        1,
        "{results:?}"
    );
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
    let login = json(
        &mut c,
        "SELECT mfa.primary_authenticate($1, 'ann')",
        &[&org],
    );
    let token = login["intermediate_session_token"]
        .as_str()
        .unwrap()
        .to_string();
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
