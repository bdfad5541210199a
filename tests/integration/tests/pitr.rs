//! Point-in-time recovery: a cluster of its own archives its WAL; a base backup is taken
//! (`pg_basebackup`), then a first login creates its session, a member is locked and another
//! fails 7 times; later, past a recovery target time, a second login creates its session and the
//! second member fails 3 more times (locked on the original). The backup is restored to the target
//! time (`restore_command`, `recovery_target_time`, promoted): the first session is there, the
//! second is not, its login unknown; the lock written before the target holds; the attempt
//! ledger's shared memory starts clean (nothing tracked, nothing queued), and the member with 7
//! durable failures gets exactly 3 more checks before the lock: no more failures than the lock
//! allows.
//!
//! Runs on the first PostgreSQL version of a `make test` run (MFA_LONG_TESTS, as test.sh sets it).

mod common;
use common::*;
use postgres::Client;
use std::time::{Duration, Instant};

const PRIMARY_PORT: u16 = 29905;
const RESTORED_PORT: u16 = 29906;
const ORG: &str = "pitr";
const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXQ";
const THRESHOLD: usize = 10;
const ARCHIVE: &str = "/var/lib/postgresql/mfa-test-pitr-archive";

fn random_key() -> String {
    (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// `n` wrong codes for `member`: the answers' status codes.
fn fail(c: &mut Client, member: &str, n: usize) -> Vec<i64> {
    wrong_codes(SECRET, n)
        .iter()
        .map(|code| {
            json(
                c,
                "SELECT mfa.totp_authenticate($1, $2, $3)",
                &[&ORG, &member, code],
            )["status_code"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

/// Waits until the ledger's worker has written `n` failures of `member`.
fn wait_durable(c: &mut Client, member: &str, n: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let written: i32 = c
            .query_opt(
                "SELECT failed_attempts FROM mfa.member_lockouts WHERE organization_id = $1 AND member_id = $2",
                &[&ORG, &member],
            )
            .unwrap()
            .map(|r| r.get(0))
            .unwrap_or(0);
        if written >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{member}: {written} of {n} failures written"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the ledger's worker has written `member`'s lock.
fn wait_locked(c: &mut Client, member: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c
        .query_one(
            "SELECT coalesce(bool_or(lock_expires_at > now()), false) FROM mfa.member_lockouts
              WHERE organization_id = $1 AND member_id = $2",
            &[&ORG, &member],
        )
        .unwrap()
        .get::<_, bool>(0)
    {
        assert!(
            Instant::now() < deadline,
            "{member}'s lock was never written"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A login of `member` and its session through the guard; the login's token.
fn login(c: &mut Client, member: &str) -> String {
    let token = start_login(c, ORG, member).1;
    c.execute(
        "INSERT INTO public.sessions (organization_id, member_id, intermediate_session_token) VALUES ($1, $2, $3)",
        &[&ORG, &member, &token],
    )
    .unwrap();
    token
}

fn locked(c: &mut Client, member: &str) -> bool {
    json(c, "SELECT mfa.member_get($1, $2)", &[&ORG, &member])["is_locked"] == true
}

#[test]
fn restore_to_a_time_between_two_logins() {
    if std::env::var("MFA_LONG_TESTS").map_or(true, |v| v.is_empty()) {
        println!("pitr: skipped (runs on the first version of make test: MFA_LONG_TESTS=1)");
        return;
    }
    let started = Instant::now();
    let _ = std::process::Command::new("rm")
        .args(["-rf", ARCHIVE])
        .status();
    std::fs::create_dir_all(ARCHIVE).unwrap();
    let _ = std::process::Command::new("chown")
        .args(["postgres:postgres", ARCHIVE])
        .status();
    let keys = format!("{}\n", random_key());
    let primary = Cluster::start_with_key_file(
        "pitr-primary",
        PRIMARY_PORT,
        &format!(
            "wal_level = replica\narchive_mode = on\n\
             archive_command = 'test ! -f {ARCHIVE}/%f && cp %p {ARCHIVE}/%f'"
        ),
        &keys,
    );
    let url = primary.create_database("mfa_pitr");
    let mut c = connect_to(&url);
    c.batch_execute("ALTER DATABASE mfa_pitr SET mfa.member_checks_per_second = 100")
        .unwrap();
    json(
        &mut c,
        "SELECT mfa.organization_upsert($1, 'OPTIONAL')",
        &[&ORG],
    );
    for member in ["first", "second"] {
        json(&mut c, "SELECT mfa.member_upsert($1, $2)", &[&ORG, &member]);
    }
    for member in ["locked", "victim"] {
        json(&mut c, "SELECT mfa.member_upsert($1, $2)", &[&ORG, &member]);
        json(
            &mut c,
            "SELECT mfa.totp_migrate($1, $2, $3)",
            &[&ORG, &member, &SECRET],
        );
    }
    c.batch_execute(
        "CREATE TABLE public.sessions (id serial PRIMARY KEY, organization_id text NOT NULL,
             member_id text NOT NULL, intermediate_session_token text, authentication_factors jsonb)",
    )
    .unwrap();
    c.execute("SELECT mfa.session_table_guard('public.sessions')", &[])
        .unwrap();
    drop(c);

    // The base backup, straight into the directory it will be restored in.
    let restored = Cluster::base_backup(&primary, "pitr-restored", RESTORED_PORT, &[]);

    // Before the target: the first login, a lock, 7 failures of the victim (all written).
    let mut c = connect_to(&url);
    let first = login(&mut c, "first");
    assert_eq!(fail(&mut c, "locked", THRESHOLD), vec![401; THRESHOLD]);
    assert_eq!(fail(&mut c, "victim", 7), vec![401; 7]);
    wait_locked(&mut c, "locked");
    wait_durable(&mut c, "victim", 7);
    std::thread::sleep(Duration::from_millis(1000));
    let target: String = c
        .query_one("SELECT clock_timestamp()::text", &[])
        .unwrap()
        .get(0);
    std::thread::sleep(Duration::from_millis(1000));
    // After it: the second login, and the victim locked on the original.
    let second = login(&mut c, "second");
    assert_eq!(fail(&mut c, "victim", 3), vec![401; 3]);
    wait_locked(&mut c, "victim");
    assert!(locked(&mut c, "victim"));
    let sessions_on_original: i64 = c
        .query_one("SELECT count(*) FROM public.sessions", &[])
        .unwrap()
        .get(0);
    // Everything archived.
    let last_wal: String = c
        .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let archived: Option<String> = c
            .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
            .unwrap()
            .get(0);
        if archived.as_deref() >= Some(last_wal.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{last_wal} never archived ({archived:?})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(c);
    primary.stop_server();

    // The restore: the backup, the archive, the target; promoted at the target.
    restored.write_key_file(&keys);
    restored.append_settings(&format!(
        "port = {RESTORED_PORT}\nmfa.encryption_key_file = '{}'\narchive_mode = off\n\
         restore_command = 'cp {ARCHIVE}/%f %p'\nrecovery_target_time = '{target}'\n\
         recovery_target_action = 'promote'",
        restored.key_file()
    ));
    std::fs::write(format!("{}/recovery.signal", restored.dir), "").unwrap();
    let _ = std::process::Command::new("chown")
        .args([
            "postgres:postgres",
            &format!("{}/recovery.signal", restored.dir),
        ])
        .status();
    let restore_started = Instant::now();
    restored.start_server();
    let mut r = connect_to(&restored.url("mfa_pitr"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while r
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get::<_, bool>(0)
    {
        assert!(
            Instant::now() < deadline,
            "the restore never reached its target"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let restore_took = restore_started.elapsed();
    assert!(
        restored.log().contains("recovery stopping before commit"),
        "recovery stopped at the target time:\n{}",
        restored.log()
    );

    // The ledger starts clean (before any call).
    let stats = json(&mut r, "SELECT mfa.attempt_ledger_stats()", &[]);
    assert_eq!(stats["members_in_use"], 0, "{stats}");
    assert_eq!(stats["records_queued"], 0, "{stats}");

    // The state of the target time.
    let sessions: Vec<String> = r
        .query("SELECT member_id FROM public.sessions ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(sessions, ["first"], "the first session only");
    let known_logins: i64 = r
        .query_one(
            "SELECT count(*) FROM mfa.intermediate_sessions WHERE organization_id = $1 AND member_id = 'second'",
            &[&ORG],
        )
        .unwrap()
        .get(0);
    assert_eq!(known_logins, 0, "the second login started after the target");
    let again = r
        .execute(
            "INSERT INTO public.sessions (organization_id, member_id, intermediate_session_token) VALUES ($1, 'first', $2)",
            &[&ORG, &first],
        )
        .unwrap_err();
    assert_eq!(
        sql_error(&again).0,
        "28000",
        "the first login's token, consumed, works again"
    );
    let unknown = r
        .execute(
            "INSERT INTO public.sessions (organization_id, member_id, intermediate_session_token) VALUES ($1, 'second', $2)",
            &[&ORG, &second],
        )
        .unwrap_err();
    assert_eq!(
        sql_error(&unknown).0,
        "28000",
        "a token the restored state never issued"
    );

    // The durable state decides.
    assert!(locked(&mut r, "locked"), "a lock written before the target");
    let refused = json(
        &mut r,
        "SELECT mfa.totp_authenticate($1, 'locked', $2)",
        &[&ORG, &totp_now(SECRET)],
    );
    assert_eq!(refused["status_code"], 429, "{refused}");
    assert!(
        !locked(&mut r, "victim"),
        "the victim's lock came after the target"
    );
    let after = fail(&mut r, "victim", 5);
    assert_eq!(
        after,
        vec![401, 401, 401, 429, 429],
        "7 durable failures: 3 more checks, then the lock"
    );
    assert!(locked(&mut r, "victim"));
    // A login works on the restored cluster.
    let token = login(&mut r, "first");
    assert!(!token.is_empty());
    println!(
        "pitr: restored to {target} in {:.1} s (WAL replayed from the archive): sessions 2 on the original, 1 after the restore (the first login's); locks: 1 before the target, 1 after the restore; the victim's 7 durable failures, then 3 more checks and the lock (the original locked at 10 too); ledger after the restart: {stats}; the whole test {:.1} s",
        restore_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(sessions_on_original, 2);
    drop(r);
    drop(restored);
    drop(primary);
    let _ = std::process::Command::new("rm")
        .args(["-rf", ARCHIVE])
        .status();
}
