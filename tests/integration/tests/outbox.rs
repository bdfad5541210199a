//! The outbox seen by real workers: NOTIFY on commit only (and not at all when switched off), and
//! concurrent claims that never hand one message to two workers.

mod common;
use common::*;
use fallible_iterator::FallibleIterator;
use std::collections::HashSet;

#[test]
fn notify_on_commit_never_on_rollback_nor_when_switched_off() {
    let mut c = connect();
    let org = new_organization(&mut c, "notify");
    // A send is notified on the node that runs it: on a cluster, the organization's node when
    // Citus delegates the call (mfa-sms-worker --listen-url listens there), the coordinator in a
    // transaction block. Listened for on every node.
    let mut listener: Vec<postgres::Client> = node_urls(&mut c, &database_url())
        .iter()
        .map(|url| {
            let mut l = postgres::Client::connect(url, postgres::NoTls).unwrap();
            l.batch_execute("LISTEN mfa_sms_outbox").unwrap();
            l
        })
        .collect();
    json(
        &mut c,
        "SELECT mfa.member_upsert($1, 'ann', '+14155550102')",
        &[&org],
    );
    let mut tx = c.transaction().unwrap();
    tx.query_one("SELECT mfa.otp_sms_send($1, 'ann')", &[&org])
        .unwrap();
    // Other tests send codes too: this connection's notifications are told apart by the pids of
    // the backends that run its calls (on a cluster, also those of the organization's node).
    tx.rollback().unwrap();
    let pids = serving_pids(&mut c);
    let rolled_back = queued_messages(&mut c, &org);
    assert_eq!(rolled_back, 0, "a rolled-back send leaves no message");
    let codes: i64 = c
        .query_one(
            "SELECT count(*) FROM mfa.sms_codes WHERE organization_id = $1",
            &[&org],
        )
        .unwrap()
        .get(0);
    assert_eq!(codes, 0, "a rolled-back send leaves no code");
    assert!(
        payloads(&mut listener, 1, &pids).is_empty(),
        "a rolled-back send woke a worker"
    );
    json(&mut c, "SELECT mfa.otp_sms_send($1, 'ann')", &[&org]);
    let pids = serving_pids(&mut c);
    // A wake-up and nothing else: any role may LISTEN, and a message id would tell it every
    // tenant's send rate.
    assert_eq!(payloads(&mut listener, 5, &pids), [""]);

    // With mfa.sms_outbox_notify off, the message is queued all the same, and no one is woken.
    // Set for a role (a session's SET does not reach a call delegated to another node).
    json(
        &mut c,
        "SELECT mfa.member_upsert($1, 'bob', '+14155550103')",
        &[&org],
    );
    let quiet = app_role(
        &mut c,
        "notify_off",
        &[
            "mfa.sms_outbox_notify = off",
            "mfa.sms_sends_per_prefix_per_hour = 100000",
            "mfa.sms_sends_per_number_per_hour = 1000",
        ],
    );
    let mut quiet = postgres::Client::connect(&database_url_as(&quiet), postgres::NoTls).unwrap();
    json(&mut quiet, "SELECT mfa.otp_sms_send($1, 'bob')", &[&org]);
    let pids = serving_pids(&mut quiet);
    let queued = queued_messages(&mut c, &org);
    assert_eq!(queued, 2, "bob's message is queued");
    let received = payloads(&mut listener, 2, &pids);
    assert!(
        received.is_empty(),
        "notified with mfa.sms_outbox_notify off: {received:?}"
    );
}

/// The payloads of the notifications from backends `pids` that `listener` receives within
/// `seconds` (until the first one).
fn payloads(listeners: &mut [postgres::Client], seconds: u64, pids: &[i32]) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::time::Instant::now() < deadline {
        for listener in listeners.iter_mut() {
            let mut notifications = listener.notifications();
            let mut iter = notifications.timeout_iter(std::time::Duration::from_millis(20));
            while let Some(n) = iter.next().unwrap() {
                if pids.contains(&n.process_id()) {
                    return vec![n.payload().to_string()];
                }
            }
        }
    }
    Vec::new()
}

#[test]
fn two_workers_never_receive_the_same_message() {
    let mut c = connect();
    let org = new_organization(&mut c, "drain");
    const MESSAGES: usize = 60;
    for i in 0..MESSAGES {
        let member = format!("m{i}");
        let phone = format!("+1415555{:04}", 1000 + i);
        json(&mut c, "SELECT mfa.member_upsert($1, $2)", &[&org, &member]);
        json(
            &mut c,
            "SELECT mfa.otp_sms_send($1, $2, $3)",
            &[&org, &member, &phone],
        );
    }
    let org2 = org.clone();
    let claimed = race(2, move |client, _| {
        let mut mine = Vec::new();
        loop {
            // Other tests' messages may be claimed too: only this test's are answered.
            let rows = client
                .query(
                    "SELECT id, organization_id, receipt FROM mfa.sms_outbox_claim(3, '5 minutes')",
                    &[],
                )
                .unwrap();
            if rows.is_empty() {
                break;
            }
            for r in rows.iter().filter(|r| r.get::<_, String>(1) == org2) {
                let id: i64 = r.get(0);
                let receipt: String = r.get(2);
                client
                    .query_one(
                        "SELECT mfa.sms_outbox_complete($1, $2, 'fake')",
                        &[&id, &receipt],
                    )
                    .unwrap();
                mine.push(id);
            }
        }
        mine
    });
    let all: Vec<i64> = claimed.iter().flatten().copied().collect();
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), distinct.len(), "a message went to two workers");
    let sent: i64 = c
        .query_one(
            "SELECT count(*) FROM mfa.sms_outbox WHERE organization_id = $1 AND status = 'sent'",
            &[&org],
        )
        .unwrap()
        .get(0);
    assert_eq!(sent as usize, MESSAGES);
    assert_eq!(distinct.len(), MESSAGES);
}
