//! The lock that serializes sends to a block of 10,000 numbers (so the send limits count every
//! earlier send) is one only the extension can take: a role with no `mfa` grants that held the
//! lock 0.3.0 used (an advisory lock on a key anyone can compute) hung every send to the block.

mod common;
use common::*;
use postgres::{Client, NoTls};

#[test]
fn no_other_role_can_hold_up_the_sends_to_a_block() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "block", "ann");
    let role = unique("blocker").replace('-', "_");
    c.batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .unwrap();
    let mut blocker = Client::connect(&database_url_as(&role), NoTls).unwrap();
    // The attacker holds the key 0.3.0 locked for +1202555xxxx, and tries the table's row too.
    blocker
        .batch_execute(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('mfa.sms:+1202555', 0))",
        )
        .unwrap();
    let denied = blocker
        .batch_execute("SELECT FROM mfa.sms_number_blocks FOR UPDATE")
        .unwrap_err();
    assert_eq!(sql_error(&denied).0, "42501");
    blocker.batch_execute("ROLLBACK; BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('mfa.sms:+1202555', 0))").unwrap();
    c.batch_execute("SET lock_timeout = '2s'").unwrap();
    let sent = json(
        &mut c,
        "SELECT mfa.otp_sms_send($1, 'ann', '+12025550143')",
        &[&org],
    );
    assert_eq!(sent["status_code"], 200, "{sent}");
    // A second send to the block (another member, the lock's second path) goes through too.
    json(
        &mut c,
        "SELECT mfa.member_upsert($1, 'bob', '+12025550188')",
        &[&org],
    );
    let again = json(&mut c, "SELECT mfa.otp_sms_send($1, 'bob')", &[&org]);
    assert_eq!(again["status_code"], 200, "{again}");
    blocker.batch_execute("ROLLBACK").unwrap();
}
