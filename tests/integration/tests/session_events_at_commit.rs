//! The session's event is written with its row, and a decision whose row never landed is
//! recorded at commit: attacks of the owner of a guarded sessions table (a role in mfa_app) on
//! that write (decisions made while the transaction commits, an upsert placing the insert's
//! factors, settings at commit), each of which must hold. A login here is a member without MFA in
//! an OPTIONAL organization, so a token costs one primary_authenticate.

mod common;
use common::*;
use postgres::Client;
use serde_json::Value;

fn deployment(superuser: &mut Client, prefix: &str) -> (String, Client, String) {
    let org = new_organization(superuser, prefix);
    json(
        superuser,
        "SELECT mfa.organization_upsert($1, 'OPTIONAL')",
        &[&org],
    );
    json(superuser, "SELECT mfa.member_upsert($1, 'm')", &[&org]);
    let (mut app, schema) = guarded_sessions(superuser, prefix, "note text,");
    app.batch_execute(&format!(
        "CREATE FUNCTION {schema}.tok(org text) RETURNS text LANGUAGE sql AS
             $$ SELECT (mfa.primary_authenticate(org, 'm'))->>'intermediate_session_token' $$;"
    ))
    .unwrap();
    // One session row, id 1, for the upserts to conflict with.
    app.batch_execute(&format!(
        "INSERT INTO {schema}.sessions (organization_id, id, member_id, intermediate_session_token)
         OVERRIDING SYSTEM VALUE VALUES ('{org}', 1, 'm', {schema}.tok('{org}'))"
    ))
    .unwrap();
    (org, app, schema)
}

/// (event_type, session_row_written) of the member's session-gate events, oldest first.
fn gate_events(superuser: &mut Client, org: &str) -> Vec<(String, Option<bool>)> {
    superuser
        .query(
            "SELECT event_type, (details ->> 'session_row_written')::boolean FROM mfa.events
              WHERE organization_id = $1 AND member_id = 'm'
                AND event_type IN ('session.allowed', 'login.abandoned', 'session.stepped_up',
                                   'step_up.abandoned')
              ORDER BY event_id",
            &[&org],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn live_tokens(superuser: &mut Client, org: &str) -> i64 {
    superuser
        .query_one(
            "SELECT count(*) FROM mfa.intermediate_sessions
              WHERE organization_id = $1 AND consumed_at IS NULL",
            &[&org],
        )
        .unwrap()
        .get(0)
}

fn rows(superuser: &mut Client, schema: &str) -> i64 {
    superuser
        .query_one(&format!("SELECT count(*) FROM {schema}.sessions"), &[])
        .unwrap()
        .get(0)
}

fn allowed() -> (String, Option<bool>) {
    ("session.allowed".into(), None)
}
fn abandoned() -> (String, Option<bool>) {
    ("login.abandoned".into(), Some(false))
}

/// The app's function: an upsert that meets the conflict, with a fresh token.
fn conflict_function(app: &mut Client, org: &str, schema: &str) {
    app.batch_execute(&format!(
        "CREATE FUNCTION {schema}.conflict() RETURNS int LANGUAGE plpgsql AS $$
         DECLARE n int; BEGIN
             INSERT INTO {schema}.sessions (organization_id, id, member_id, intermediate_session_token)
             OVERRIDING SYSTEM VALUE VALUES ('{org}', 1, 'm', {schema}.tok('{org}'))
             ON CONFLICT DO NOTHING;
             GET DIAGNOSTICS n = ROW_COUNT; RETURN n;
         END $$"
    ))
    .unwrap();
}

/// Decisions made at commit time, by a deferred constraint trigger and by the materialization of
/// a cursor WITH HOLD (both run before PRE_COMMIT), and inside a DO block's COMMIT in a loop over
/// a pinned portal: each is recorded once, as given up, and no token is left live.
#[test]
fn decisions_made_while_committing_are_recorded() {
    let mut superuser = connect();
    let (org, mut app, schema) = deployment(&mut superuser, "rv-commit-time");
    conflict_function(&mut app, &org, &schema);
    app.batch_execute(&format!(
        "CREATE TABLE {schema}.kick (x int);
         CREATE FUNCTION {schema}.kick() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM {schema}.conflict(); RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER kick AFTER INSERT ON {schema}.kick
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {schema}.kick();
         INSERT INTO {schema}.kick VALUES (1);"
    ))
    .unwrap();
    app.batch_execute(&format!(
        "BEGIN;
         DECLARE c CURSOR WITH HOLD FOR SELECT {schema}.conflict() FROM generate_series(1, 2);
         COMMIT;
         CLOSE c;"
    ))
    .unwrap();
    app.batch_execute(&format!(
        "DO $$ DECLARE r record; BEGIN
             FOR r IN SELECT g FROM generate_series(1, 2) g LOOP
                 PERFORM {schema}.conflict(); COMMIT;
             END LOOP;
         END $$;"
    ))
    .unwrap();
    let mut expected = vec![allowed()];
    expected.extend(std::iter::repeat_n(abandoned(), 5));
    assert_eq!(gate_events(&mut superuser, &org), expected);
    assert_eq!(live_tokens(&mut superuser, &org), 0);
    assert_eq!(rows(&mut superuser, &schema), 1);
}

/// INSERT … ON CONFLICT DO UPDATE: the insert's decision never lands (login.abandoned); the
/// update cannot carry the sealed factors it sees in EXCLUDED into the guarded column, directly
/// or through a later BEFORE UPDATE trigger (the AFTER UPDATE trigger finds no decision).
#[test]
fn an_upsert_that_updates_cannot_place_the_inserts_factors() {
    let mut superuser = connect();
    let (org, mut app, schema) = deployment(&mut superuser, "rv-do-update");
    let upsert = |set: &str| {
        format!(
            "INSERT INTO {schema}.sessions (organization_id, id, member_id, intermediate_session_token)
             OVERRIDING SYSTEM VALUE VALUES ('{org}', 1, 'm', {schema}.tok('{org}'))
             ON CONFLICT (organization_id, id) DO UPDATE SET {set}"
        )
    };
    let before: Value = superuser
        .query_one(
            &format!("SELECT authentication_factors FROM {schema}.sessions"),
            &[],
        )
        .unwrap()
        .get(0);
    let direct = app
        .batch_execute(&upsert(
            "authentication_factors = EXCLUDED.authentication_factors",
        ))
        .map_err(|e| sql_error(&e).0);
    assert_eq!(direct, Err("28000".to_string()));
    app.batch_execute(&format!(
        "CREATE FUNCTION {schema}.plant() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.note IS NOT NULL THEN NEW.authentication_factors := NEW.note::jsonb; END IF;
         RETURN NEW; END $$;
         CREATE TRIGGER zz_plant BEFORE UPDATE ON {schema}.sessions
             FOR EACH ROW EXECUTE FUNCTION {schema}.plant()"
    ))
    .unwrap();
    let planted = app
        .batch_execute(&upsert("note = EXCLUDED.authentication_factors::text"))
        .map_err(|e| sql_error(&e).0);
    assert_eq!(planted, Err("28000".to_string()));
    app.batch_execute(&format!("DROP TRIGGER zz_plant ON {schema}.sessions"))
        .unwrap();
    app.batch_execute(&upsert("note = 'touched'")).unwrap();
    let after: Value = superuser
        .query_one(
            &format!("SELECT authentication_factors FROM {schema}.sessions"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(after, before);
    assert_eq!(gate_events(&mut superuser, &org), [allowed(), abandoned()]);
}

/// The commit-time write cannot be switched off or redirected by the settings the application
/// may change: session_replication_role is refused; a read-only or timed-out commit fails as a
/// whole and gives the token back (no event, the token still makes one session).
#[test]
fn settings_cannot_skip_the_commit_time_write() {
    let mut superuser = connect();
    let (org, mut app, schema) = deployment(&mut superuser, "rv-settings");
    conflict_function(&mut app, &org, &schema);
    let refused = app
        .batch_execute("SET session_replication_role = replica")
        .map_err(|e| sql_error(&e).0);
    assert_eq!(refused, Err("42501".to_string()));
    let read_only = app
        .batch_execute(&format!(
            "BEGIN; SELECT {schema}.conflict(); SET LOCAL transaction_read_only = on;
             SET LOCAL search_path = pg_temp, public; SET LOCAL ROLE NONE; COMMIT"
        ))
        .map_err(|e| sql_error(&e).0);
    assert_eq!(read_only, Err("25006".to_string()));
    app.batch_execute("ROLLBACK").ok();
    assert_eq!(gate_events(&mut superuser, &org), [allowed()]);
}
