//! Privilege attacks: a caller who controls a schema on its search_path and fills it with objects
//! named like built-ins (functions, an operator, tables) cannot change what the SECURITY DEFINER
//! functions do; ids and trigger arguments cannot inject SQL. (The role × function × table matrix
//! is the #[pg_test] `privilege_matrix`.)

mod common;
use common::*;
use postgres::{Client, NoTls};

#[test]
fn a_hijacked_search_path_changes_nothing() {
    let mut c = connect();
    let org = new_organization(&mut c, "hijack");
    json(
        &mut c,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL')",
        &[&org],
    );
    json(&mut c, "SELECT mfa.member_upsert($1, 'ann')", &[&org]);
    let role = unique("hijacker").replace('-', "_");
    let schema = format!("{role}_objects");
    // Every look-alike records that it ran, and returns what would help an attacker.
    // The role and its schema are committed first: on a cluster, Citus makes the role's objects
    // on the workers over connections of that role, where both must exist already.
    c.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN; GRANT mfa_app TO {role};
         CREATE SCHEMA {schema} AUTHORIZATION {role};"
    ))
    .unwrap();
    c.batch_execute(&format!(
        "SET ROLE {role};
         CREATE TABLE {schema}.calls (what text);
         CREATE FUNCTION {schema}.now() RETURNS timestamptz LANGUAGE sql AS
             $$ INSERT INTO {schema}.calls VALUES ('now') RETURNING '1999-01-01'::timestamptz $$;
         CREATE FUNCTION {schema}.gen_random_uuid() RETURNS uuid LANGUAGE sql AS
             $$ INSERT INTO {schema}.calls VALUES ('uuid') RETURNING '00000000-0000-4000-8000-000000000000'::uuid $$;
         CREATE FUNCTION {schema}.encode(bytea, text) RETURNS text LANGUAGE sql AS
             $$ INSERT INTO {schema}.calls VALUES ('encode') RETURNING 'ff' $$;
         CREATE FUNCTION {schema}.coalesce_true(text, text) RETURNS boolean LANGUAGE sql AS
             $$ INSERT INTO {schema}.calls VALUES ('=') RETURNING true $$;
         CREATE OPERATOR {schema}.= (LEFTARG = text, RIGHTARG = text, FUNCTION = {schema}.coalesce_true);
         CREATE FUNCTION {schema}.jsonb_build_object(VARIADIC text[]) RETURNS jsonb LANGUAGE sql AS
             $$ INSERT INTO {schema}.calls VALUES ('jsonb_build_object') RETURNING '{{}}'::jsonb $$;
         CREATE TABLE {schema}.members (organization_id text, member_id text);
         CREATE TABLE {schema}.intermediate_sessions (token_hash bytea);
         CREATE TEMP TABLE members (organization_id text, member_id text);
         SET search_path = {schema}, pg_temp, public, pg_catalog;"
    ))
    .unwrap();
    // The login as the attacker's role: a token without MFA stays refused by the REQUIRED policy,
    // a wrong code stays wrong, and expiries follow the real clock.
    let (login, token) = start_login(&mut c, &org, "ann");
    assert!(!login["mfa_required"].is_null(), "{login}");
    let refused = c
        .query_one(
            "SELECT mfa.check_session_policy($1, 'ann', $2)",
            &[&org, &token],
        )
        .unwrap_err();
    assert_eq!(sql_error(&refused).0, "28000");
    let created = json(
        &mut c,
        "SELECT mfa.totp_create($1, 'ann', 10, $2)",
        &[&org, &token],
    );
    assert_ne!(
        created["totp_registration_id"],
        "00000000-0000-4000-8000-000000000000"
    );
    let wrong = json(
        &mut c,
        "SELECT mfa.totp_authenticate($1, 'ann', '000000', $2)",
        &[&org, &token],
    );
    assert_eq!(
        wrong["error_type"], "unable_to_authenticate_totp",
        "{wrong}"
    );
    let calls: i64 = c
        .query_one(&format!("SELECT count(*) FROM {schema}.calls"), &[])
        .unwrap()
        .get(0);
    c.batch_execute("RESET ROLE; RESET search_path").unwrap();
    let expires_in_future: bool = c
        .query_one(
            "SELECT bool_and(expires_at > now()) FROM mfa.intermediate_sessions WHERE organization_id = $1",
            &[&org],
        )
        .unwrap()
        .get(0);
    assert!(expires_in_future);
    assert_eq!(calls, 0, "a look-alike object ran inside the extension");
}

#[test]
fn ids_and_trigger_arguments_cannot_inject_sql() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "inject", "ann");
    let table = format!("canary_{}", org.replace('-', "_"));
    c.batch_execute(&format!(
        "CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1)"
    ))
    .unwrap();
    // Ids are data: an id holding SQL is stored and found verbatim.
    let sneaky = format!("x'); DROP TABLE {table}; --");
    json(&mut c, "SELECT mfa.member_upsert($1, $2)", &[&org, &sneaky]);
    let found = json(&mut c, "SELECT mfa.member_get($1, $2)", &[&org, &sneaky]);
    assert_eq!(found["member_id"], sneaky.as_str());
    // Trigger arguments name columns; anything else is refused at the first row.
    for argument in [
        format!("org\"; DROP TABLE {table}; --"),
        format!("org' || (SELECT 1 FROM {table}) || '"),
        "organization_id = organization_id".to_string(),
    ] {
        let sessions = unique("sessions").replace('-', "_");
        c.batch_execute(&format!(
            "CREATE TABLE {sessions} (org text, member text, token text);
             CREATE TRIGGER gate BEFORE INSERT ON {sessions} FOR EACH ROW
             EXECUTE FUNCTION mfa.enforce_session_policy('{}', 'member', 'token')",
            argument.replace('\'', "''")
        ))
        .unwrap();
        let refused = c
            .execute(
                &format!("INSERT INTO {sessions} VALUES ($1, 'ann', 'token')"),
                &[&org],
            )
            .unwrap_err();
        assert_eq!(sql_error(&refused).0, "22023", "{refused}");
        c.batch_execute(&format!("DROP TABLE {sessions}")).unwrap();
    }
    let canary: i64 = c
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(canary, 1);
    c.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

/// The function through which a Citus coordinator's attempt ledger writer hands records over
/// writes audit events and lockout states as it is told: no role may call it, and a role granted
/// it by mistake is refused all the same.
#[test]
fn the_ledger_writers_hand_over_is_nobodys() {
    let mut c = connect();
    let role = app_role(&mut c, "handover", &[]);
    let mut app = Client::connect(&database_url_as(&role), NoTls).unwrap();
    let forged = r#"[{"kind": "state", "organization_id": "acme", "member_id": "m",
        "failed_attempts": 0, "failure_window_started_at": 0, "lock_created_at": 0,
        "lock_expires_at": 0, "lock_count": 0, "occurred_at": 0, "request_id": "",
        "actor": "", "event_type": "", "details": "{}"}]"#;
    let call = format!("SELECT mfa._attempt_ledger_write('acme', '{forged}')");
    let (state, message) = sql_error(&app.batch_execute(&call).unwrap_err());
    assert_eq!(state, "42501", "{message}");
    assert!(message.contains("permission denied"), "{message}");
    c.batch_execute(&format!(
        "GRANT EXECUTE ON FUNCTION mfa._attempt_ledger_write(text, jsonb) TO {role}"
    ))
    .unwrap();
    let (state, message) = sql_error(&app.batch_execute(&call).unwrap_err());
    assert_eq!(state, "42501", "{message}");
    assert!(message.contains("attempt ledger writers' own"), "{message}");
}
