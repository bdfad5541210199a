//! Power cuts: the server of a cluster of its own is killed with SIGKILL (postmaster and every
//! backend) while workers claim and complete outbox messages, codes are sent and logins run; after
//! crash recovery no committed message is lost, no acknowledged message is handed out again, and
//! no consumed token or used TOTP code works again.
//!
//! 3 cycles in `make test`; MFA_CRASH_CYCLES sets another count (`make soak` uses 20).

mod common;
use common::*;
use postgres::Client;
use rand::Rng;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PHONE_MEMBERS: usize = 20;
const PLAIN_MEMBERS: usize = 10;
const TOTP_MEMBERS: usize = 5;

#[derive(Default)]
struct Acknowledged {
    /// Messages whose completion the server acknowledged.
    completed: BTreeSet<i64>,
    /// Sends the server acknowledged.
    sends: i64,
    /// Tokens a session was created with.
    consumed_tokens: Vec<(String, String)>,
    /// TOTP codes that authenticated: (member, code).
    used_codes: Vec<(String, String)>,
}

fn try_connect(url: &str) -> Option<Client> {
    postgres::Client::connect(url, postgres::NoTls).ok()
}

fn worker_loop(url: String, stop: Arc<AtomicBool>, acks: Arc<Mutex<Acknowledged>>) {
    let Some(mut c) = try_connect(&url) else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        let Ok(rows) = c.query(
            "SELECT id, receipt FROM mfa.sms_outbox_claim(5, '1 second')",
            &[],
        ) else {
            return;
        };
        for row in rows {
            let id: i64 = row.get(0);
            let receipt: String = row.get(1);
            if c.query_one(
                "SELECT mfa.sms_outbox_complete($1, $2, 'SM-crash')",
                &[&id, &receipt],
            )
            .is_err()
            {
                return;
            }
            acks.lock().unwrap().completed.insert(id);
        }
    }
}

fn sender_loop(url: String, org: String, stop: Arc<AtomicBool>, acks: Arc<Mutex<Acknowledged>>) {
    let Some(mut c) = try_connect(&url) else {
        return;
    };
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let member = format!("p{}", i % PHONE_MEMBERS);
        if c.query_one("SELECT mfa.otp_sms_send($1, $2)", &[&org, &member])
            .is_err()
        {
            return;
        }
        acks.lock().unwrap().sends += 1;
    }
}

fn login_loop(
    url: String,
    org: String,
    secrets: Vec<String>,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Acknowledged>>,
) {
    let Some(mut c) = try_connect(&url) else {
        return;
    };
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let Ok(row) = c.query_one(
            "SELECT mfa.primary_authenticate($1, $2) ->> 'intermediate_session_token'",
            &[&org, &format!("u{}", i % PLAIN_MEMBERS)],
        ) else {
            return;
        };
        let token: String = row.get(0);
        let member = format!("u{}", i % PLAIN_MEMBERS);
        if c.query_one(
            "SELECT mfa.check_session_policy($1, $2, $3)",
            &[&org, &member, &token],
        )
        .is_err()
        {
            return;
        }
        acks.lock().unwrap().consumed_tokens.push((member, token));
        // And a TOTP code now and then (each works once).
        let t = i % TOTP_MEMBERS;
        let code = totp_now(&secrets[t]);
        let Ok(row) = c.query_one(
            "SELECT mfa.totp_authenticate($1, $2, $3) ->> 'status_code'",
            &[&org, &format!("t{t}"), &code],
        ) else {
            return;
        };
        if row.get::<_, Option<String>>(0).as_deref() == Some("200") {
            acks.lock()
                .unwrap()
                .used_codes
                .push((format!("t{t}"), code));
        }
    }
}

#[test]
fn kill_9_during_delivery_sends_and_logins_loses_nothing() {
    let cycles: usize = std::env::var("MFA_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let cluster = Cluster::start("crash", 28818, "synchronous_commit = on");
    let url = cluster.create_database("mfa_crash");
    let mut c = connect_to(&url);
    c.batch_execute(
        "ALTER DATABASE mfa_crash SET mfa.sms_min_interval_seconds = 0;
         ALTER DATABASE mfa_crash SET mfa.sms_sends_per_number_per_hour = 1000;
         ALTER DATABASE mfa_crash SET mfa.sms_sends_per_member_per_hour = 1000;
         ALTER DATABASE mfa_crash SET mfa.sms_sends_per_prefix_per_hour = 1000000;",
    )
    .unwrap();
    let org = new_organization(&mut c, "crash");
    for i in 0..PHONE_MEMBERS {
        json(
            &mut c,
            "SELECT mfa.member_upsert($1, $2, $3)",
            &[&org, &format!("p{i}"), &format!("+1415555{:04}", 3000 + i)],
        );
    }
    for i in 0..PLAIN_MEMBERS {
        json(
            &mut c,
            "SELECT mfa.member_upsert($1, $2)",
            &[&org, &format!("u{i}")],
        );
    }
    let mut secrets = Vec::new();
    for i in 0..TOTP_MEMBERS {
        json(
            &mut c,
            "SELECT mfa.member_upsert($1, $2)",
            &[&org, &format!("t{i}")],
        );
        let secret = format!(
            "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PX{}",
            ['A', 'B', 'C', 'D', 'E'][i]
        );
        json(
            &mut c,
            "SELECT mfa.totp_migrate($1, $2, $3)",
            &[&org, &format!("t{i}"), &secret],
        );
        secrets.push(secret);
    }
    drop(c);

    let acks = Arc::new(Mutex::new(Acknowledged::default()));
    let mut rng = rand::thread_rng();
    let mut total_messages_checked = 0;
    for cycle in 0..cycles {
        let mut c = connect_to(&url);
        for i in 0..100 {
            json(
                &mut c,
                "SELECT mfa.otp_sms_send($1, $2)",
                &[&org, &format!("p{}", i % PHONE_MEMBERS)],
            );
        }
        let committed: BTreeSet<i64> = c
            .query("SELECT message_id FROM mfa.sms_outbox", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let sends_before = acks.lock().unwrap().sends;
        drop(c);

        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for _ in 0..3 {
            let (url, stop, acks) = (url.clone(), stop.clone(), acks.clone());
            threads.push(std::thread::spawn(move || worker_loop(url, stop, acks)));
        }
        {
            let (url, org, stop, acks) = (url.clone(), org.clone(), stop.clone(), acks.clone());
            threads.push(std::thread::spawn(move || {
                sender_loop(url, org, stop, acks)
            }));
        }
        for _ in 0..2 {
            let (url, org, secrets, stop, acks) = (
                url.clone(),
                org.clone(),
                secrets.clone(),
                stop.clone(),
                acks.clone(),
            );
            threads.push(std::thread::spawn(move || {
                login_loop(url, org, secrets, stop, acks)
            }));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..1500)));
        cluster.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        cluster.start_server();

        let mut c = connect_to(&url);
        let acks = acks.lock().unwrap();
        // No committed message is lost; every acknowledged send left its message.
        let present: BTreeSet<i64> = c
            .query("SELECT message_id FROM mfa.sms_outbox", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(
            committed.is_subset(&present),
            "cycle {cycle}: a committed message was lost"
        );
        let queued_since = (present.len() - committed.len()) as i64;
        assert!(
            queued_since >= acks.sends - sends_before,
            "cycle {cycle}: {} acknowledged sends, {queued_since} new messages",
            acks.sends - sends_before
        );
        // Acknowledged completions stayed done and are never handed out again; everything else
        // is delivered once the visibility timeout has passed.
        let sent: BTreeSet<i64> = c
            .query(
                "SELECT message_id FROM mfa.sms_outbox WHERE status = 'sent'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(
            acks.completed.is_subset(&sent),
            "cycle {cycle}: an acknowledged completion was lost"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let rows = c
                .query(
                    "SELECT id, receipt FROM mfa.sms_outbox_claim(1000, '1 minute')",
                    &[],
                )
                .unwrap();
            let claimed: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
            let receipts: std::collections::HashMap<i64, String> =
                rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            for id in &claimed {
                assert!(
                    !acks.completed.contains(id),
                    "cycle {cycle}: message {id} handed out again"
                );
                c.query_one(
                    "SELECT mfa.sms_outbox_complete($1, $2, 'SM-after')",
                    &[id, &receipts[id]],
                )
                .unwrap();
            }
            let pending: i64 = c
                .query_one(
                    "SELECT count(*) FROM mfa.sms_outbox WHERE status = 'pending'",
                    &[],
                )
                .unwrap()
                .get(0);
            if pending == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: {pending} messages never delivered"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        total_messages_checked = present.len();
        // Consumed tokens and used codes stay used.
        for (member, token) in &acks.consumed_tokens {
            let again = c
                .query_one(
                    "SELECT mfa.check_session_policy($1, $2, $3)",
                    &[&org, member, token],
                )
                .unwrap_err();
            assert_eq!(
                sql_error(&again).0,
                "28000",
                "cycle {cycle}: a consumed token works again"
            );
        }
        for (member, code) in &acks.used_codes {
            let again = json(
                &mut c,
                "SELECT mfa.totp_authenticate($1, $2, $3)",
                &[&org, member, code],
            );
            assert_ne!(
                again["status_code"], 200,
                "cycle {cycle}: a used TOTP code works again"
            );
        }
        assert!(
            cluster.log().contains("database system was interrupted")
                || cluster.log().contains("not properly shut down"),
            "cycle {cycle}: the server did not go through crash recovery"
        );
    }
    let acks = acks.lock().unwrap();
    println!(
        "crash: {cycles} kill -9 cycles survived; {total_messages_checked} messages checked, {} completions, {} sends, {} sessions and {} TOTP codes acknowledged before the crashes; lost messages: 0",
        acks.completed.len(),
        acks.sends,
        acks.consumed_tokens.len(),
        acks.used_codes.len()
    );
}
