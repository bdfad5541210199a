//! What an ERROR tells the client: the `error_type` and a message for people, never the
//! extension's internals — not even when the server runs with `RUST_BACKTRACE` set, which makes
//! pgrx capture a Rust backtrace into the DETAIL of every error that crosses Rust code.

mod common;

use common::Cluster;
use postgres::{Client, NoTls};

/// The parts of a refused call the client sees.
fn refusal(client: &mut Client, sql: &str) -> (String, String, String) {
    let e = client.batch_execute(sql).expect_err("the call is refused");
    let db = e.as_db_error().expect("an ERROR from the server");
    (
        db.code().code().to_string(),
        db.message().to_string(),
        format!(
            "{} {}",
            db.detail().unwrap_or_default(),
            db.hint().unwrap_or_default()
        ),
    )
}

fn assert_no_internals(what: &str, text: &str) {
    for internal in ["backtrace", "src/", ".rs:", "pgrx", "rustc", "panicked"] {
        assert!(
            !text.contains(internal),
            "{what}: the client was told {internal:?}: {text}"
        );
    }
}

#[test]
fn errors_carry_no_backtrace_whatever_the_servers_environment() {
    let cluster = Cluster::init("error-reports", 28828, "");
    cluster.write_key_file(&format!("{}\n", "3c".repeat(32)));
    cluster.append_settings(&format!(
        "mfa.encryption_key_file = '{}'",
        cluster.key_file()
    ));
    cluster.start_server_with_env(&[("RUST_BACKTRACE", "full"), ("RUST_LIB_BACKTRACE", "1")]);
    let url = cluster.create_database("mfa_errors");
    let mut admin = Client::connect(&url, NoTls).unwrap();
    admin
        .batch_execute(
            "SELECT mfa.organization_upsert('org-errors');
             SELECT mfa.member_upsert('org-errors', 'ann');",
        )
        .unwrap();

    // A caller's mistake, raised by the extension.
    let (code, message, detail) =
        refusal(&mut admin, "SELECT mfa.member_get('org-errors', 'nobody')");
    assert_eq!(code, "P0002");
    assert!(message.starts_with("member_not_found: "), "{message}");
    assert_no_internals("member_not_found", &format!("{message} {detail}"));

    // An error PostgreSQL raises inside one of the extension's statements (here a lock timeout
    // while another transaction holds the member): it crosses Rust code on its way out.
    let mut holder = Client::connect(&url, NoTls).unwrap();
    holder
        .batch_execute(
            "BEGIN; SELECT mfa.member_upsert('org-errors', 'ann', mfa_enrolled => true);",
        )
        .unwrap();
    let (code, message, detail) = refusal(
        &mut admin,
        "SET lock_timeout = '200ms'; SELECT mfa.member_unlock('org-errors', 'ann')",
    );
    assert_eq!(code, "55P03", "{message}");
    assert_no_internals("lock timeout", &format!("{message} {detail}"));
    holder.batch_execute("ROLLBACK").unwrap();

    // The same through the session gate's trigger.
    admin
        .batch_execute(
            "RESET lock_timeout;
             CREATE TABLE app_sessions (organization_id text, member_id text, token text, factors jsonb);
             SELECT mfa.session_table_guard('app_sessions', 'organization_id', 'member_id', 'token', 'factors');",
        )
        .unwrap();
    let (code, message, detail) = refusal(
        &mut admin,
        "INSERT INTO app_sessions VALUES ('org-errors', 'ann', 'not-a-token')",
    );
    assert_eq!(code, "28000", "{message}");
    assert!(message.starts_with("insufficient_factors: "), "{message}");
    assert_no_internals("session gate", &format!("{message} {detail}"));
    cluster.stop_server();
}
