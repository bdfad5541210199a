//! Issue 16: one tenant cannot act on another's SMS: a tenant-bound worker handles only its
//! organizations' messages, a receipt is needed to finish a message, and another organization's
//! member cannot use up the sends to someone's number.

mod common;

use common::{connect_to, fresh_database, json, sql_error, unique};
use postgres::{Client, NoTls};
use serde_json::Value;

fn as_role(url: &str, role: &str) -> Client {
    let url: String = url
        .split_whitespace()
        .map(|p| {
            if p.starts_with("user=") {
                format!("user={role}")
            } else {
                p.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    Client::connect(&url, NoTls).unwrap()
}

/// An organization with a member whose code is queued; returns the message id.
fn queued_message(c: &mut Client, org: &str, phone: &str) -> i64 {
    json(c, "SELECT mfa.organization_upsert($1)", &[&org]);
    json(
        c,
        "SELECT mfa.member_upsert($1, 'ann', $2)",
        &[&org, &phone],
    );
    json(c, "SELECT mfa.otp_sms_send($1, 'ann')", &[&org]);
    c.query_one(
        "SELECT max(message_id) FROM mfa.sms_outbox WHERE organization_id = $1",
        &[&org],
    )
    .unwrap()
    .get(0)
}

fn status(c: &mut Client, id: i64) -> String {
    c.query_one(
        "SELECT status FROM mfa.sms_outbox WHERE message_id = $1",
        &[&id],
    )
    .unwrap()
    .get(0)
}

#[test]
fn a_tenant_bound_worker_acts_only_on_its_organizations_messages() {
    let url = fresh_database("tenancy");
    let mut admin = connect_to(&url);
    let (org_a, org_b) = (unique("tenant-a"), unique("tenant-b"));
    let message_a = queued_message(&mut admin, &org_a, "+14155552671");
    let message_b = queued_message(&mut admin, &org_b, "+14155552672");
    let worker_b = unique("worker_b").replace('-', "_");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {worker_b} LOGIN IN ROLE mfa_sms_worker"
        ))
        .unwrap();
    json(
        &mut admin,
        "SELECT mfa.sms_worker_grant($1, $2)",
        &[&worker_b, &org_b],
    );
    let mut b = as_role(&url, &worker_b);
    // Another tenant's message can be neither completed nor killed without its receipt.
    for statement in [
        "SELECT mfa.sms_outbox_complete($1, 'guessed')",
        "SELECT mfa.sms_outbox_fail($1, 'guessed', 'x', false)",
    ] {
        let e = b.query_one(statement, &[&message_a]).unwrap_err();
        assert!(sql_error(&e).1.starts_with("sms_message_not_held"), "{e}");
    }
    assert_eq!(status(&mut admin, message_a), "pending");
    // Asking for it is refused; claiming anything hands out its own organization's only, also
    // after switching to the unbound group role it is a member of.
    let e = b
        .query(
            "SELECT * FROM mfa.sms_outbox_claim(10, '30 seconds', $1)",
            &[&org_a],
        )
        .unwrap_err();
    assert!(
        sql_error(&e)
            .1
            .starts_with("sms_worker_organization_not_granted"),
        "{e}"
    );
    b.batch_execute("SET ROLE mfa_sms_worker").unwrap();
    let claimed = b
        .query(
            "SELECT id, organization_id, receipt FROM mfa.sms_outbox_claim(10, '30 seconds')",
            &[],
        )
        .unwrap();
    let organizations: Vec<String> = claimed.iter().map(|r| r.get(1)).collect();
    assert_eq!(organizations, vec![org_b.clone()]);
    let receipt: String = claimed[0].get(2);
    let done: Value = b
        .query_one(
            "SELECT mfa.sms_outbox_complete($1, $2, 'SM1')",
            &[&message_b, &receipt],
        )
        .unwrap()
        .get(0);
    assert_eq!(done["status"], "sent");
    // The unbound worker still serves everyone, and its receipt dies with its claim.
    let mut any = as_role(&url, "postgres");
    let row = any
        .query_one(
            "SELECT id, receipt FROM mfa.sms_outbox_claim(1, '1 second', $1)",
            &[&org_a],
        )
        .unwrap();
    let (id, old_receipt): (i64, String) = (row.get(0), row.get(1));
    assert_eq!(id, message_a);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let e = any
        .query_one(
            "SELECT mfa.sms_outbox_complete($1, $2)",
            &[&id, &old_receipt],
        )
        .unwrap_err();
    assert!(
        sql_error(&e).1.starts_with("sms_message_not_held"),
        "an expired claim finished a message: {e}"
    );
    let fresh: String = any
        .query_one(
            "SELECT receipt FROM mfa.sms_outbox_claim(1, '30 seconds', $1)",
            &[&org_a],
        )
        .unwrap()
        .get(0);
    let e = any
        .query_one(
            "SELECT mfa.sms_outbox_fail($1, $2, 'late', false)",
            &[&id, &old_receipt],
        )
        .unwrap_err();
    assert!(sql_error(&e).1.starts_with("sms_message_not_held"), "{e}");
    let done: Value = any
        .query_one("SELECT mfa.sms_outbox_complete($1, $2)", &[&id, &fresh])
        .unwrap()
        .get(0);
    assert_eq!(done["status"], "sent");
    admin
        .batch_execute(&format!("DROP OWNED BY {worker_b}; DROP ROLE {worker_b}"))
        .ok();
}

#[test]
fn another_organizations_member_cannot_use_up_the_sends_to_a_number() {
    let url = fresh_database("send-dos");
    let mut c = connect_to(&url);
    c.batch_execute("SET mfa.sms_sends_per_member_per_hour = 10")
        .unwrap();
    let victim_number = "+14155550142";
    let (victims_org, attackers_org) = (unique("victim"), unique("attacker"));
    json(
        &mut c,
        "SELECT mfa.organization_upsert($1)",
        &[&victims_org],
    );
    json(
        &mut c,
        "SELECT mfa.member_upsert($1, 'vic', $2)",
        &[&victims_org, &victim_number],
    );
    // The victim proved the number (an SMS login earlier).
    c.execute(
        "UPDATE mfa.members SET mfa_phone_number_verified = true WHERE organization_id = $1",
        &[&victims_org],
    )
    .unwrap();
    // A member of another organization links the victim's number and sends until refused.
    json(
        &mut c,
        "SELECT mfa.organization_upsert($1)",
        &[&attackers_org],
    );
    let mut sent = 0;
    let refusal = loop {
        let member = format!("mallory{sent}");
        json(
            &mut c,
            "SELECT mfa.member_upsert($1, $2, $3)",
            &[&attackers_org, &member, &victim_number],
        );
        match c.query_one(
            "SELECT mfa.otp_sms_send($1, $2)",
            &[&attackers_org, &member],
        ) {
            Ok(_) => sent += 1,
            Err(e) => break sql_error(&e).1,
        }
        assert!(sent < 100, "no limit on an unproven number");
    };
    assert_eq!(sent, 10, "{refusal}");
    assert!(refusal.contains("this number"), "{refusal}");
    // The number's owner still gets their codes.
    let answer = json(
        &mut c,
        "SELECT mfa.otp_sms_send($1, 'vic')",
        &[&victims_org],
    );
    assert_eq!(answer["status_code"], 200, "{answer}");
    // And one member is limited on their own.
    let mut own = 1;
    let refusal = loop {
        match c.query_one("SELECT mfa.otp_sms_send($1, 'vic')", &[&victims_org]) {
            Ok(_) => own += 1,
            Err(e) => break sql_error(&e).1,
        }
        assert!(own < 100);
    };
    assert_eq!(own, 10, "{refusal}");
    assert!(refusal.contains("this member"), "{refusal}");
}

/// What a worker role claims: the organizations of the messages it is handed.
fn claimed_organizations(url: &str, role: &str) -> Vec<String> {
    let mut worker = as_role(url, role);
    let mut organizations: Vec<String> = worker
        .query(
            "SELECT organization_id FROM mfa.sms_outbox_claim(100, '1 second')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    organizations.sort();
    organizations.dedup();
    organizations
}

/// A database with two organizations, each with a queued message, and a worker role (not bound
/// yet): the url, an administrator, the organizations and the role.
fn two_tenants_and_a_worker(prefix: &str) -> (String, Client, String, String, String) {
    let url = fresh_database(prefix);
    let mut admin = connect_to(&url);
    let (first, second) = (unique("tenant-one"), unique("tenant-two"));
    queued_message(&mut admin, &first, "+14155552673");
    queued_message(&mut admin, &second, "+14155552674");
    let worker = unique("worker").replace('-', "_");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {worker} LOGIN IN ROLE mfa_sms_worker"
        ))
        .unwrap();
    (url, admin, first, second, worker)
}

#[test]
fn a_binding_follows_the_role_not_its_name() {
    let (url, mut admin, org_c, org_d, worker) = two_tenants_and_a_worker("worker-oid");
    let renamed = format!("{worker}_renamed");
    json(
        &mut admin,
        "SELECT mfa.sms_worker_grant($1, $2)",
        &[&worker, &org_c],
    );
    // Renamed by an administrator, the tenant's worker does not become everyone's: its binding
    // waits for a grant that names it again.
    admin
        .batch_execute(&format!("ALTER ROLE {worker} RENAME TO {renamed}"))
        .unwrap();
    assert_eq!(claimed_organizations(&url, &renamed), Vec::<String>::new());
    json(
        &mut admin,
        "SELECT mfa.sms_worker_grant($1, $2)",
        &[&renamed, &org_c],
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(claimed_organizations(&url, &renamed), vec![org_c.clone()]);
    // Dropped, its binding goes with it: a new role of the old name gets no tenant's messages
    // and serves nobody until it is bound itself.
    admin
        .batch_execute(&format!(
            "DROP ROLE {renamed}; CREATE ROLE {worker} LOGIN IN ROLE mfa_sms_worker;
             ALTER ROLE {worker} RENAME TO {renamed}"
        ))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(claimed_organizations(&url, &renamed), Vec::<String>::new());
    let listed: Value = json(
        &mut admin,
        "SELECT mfa.sms_worker_grant($1, $2)",
        &[&renamed, &org_d],
    );
    assert_eq!(
        listed["organization_ids"],
        serde_json::json!([org_d]),
        "{listed}"
    );
    assert_eq!(claimed_organizations(&url, &renamed), vec![org_d.clone()]);
    admin.batch_execute(&format!("DROP ROLE {renamed}")).ok();
}

#[test]
fn deleting_a_workers_last_organization_does_not_free_the_worker() {
    let (url, mut admin, gone, _other, worker) = two_tenants_and_a_worker("worker-orphan");
    json(
        &mut admin,
        "SELECT mfa.sms_worker_grant($1, $2)",
        &[&worker, &gone],
    );
    // Unbound, the worker would serve everyone: the organization goes only once the role is no
    // longer a worker (as sms_worker_revoke asks).
    let e = admin
        .query_one("SELECT mfa.organization_delete($1)", &[&gone])
        .unwrap_err();
    let (state, message) = sql_error(&e);
    assert_eq!(state, "22023", "{message}");
    assert!(message.contains(&worker), "{message}");
    assert_eq!(claimed_organizations(&url, &worker), vec![gone.clone()]);
    admin
        .batch_execute(&format!("REVOKE mfa_sms_worker FROM {worker}"))
        .unwrap();
    admin
        .query_one("SELECT mfa.organization_delete($1)", &[&gone])
        .unwrap();
    admin.batch_execute(&format!("DROP ROLE {worker}")).ok();
}
