//! The administrators' reports and the audit trail's signals, with real connections: only
//! `mfa_admin` may read members or events; a walk through `members_search`'s pages returns every
//! member once while others are created; a walk through `events_search`'s pages never repeats an
//! event and misses only what its guarantee allows; `NOTIFY mfa_events` arrives at commit (never
//! after a rollback) with a payload that names no member; `mfa.events_retention_days` deletes old
//! events in batches while logins go on, in the databases that ask for it only.

mod common;
use common::*;
use fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A login role of its own in `group` (`mfa_app`, `mfa_admin`, …), and a connection as it.
fn connect_as_member_of(group: &str) -> Client {
    let role = unique(&format!("reports_{group}")).replace('-', "_");
    connect()
        .batch_execute(&format!("CREATE ROLE {role} LOGIN IN ROLE {group}"))
        .unwrap();
    Client::connect(&database_url_as(&role), NoTls).expect("connect as the new role")
}

#[test]
fn only_mfa_admin_reads_members_and_events() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "reports-roles", "ann");
    for group in ["mfa_app", "mfa_sms_worker"] {
        let mut other = connect_as_member_of(group);
        for call in [
            "SELECT mfa.members_search($1)",
            "SELECT mfa.events_search($1)",
            "SELECT mfa.members_search($1, '{\"locked\": true}', NULL, 1000)",
            "SELECT mfa.events_search($1, '{\"member_id\": \"ann\"}', NULL, 1000)",
        ] {
            let refused = other.query_one(call, &[&org]).unwrap_err();
            assert_eq!(sql_error(&refused).0, "42501", "{group}: {call}");
        }
        // Nor around the functions: the tables are the owner's.
        for table in ["mfa.members", "mfa.events", "mfa.member_lockouts"] {
            let refused = other
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .unwrap_err();
            assert_eq!(sql_error(&refused).0, "42501", "{group}: {table}");
        }
    }
    let mut admin = connect_as_member_of("mfa_admin");
    let members = json(&mut admin, "SELECT mfa.members_search($1)", &[&org]);
    assert_eq!(members["members"][0]["member_id"], "ann", "{members}");
    let events = json(&mut admin, "SELECT mfa.events_search($1)", &[&org]);
    assert!(events["events"].as_array().unwrap().len() >= 2, "{events}");
}

/// Every page of `members_search` from the first, `size` at a time, pausing between pages: the
/// member ids in the order returned.
fn walk_members(c: &mut Client, org: &str, size: i32, pause: Duration) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = json(
            c,
            "SELECT mfa.members_search($1, '{}', $2, $3)",
            &[&org, &cursor, &size],
        );
        let members = page["members"].as_array().unwrap();
        assert!(members.len() <= size as usize);
        ids.extend(
            members
                .iter()
                .map(|m| m["member_id"].as_str().unwrap().to_string()),
        );
        match page["results_metadata"]["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return ids,
        }
        std::thread::sleep(pause);
    }
}

/// Whether `ids` are in strictly ascending order as the database compares member ids.
fn ascending(c: &mut Client, ids: &[String]) -> bool {
    c.query_one(
        "SELECT coalesce(bool_and(a < b), true) FROM (
             SELECT x AS a, lead(x) OVER (ORDER BY n) AS b FROM unnest($1::text[]) WITH ORDINALITY AS t (x, n)) s
          WHERE b IS NOT NULL",
        &[&ids],
    )
    .unwrap()
    .get(0)
}

#[test]
fn a_walk_through_members_returns_each_once_while_others_are_created_and_deleted() {
    let mut c = connect();
    let org = new_organization(&mut c, "reports-walk");
    let initial: BTreeSet<String> = (0..400)
        .map(|_| format!("{:08x}", rand::random::<u32>()))
        .collect();
    let ids: Vec<String> = initial.iter().cloned().collect();
    c.execute(
        "SELECT count(mfa.member_upsert($1, m)) FROM unnest($2::text[]) m",
        &[&org, &ids],
    )
    .unwrap();
    // Meanwhile another connection creates members with random ids (sorting before and after the
    // page being read) and deletes some of those again.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (org, stop) = (org.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut w = connect();
            let mut created = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("{:08x}-new", rand::random::<u32>());
                json(&mut w, "SELECT mfa.member_upsert($1, $2)", &[&org, &id]);
                if rand::random::<bool>() {
                    w.execute("SELECT mfa.member_delete($1, $2)", &[&org, &id])
                        .unwrap();
                }
                created += 1;
            }
            created
        })
    };
    let walked = walk_members(&mut c, &org, 7, Duration::from_millis(5));
    stop.store(true, Ordering::Relaxed);
    let created = writer.join().unwrap();
    let seen: HashSet<&String> = walked.iter().collect();
    assert_eq!(seen.len(), walked.len(), "a member was returned twice");
    let missing: Vec<&String> = initial.iter().filter(|m| !seen.contains(m)).collect();
    assert!(missing.is_empty(), "members skipped: {missing:?}");
    assert!(ascending(&mut c, &walked), "pages out of member_id order");
    assert!(
        created > 10,
        "the writer created {created} members meanwhile"
    );
    println!(
        "members walk: {} members returned in pages of 7 ({} initial) while {created} were created",
        walked.len(),
        initial.len()
    );
}

/// Every page of `events_search` from `cursor`, `size` at a time, calling `between` after each
/// page: the event ids in the order returned.
fn walk_events(c: &mut Client, org: &str, size: i32, mut between: impl FnMut(usize)) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        let answer = json(
            c,
            "SELECT mfa.events_search($1, '{}', $2, $3)",
            &[&org, &cursor, &size],
        );
        ids.extend(
            answer["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event_id"].as_i64().unwrap()),
        );
        match answer["results_metadata"]["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        between(page);
    }
    ids
}

fn event_ids(c: &mut Client, org: &str) -> Vec<i64> {
    c.query(
        "SELECT event_id FROM mfa.events WHERE organization_id = $1 ORDER BY event_id DESC",
        &[&org],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn a_walk_through_events_never_repeats_and_misses_nothing_committed_before_it() {
    let mut c = connect();
    let org = new_organization(&mut c, "reports-events");
    for i in 0..150 {
        json(
            &mut c,
            "SELECT mfa.member_upsert($1, $2)",
            &[&org, &format!("m{i}")],
        );
    }
    let before = event_ids(&mut c, &org);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (org, stop) = (org.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut w = connect();
            let mut written = 0;
            while !stop.load(Ordering::Relaxed) {
                json(
                    &mut w,
                    "SELECT mfa.member_upsert($1, $2)",
                    &[&org, &format!("new{written}")],
                );
                written += 1;
            }
            written
        })
    };
    let walked = walk_events(&mut c, &org, 9, |_| {
        std::thread::sleep(Duration::from_millis(5))
    });
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    let seen: HashSet<i64> = walked.iter().copied().collect();
    assert_eq!(seen.len(), walked.len(), "an event was returned twice");
    assert!(
        walked.windows(2).all(|w| w[0] > w[1]),
        "pages not newest first"
    );
    let missing: Vec<&i64> = before.iter().filter(|e| !seen.contains(e)).collect();
    assert!(
        missing.is_empty(),
        "events committed before the walk skipped: {missing:?}"
    );
    assert!(written > 10, "the writer wrote {written} events meanwhile");
    println!(
        "events walk: {} events in pages of 9, none repeated, while {written} more were written",
        walked.len()
    );
}

#[test]
fn an_event_committed_during_a_walk_is_in_it_only_below_the_pages_read() {
    let mut c = connect();
    let org = new_organization(&mut c, "reports-inflight");
    // Two transactions draw event ids and stay open while later events commit.
    let mut early = connect();
    let mut late = connect();
    let open = |client: &mut Client, member: &str| {
        client.batch_execute("BEGIN").unwrap();
        json(client, "SELECT mfa.member_upsert($1, $2)", &[&org, &member]);
    };
    open(&mut early, "early");
    for i in 0..3 {
        json(
            &mut c,
            "SELECT mfa.member_upsert($1, $2)",
            &[&org, &format!("a{i}")],
        );
    }
    open(&mut late, "late");
    for i in 0..3 {
        json(
            &mut c,
            "SELECT mfa.member_upsert($1, $2)",
            &[&org, &format!("b{i}")],
        );
    }
    let id_of = |c: &mut Client, member: &str| -> i64 {
        c.query_one(
            "SELECT event_id FROM mfa.events WHERE organization_id = $1 AND member_id = $2",
            &[&org, &member],
        )
        .unwrap()
        .get(0)
    };
    // The first page (3 events) covers the ids of b0..b2; "late" drew its id below them, "early"
    // below a0..a2. Both commit after the first page was read.
    let walked = walk_events(&mut c, &org, 3, |page| {
        if page == 0 {
            late.batch_execute("COMMIT").unwrap();
            early.batch_execute("COMMIT").unwrap();
        }
    });
    let (early_id, late_id) = (id_of(&mut c, "early"), id_of(&mut c, "late"));
    let b0 = id_of(&mut c, "b0");
    assert!(late_id < b0 && early_id < late_id);
    // Both are below the first page: the walk has them.
    assert!(
        walked.contains(&late_id) && walked.contains(&early_id),
        "{walked:?}"
    );

    // Now one that commits after the page covering its id was read: not in this walk, in the next.
    let mut held = connect();
    held.batch_execute("BEGIN").unwrap();
    json(&mut held, "SELECT mfa.member_upsert($1, 'held')", &[&org]);
    json(
        &mut c,
        "SELECT mfa.member_upsert($1, 'after-held')",
        &[&org],
    );
    let walked = walk_events(&mut c, &org, 2, |page| {
        if page == 0 {
            held.batch_execute("COMMIT").unwrap();
        }
    });
    let held_id = id_of(&mut c, "held");
    assert!(
        !walked.contains(&held_id),
        "an event committed after its page was read"
    );
    let again = walk_events(&mut c, &org, 2, |_| {});
    assert!(again.contains(&held_id));
    assert_eq!(again, event_ids(&mut c, &org));
}

/// The payloads of `mfa_events` notifications about `org` that arrive within `window` on any of
/// `listeners` (one per node: a notification is raised on the node that runs the call).
fn notifications(listeners: &mut [Client], org: &str, window: Duration) -> Vec<Value> {
    let deadline = Instant::now() + window;
    let mut found = Vec::new();
    loop {
        for listener in listeners.iter_mut() {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(20));
            let mut notifications = listener.notifications();
            let mut it = notifications.timeout_iter(wait);
            while let Some(n) = it.next().unwrap() {
                assert_eq!(n.channel(), "mfa_events");
                let payload: Value = serde_json::from_str(n.payload()).unwrap();
                if payload["organization_id"] == org {
                    found.push(payload);
                }
            }
        }
        if Instant::now() >= deadline {
            return found;
        }
    }
}

/// Waits until `want` notifications about `org` arrived (or 15 s passed).
fn wait_for_notifications(listeners: &mut [Client], org: &str, want: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut found = Vec::new();
    while found.len() < want && Instant::now() < deadline {
        found.extend(notifications(listeners, org, Duration::from_millis(200)));
    }
    found
}

#[test]
fn security_events_notify_at_commit_never_after_a_rollback() {
    let mut c = connect();
    let org = unique("reports-notify");
    json(
        &mut c,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL', remember_device_days => 30)",
        &[&org],
    );
    json(
        &mut c,
        "SELECT mfa.member_upsert($1, 'ann', '+14155550142')",
        &[&org],
    );
    // An event is notified on the node that writes it: on a cluster, the organization's node for
    // a call Citus delegates, the coordinator for one it runs there (the gate on a sessions table
    // of the coordinator, a call in a transaction block that Citus does not delegate). Listened
    // for on every node, as one role in `mfa_admin`.
    let admin = unique("reports_mfa_admin").replace('-', "_");
    c.batch_execute(&format!("CREATE ROLE {admin} LOGIN IN ROLE mfa_admin"))
        .unwrap();
    let mut listener: Vec<Client> = node_urls(&mut c, &database_url_as(&admin))
        .iter()
        .map(|url| {
            let mut l = Client::connect(url, NoTls).expect("connect as the new role");
            l.batch_execute("LISTEN mfa_events").unwrap();
            l
        })
        .collect();
    // The lock below, with a lower threshold: a setting of a role of the test's own, which
    // reaches a call Citus delegates to the organization's node (a session's SET does not).
    let locker = app_role(&mut c, "reports_lock", &["mfa.lock_threshold = 3"]);
    let mut lock = Client::connect(&database_url_as(&locker), NoTls).unwrap();

    // A factor added in a transaction that rolls back: nothing. Committed: one notification.
    c.batch_execute("BEGIN").unwrap();
    json(
        &mut c,
        "SELECT mfa.totp_migrate($1, 'ann', 'JBSWY3DPEHPK3PXP', ARRAY['aaaa-bbbb-cccc', 'dddd-eeee-ffff', 'gggg-hhhh-iiii'])",
        &[&org],
    );
    assert!(
        notifications(&mut listener, &org, Duration::from_millis(300)).is_empty(),
        "a notification before commit"
    );
    c.batch_execute("ROLLBACK").unwrap();
    assert!(
        notifications(&mut listener, &org, Duration::from_millis(500)).is_empty(),
        "a notification of a rolled-back transaction"
    );
    json(
        &mut c,
        "SELECT mfa.totp_migrate($1, 'ann', 'JBSWY3DPEHPK3PXP', ARRAY['aaaa-bbbb-cccc', 'dddd-eeee-ffff', 'gggg-hhhh-iiii'])",
        &[&org],
    );
    let added = wait_for_notifications(&mut listener, &org, 1);
    assert_eq!(added.len(), 1, "{added:?}");
    let payload = &added[0];
    let keys: BTreeSet<&str> = payload
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["event_id", "event_type", "notice", "organization_id"])
    );
    assert_eq!(payload["event_type"], "totp.migrated");
    assert_eq!(payload["notice"], "factor_added");
    let (event_type, member): (String, String) = c
        .query_one(
            "SELECT event_type, member_id FROM mfa.events WHERE organization_id = $1 AND event_id = $2",
            &[&org, &payload["event_id"].as_i64().unwrap()],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        (event_type.as_str(), member.as_str()),
        ("totp.migrated", "ann")
    );

    // Events that are not security-relevant notify nobody.
    json(&mut c, "SELECT mfa.member_upsert($1, 'bob')", &[&org]);
    json(&mut c, "SELECT mfa.organization_upsert($1)", &[&org]);
    start_login(&mut c, &org, "bob");

    // A login, then a step-up of its session: notified at the UPDATE's commit.
    let role = unique("reports_notify_app").replace('-', "_");
    c.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN IN ROLE mfa_app; CREATE SCHEMA {role} AUTHORIZATION {role};
         SET ROLE {role};
         CREATE TABLE {role}.sessions (id serial PRIMARY KEY, organization_id text NOT NULL,
             member_id text NOT NULL, intermediate_session_token text, authentication_factors jsonb);
         RESET ROLE;
         SELECT mfa.session_table_guard('{role}.sessions');"
    ))
    .unwrap();
    let mut app = Client::connect(&database_url_as(&role), NoTls).unwrap();
    let (_, token) = start_login(&mut app, &org, "ann");
    let recovered = json(
        &mut app,
        "SELECT mfa.recovery_codes_recover($1, 'ann', 'aaaa-bbbb-cccc', $2)",
        &[&org, &token],
    );
    assert_eq!(recovered["status_code"], 200, "{recovered}");
    let device = json(
        &mut app,
        "SELECT mfa.remembered_device_create($1, 'ann', $2)",
        &[&org, &token],
    )["device_token"]
        .as_str()
        .unwrap()
        .to_string();
    let session: i32 = app
        .query_one(
            &format!(
                "INSERT INTO {role}.sessions (organization_id, member_id, intermediate_session_token)
                 VALUES ($1, 'ann', $2) RETURNING id"
            ),
            &[&org, &token],
        )
        .unwrap()
        .get(0);
    let step_up = token_of(&json(
        &mut app,
        "SELECT mfa.step_up_start($1, 'ann')",
        &[&org],
    ));
    let proven = json(
        &mut app,
        "SELECT mfa.recovery_codes_recover($1, 'ann', 'dddd-eeee-ffff', $2)",
        &[&org, &step_up],
    );
    assert_eq!(proven["status_code"], 200, "{proven}");
    app.batch_execute("BEGIN").unwrap();
    app.execute(
        &format!("UPDATE {role}.sessions SET intermediate_session_token = $1 WHERE id = $2"),
        &[&step_up, &session],
    )
    .unwrap();
    assert!(notifications(&mut listener, &org, Duration::from_millis(300)).is_empty());
    app.batch_execute("COMMIT").unwrap();
    let stepped = wait_for_notifications(&mut listener, &org, 1);
    assert_eq!(stepped.len(), 1, "{stepped:?}");
    assert_eq!(stepped[0]["event_type"], "session.stepped_up");
    assert_eq!(stepped[0]["notice"], "step_up");

    // Written by the attempt ledger's worker, in its own transaction: a suspected theft (a
    // rotated device token presented again) and a lock. They are notified even though the
    // caller rolls its transaction back: the ledger keeps them whatever the caller does.
    let login = json(
        &mut app,
        "SELECT mfa.primary_authenticate($1, 'ann', device_token => $2)",
        &[&org, &device],
    );
    assert_eq!(login["member_authenticated"], true, "{login}");
    app.batch_execute("BEGIN").unwrap();
    json(
        &mut app,
        "SELECT mfa.primary_authenticate($1, 'ann', device_token => $2)",
        &[&org, &device],
    );
    app.batch_execute("ROLLBACK").unwrap();
    let theft = wait_for_notifications(&mut listener, &org, 1);
    assert_eq!(theft.len(), 1, "{theft:?}");
    assert_eq!(theft[0]["event_type"], "remembered_device.theft_suspected");
    assert_eq!(theft[0]["notice"], "theft_suspected");

    lock.batch_execute("BEGIN").unwrap();
    for code in ["111111", "222222", "333333"] {
        let failed = json(
            &mut lock,
            "SELECT mfa.totp_authenticate($1, 'ann', $2)",
            &[&org, &code],
        );
        assert_eq!(failed["status_code"], 401, "{failed}");
    }
    lock.batch_execute("ROLLBACK").unwrap();
    let locked = wait_for_notifications(&mut listener, &org, 1);
    assert_eq!(locked.len(), 1, "one notification for one lock: {locked:?}");
    assert_eq!(locked[0]["event_type"], "totp.authenticate");
    assert_eq!(locked[0]["notice"], "member_locked");

    // A factor removed.
    json(&mut c, "SELECT mfa.member_unlock($1, 'ann')", &[&org]);
    json(&mut c, "SELECT mfa.member_delete_totp($1, 'ann')", &[&org]);
    let removed = wait_for_notifications(&mut listener, &org, 1);
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0]["event_type"], "totp.deleted");
    assert_eq!(removed[0]["notice"], "factor_removed");

    // Nothing else came, and no payload names a member or a number.
    assert!(notifications(&mut listener, &org, Duration::from_millis(500)).is_empty());
    for payload in added
        .iter()
        .chain(&stepped)
        .chain(&theft)
        .chain(&locked)
        .chain(&removed)
    {
        let text = payload.to_string();
        assert!(
            !text.contains("ann") && !text.contains("4155550142") && !text.contains("0142"),
            "{text}"
        );
    }
}

/// The count of `mfa.events` rows of `organization_id`, older than a day or not.
fn events_by_age(c: &mut Client, old: bool) -> i64 {
    c.query_one(
        "SELECT count(*) FROM mfa.events WHERE (occurred_at < now() - interval '1 day') = $1",
        &[&old],
    )
    .unwrap()
    .get(0)
}

/// Writes `n` events of `org` that happened two days ago (as a trail written then would hold
/// them: their ids are below every event written since).
fn old_events(c: &mut Client, org: &str, n: i32) {
    c.execute(
        "INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details, occurred_at)
         SELECT $1, gen_random_uuid(), 'member.updated', 'm' || g, '{\"is_breakglass\": false}',
                now() - interval '2 days' + g * interval '1 millisecond'
           FROM generate_series(1, $2) g",
        &[&org, &n],
    )
    .unwrap();
}

#[test]
fn retention_deletes_old_events_in_batches_while_logins_go_on() {
    let cluster = Cluster::start("retention", 28862, "");
    let kept_url = cluster.create_database("mfa_keeps");
    let url = cluster.create_database("mfa_retention");
    // This database keeps a day; the other keeps everything (the default).
    Client::connect(&cluster.url("postgres"), NoTls)
        .unwrap()
        .batch_execute("ALTER DATABASE mfa_retention SET mfa.events_retention_days = 1")
        .unwrap();
    let mut c = connect_to(&url);
    let orgs = ["acme", "globex", "initech"];
    for (org, n) in orgs.iter().zip([30_000, 20_000, 10_000]) {
        old_events(&mut c, org, n);
    }
    old_events(&mut c, "", 100);
    let mut kept = connect_to(&kept_url);
    old_events(&mut kept, "acme", 3_000);
    for org in orgs {
        json(&mut c, "SELECT mfa.organization_upsert($1)", &[&org]);
        json(&mut c, "SELECT mfa.member_upsert($1, 'ann')", &[&org]);
        json(
            &mut c,
            "SELECT mfa.totp_migrate($1, 'ann', 'JBSWY3DPEHPK3PXP')",
            &[&org],
        );
    }
    assert_eq!(events_by_age(&mut c, true), 60_100);

    // Logins go on, each with a wrong code first (queued for the ledger's writer, which prunes
    // between its batches) then a right one.
    let stop = Arc::new(AtomicBool::new(false));
    let logins: Vec<_> = orgs
        .iter()
        .map(|org| {
            let (url, stop, org) = (url.clone(), stop.clone(), org.to_string());
            std::thread::spawn(move || {
                let mut l = connect_to(&url);
                let (mut done, mut failures, mut slowest) = (0, 0, Duration::ZERO);
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let (_, token) = start_login(&mut l, &org, "ann");
                    let failed = json(
                        &mut l,
                        "SELECT mfa.totp_authenticate($1, 'ann', '000000', $2)",
                        &[&org, &token],
                    );
                    assert!(
                        failed["status_code"] == 401 || failed["status_code"] == 429,
                        "{failed}"
                    );
                    if failed["status_code"] == 401 {
                        failures += 1;
                    }
                    slowest = slowest.max(started.elapsed());
                    done += 1;
                    // Within the member's checks per second, and never enough failures to lock.
                    json(&mut l, "SELECT mfa.member_unlock($1, 'ann')", &[&org]);
                    std::thread::sleep(Duration::from_millis(50));
                }
                (done, failures, slowest)
            })
        })
        .collect();
    let started = Instant::now();
    while events_by_age(&mut c, true) > 0 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(i32, i64, Duration)> =
        logins.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        events_by_age(&mut c, true),
        0,
        "old events left after {took:?}"
    );
    let recent = events_by_age(&mut c, false);
    assert!(recent > 20, "the logins' events are kept: {recent}");
    // The writer kept writing the logins' failures meanwhile: every one is in the trail.
    let counted: i64 = results.iter().map(|r| r.1).sum();
    let written = || -> i64 {
        connect_to(&url)
            .query_one(
                "SELECT count(*) FROM mfa.events WHERE event_type = 'totp.authenticate'
                    AND details ->> 'outcome' = 'failure'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let waited = Instant::now();
    while written() < counted && waited.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(written(), counted, "failures written");
    // The other database keeps its old events.
    assert_eq!(events_by_age(&mut kept, true), 3_000);
    // In transactions of at most 10,000 events (the log says how many).
    let log = cluster.log();
    let line = log
        .lines()
        .find(|l| l.contains("mfa: audit trail retention: deleted"))
        .unwrap_or_else(|| panic!("no retention line in the log:\n{log}"));
    assert!(
        line.contains("deleted 60100 events older than 1 days in 7 transactions"),
        "{line}"
    );
    let logins: i32 = results.iter().map(|r| r.0).sum();
    let slowest = results.iter().map(|r| r.2).max().unwrap();
    assert!(logins >= 10, "{logins} logins while the prune ran");
    println!(
        "retention: 60,100 old events deleted in {took:?} (7 transactions) while {logins} logins went on ({counted} failures written, slowest login {slowest:?})"
    );
}
