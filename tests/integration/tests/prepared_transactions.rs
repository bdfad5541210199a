//! A prepared transaction outlives its connection and the server's restarts, and keeps its locks:
//! a transaction that called mfa (an SMS send locks its number for every organization, an attempt
//! locks its member) cannot be prepared, so whoever holds the application's role cannot park
//! those locks and block other tenants' sends or a member's checks. Any other transaction still
//! can. Needs a server with `max_prepared_transactions` > 0: a cluster of its own.

mod common;
use common::*;
use postgres::{Client, NoTls};

const PHONE: &str = "+14155552671";
const SECRET: &str = "JBSWY3DPEHPK3PXP";

/// What the statement answered: "ok", or its SQLSTATE and message.
fn outcome(c: &mut Client, sql: &str) -> String {
    match c.batch_execute(sql) {
        Ok(()) => "ok".to_string(),
        Err(e) => {
            let (code, message) = sql_error(&e);
            format!("{code} {message}")
        }
    }
}

#[test]
fn a_transaction_that_called_mfa_cannot_be_prepared() {
    let cluster = Cluster::start_with_key_file(
        "wt-ledger-prepared",
        28930,
        "max_prepared_transactions = 5",
        &format!("{}\n", "5a".repeat(32)),
    );
    let url = cluster.create_database("mfa_prepared");
    let mut su = Client::connect(&url, NoTls).unwrap();
    for org in ["acme", "globex"] {
        su.batch_execute(&format!(
            "SELECT mfa.organization_upsert('{org}', 'REQUIRED_FOR_ALL');
             SELECT mfa.member_upsert('{org}', 'ann', '{PHONE}');
             SELECT mfa.totp_migrate('{org}', 'ann', '{SECRET}')"
        ))
        .unwrap();
    }
    su.batch_execute(
        "CREATE ROLE prepared_app LOGIN NOSUPERUSER; GRANT mfa_app TO prepared_app;
         ALTER ROLE prepared_app SET mfa.sms_min_interval_seconds = 0;
         CREATE TABLE public.plain (x int); GRANT INSERT ON public.plain TO prepared_app",
    )
    .unwrap();
    let app_url = url.replace("user=postgres", "user=prepared_app");
    let mut app = Client::connect(&app_url, NoTls).unwrap();

    // The transaction: a send (its number's lock) and a check (the member's row).
    let send_and_check = "SET mfa.sms_outbox_notify = off; BEGIN;
         SELECT mfa.otp_sms_send('acme', 'ann');
         SELECT mfa.totp_authenticate('acme', 'ann', '000000');
         PREPARE TRANSACTION 'parked'";
    // Only a check, rolled back to a savepoint: the transaction still called mfa.
    let savepoint = "BEGIN; SAVEPOINT s;
         SELECT mfa.totp_authenticate('globex', 'ann', '000000');
         ROLLBACK TO SAVEPOINT s;
         PREPARE TRANSACTION 'parked_too'";
    let mut refusals = vec![];
    for sql in [send_and_check, savepoint] {
        let answer = outcome(&mut app, sql);
        println!("{answer}");
        refusals.push(answer);
    }
    let prepared: i64 = su
        .query_one("SELECT count(*) FROM pg_prepared_xacts", &[])
        .unwrap()
        .get(0);
    // Whatever the outcome, nothing stays parked on the cluster.
    for row in su.query("SELECT gid FROM pg_prepared_xacts", &[]).unwrap() {
        let gid: String = row.get(0);
        su.batch_execute(&format!("ROLLBACK PREPARED '{gid}'"))
            .unwrap();
    }
    assert_eq!(prepared, 0, "prepared transactions were left: {refusals:?}");
    for refusal in &refusals {
        assert!(
            refusal.starts_with("0A000 cannot_prepare_transaction: "),
            "{refusal}"
        );
    }

    // Refused, the transaction is over and holds nothing: another organization's send to the
    // number and a check of the member go through at once.
    let mut other = Client::connect(&url, NoTls).unwrap();
    other
        .batch_execute("SET lock_timeout = '2s'; SET mfa.sms_min_interval_seconds = 0")
        .unwrap();
    let sent = json(&mut other, "SELECT mfa.otp_sms_send('globex', 'ann')", &[]);
    assert_eq!(sent["status_code"], 200, "{sent}");
    let checked = json(
        &mut other,
        "SELECT mfa.totp_authenticate('acme', 'ann', $1)",
        &[&totp_now(SECRET)],
    );
    assert_eq!(checked["status_code"], 200, "{checked}");

    // The refusal is for that transaction only: the connection's next transaction, which does
    // not call mfa, can be prepared.
    assert_eq!(
        outcome(
            &mut app,
            "BEGIN; INSERT INTO public.plain VALUES (1); PREPARE TRANSACTION 'plain'"
        ),
        "ok"
    );
    assert_eq!(outcome(&mut app, "COMMIT PREPARED 'plain'"), "ok");
    let rows: i64 = su
        .query_one("SELECT count(*) FROM public.plain", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}
