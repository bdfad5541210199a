//! Major upgrades: a PostgreSQL 15 cluster of its own, filled with every kind of mfa data —
//! organizations, members with TOTP, phones and recovery codes, a remembered device, a queued and
//! a dead outbox message, a locked member, a sessions table owned by a non-superuser application
//! role and guarded, sessions, the audit trail — is upgraded with `pg_upgrade` to the version the
//! suite runs on (17 or 18). Afterwards every mfa table (and the sessions table) has the same rows
//! (count and md5 in primary key order), and everything works: a TOTP login, the queued message
//! and a new SMS, the remembered device (it rotates; its rotated-away token is a copy), the lock,
//! the sealed factors of sessions written before, and the guard — after the documented step
//! (README, The session gate: "after `pg_upgrade` run `session_table_guard` on each guarded table
//! (the gate refuses, naming the fix, until then)"), which this test follows to the letter.
//!
//! Needs the old version's programs in /usr/lib/postgresql/15/bin with mfa installed there
//! (`make test` runs the PostgreSQL 15 suite first, which installs it); skipped, saying so,
//! when the suite runs on 15 or the old installation lacks mfa.

mod common;
use common::*;
use postgres::Client;
use std::time::{Duration, Instant};

const OLD_BIN: &str = "/usr/lib/postgresql/15/bin";
const OLD_PORT: u16 = 29900;
const NEW_PORT: u16 = 29901;
const ORG: &str = "acme";
const SECRET_ANN: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXA";
const SECRET_DEE: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXD";
const SECRET_EVE: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXE";
const RECOVERY: &str = "abcd-efgh-ijkl";
/// Short send limits off, a code that outlives the upgrade, ten failures in one go.
const SETTINGS: &str = "mfa.sms_min_interval_seconds = 0\nmfa.sms_code_lifetime_seconds = 600\n\
                        mfa.member_checks_per_second = 100\nmax_connections = 30";

fn extension_version(sharedir: &str) -> Option<String> {
    let control = std::fs::read_to_string(format!("{sharedir}/extension/mfa.control")).ok()?;
    control.lines().find_map(|l| {
        l.strip_prefix("default_version").map(|v| {
            v.trim_matches(|c: char| c == '=' || c == ' ' || c == '\'')
                .to_string()
        })
    })
}

fn sharedir(bin: &str) -> String {
    let out = std::process::Command::new(format!("{bin}/pg_config"))
        .arg("--sharedir")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if out.is_empty() {
        // Debian's 15 has no pg_config in its bindir.
        "/usr/share/postgresql/15".into()
    } else {
        out
    }
}

fn random_key() -> String {
    (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// The organization's device-remembering member dee: a login proven with a recovery code, its
/// device remembered, then used once. Its current token and the one it rotated away.
fn remember_a_device(c: &mut Client) -> (String, String) {
    json(c, "SELECT mfa.member_upsert($1, 'dee')", &[&ORG]);
    json(
        c,
        "SELECT mfa.totp_migrate($1, 'dee', $2, ARRAY[$3])",
        &[&ORG, &SECRET_DEE, &RECOVERY],
    );
    let token = start_login(c, ORG, "dee").1;
    let recovered = json(
        c,
        "SELECT mfa.recovery_codes_recover($1, 'dee', $2, $3)",
        &[&ORG, &RECOVERY, &token],
    );
    assert_eq!(recovered["status_code"], 200, "{recovered}");
    let first = json(
        c,
        "SELECT mfa.remembered_device_create($1, 'dee', $2, 'fingerprint')",
        &[&ORG, &token],
    )["device_token"]
        .as_str()
        .unwrap()
        .to_string();
    let current = use_device(c, &first).expect("the device is honoured");
    (current, first)
}

/// A login of dee presenting `device_token`: its new token when honoured.
fn use_device(c: &mut Client, device_token: &str) -> Option<String> {
    let login = json(
        c,
        "SELECT mfa.primary_authenticate($1, 'dee', device_token => $2, device_fingerprint => 'fingerprint')",
        &[&ORG, &device_token],
    );
    login["device_token"].as_str().map(String::from)
}

/// A TOTP code of `secret` other than `used` (waits for the next step when they are equal).
fn fresh_totp(secret: &str, used: &str) -> String {
    loop {
        let code = totp_now(secret);
        if code != used {
            return code;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn insert_session(app: &mut Client, member: &str, token: &str) -> Result<i32, postgres::Error> {
    app.query_one(
        "INSERT INTO app.sessions (organization_id, member_id, intermediate_session_token)
         VALUES ($1, $2, $3) RETURNING id",
        &[&ORG, &member, &token],
    )
    .map(|r| r.get(0))
}

fn aal(c: &mut Client, session: i32) -> String {
    c.query_one(
        "SELECT mfa.session_aal(organization_id, member_id, authentication_factors) FROM app.sessions WHERE id = $1",
        &[&session],
    )
    .unwrap()
    .get(0)
}

/// Debian's PostgreSQL 15.20 (a security release) keeps a version of every column in its
/// options under a reserved key, `pg_attver`, which its own pg_dump leaves out. A new version's
/// pg_dump from before that release (17.11 and 18.6, which scripts/postgres.sh builds) copies it
/// into pg_upgrade's schema dump, and the new server refuses it (`unrecognized parameter
/// "pg_attver"`): pg_upgrade fails for any database with a table, mfa or not. Where the new
/// pg_dump does not know the key, the old cluster's user columns lose it before the upgrade (a
/// catalog update; the old cluster is not used afterwards). Returns how many columns had it.
fn clear_attribute_versions(old: &Cluster, new_bin: &str) -> i64 {
    let knows = std::fs::read(format!("{new_bin}/pg_dump"))
        .map(|b| b.windows(9).any(|w| w == b"pg_attver"))
        .unwrap_or(false);
    if knows {
        return 0;
    }
    let mut cleared = 0;
    let mut admin = connect_to(&old.url("postgres"));
    let databases: Vec<String> = admin
        .query("SELECT datname FROM pg_database WHERE datallowconn", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for database in databases {
        cleared += connect_to(&old.url(&database))
            .execute(
                "UPDATE pg_catalog.pg_attribute
                    SET attoptions = nullif(ARRAY(SELECT o FROM unnest(attoptions) AS o WHERE o NOT LIKE 'pg\\_attver=%'), '{}')
                  WHERE attrelid >= 16384 AND attoptions::text LIKE '%pg\\_attver=%'",
                &[],
            )
            .unwrap() as i64;
    }
    if cleared > 0 {
        println!(
            "major_upgrade: the old server keeps pg_attver column options that {new_bin}/pg_dump does not know: cleared on {cleared} columns before pg_upgrade (a PostgreSQL version skew, see clear_attribute_versions)"
        );
    }
    cleared
}

/// The last lines of each log pg_upgrade left in the new cluster, for a failure's message.
fn upgrade_logs(dir: &str) -> String {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("for f in {dir}/pg_upgrade_output.d/*/log/*.log; do echo \"== $f\"; tail -n 15 \"$f\"; done"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into()
}

#[test]
fn pg_upgrade_from_15_keeps_every_login_lock_device_and_message() {
    let new_bin = bindir();
    let new_major = major_version(&new_bin);
    if new_major == 15 {
        println!(
            "major_upgrade: skipped: the suite runs on PostgreSQL 15, the version upgraded from"
        );
        return;
    }
    let old_lib = "/usr/lib/postgresql/15/lib/mfa.so";
    let old_version = extension_version(&sharedir(OLD_BIN));
    if !std::path::Path::new(old_lib).exists() || old_version.is_none() {
        println!(
            "major_upgrade: skipped: PostgreSQL 15 has no mfa installed ({old_lib}); `make test` installs it in the 15 suite, run first"
        );
        return;
    }
    let new_version = extension_version(&sharedir(&new_bin));
    if old_version != new_version {
        println!(
            "major_upgrade: skipped: PostgreSQL 15 has mfa {old_version:?}, {new_major} has {new_version:?}: not one build"
        );
        return;
    }
    let started = Instant::now();
    let keys = format!("{}\n{}\n", random_key(), random_key());

    // The old cluster, with data checksums (18's initdb turns them on by default; both sides
    // must agree).
    let old = Cluster::init_with("upgrade-15", OLD_PORT, SETTINGS, OLD_BIN, &["-k"]);
    old.write_key_file(&keys);
    old.append_settings(&format!("mfa.encryption_key_file = '{}'", old.key_file()));
    old.start_server();
    let url = old.create_database("mfa_upgrade");
    let mut c = connect_to(&url);
    json(
        &mut c,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL', remember_device_days => 30)",
        &[&ORG],
    );
    json(
        &mut c,
        "SELECT mfa.organization_upsert('beta', 'OPTIONAL')",
        &[],
    );
    json(&mut c, "SELECT mfa.member_upsert('beta', 'zed')", &[]);
    for (member, secret) in [("ann", SECRET_ANN), ("eve", SECRET_EVE)] {
        json(&mut c, "SELECT mfa.member_upsert($1, $2)", &[&ORG, &member]);
        json(
            &mut c,
            "SELECT mfa.totp_migrate($1, $2, $3, ARRAY[$4])",
            &[&ORG, &member, &secret, &RECOVERY],
        );
    }
    json(
        &mut c,
        "SELECT mfa.member_upsert($1, 'bob', '+14155550177')",
        &[&ORG],
    );
    json(
        &mut c,
        "SELECT mfa.member_upsert($1, 'cat', '+14155550178')",
        &[&ORG],
    );
    // cat's message dies (a provider's permanent refusal); bob's stays queued.
    json(&mut c, "SELECT mfa.otp_sms_send($1, 'cat')", &[&ORG]);
    let claimed = c
        .query_one(
            "SELECT id, receipt FROM mfa.sms_outbox_claim(10, '1 minute', $1)",
            &[&ORG],
        )
        .unwrap();
    let (dead_id, receipt): (i64, String) = (claimed.get(0), claimed.get(1));
    c.query_one(
        "SELECT mfa.sms_outbox_fail($1, $2, 'invalid number', false)",
        &[&dead_id, &receipt],
    )
    .unwrap();
    json(&mut c, "SELECT mfa.otp_sms_send($1, 'bob')", &[&ORG]);
    let (device, rotated_away) = remember_a_device(&mut c);
    // eve: ten wrong codes lock her; the ledger's worker writes the lock.
    for code in wrong_codes(SECRET_EVE, 10) {
        let answer = json(
            &mut c,
            "SELECT mfa.totp_authenticate($1, 'eve', $2)",
            &[&ORG, &code],
        );
        assert_eq!(answer["status_code"], 401, "{answer}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c
        .query_one(
            "SELECT EXISTS (SELECT FROM mfa.member_lockouts WHERE organization_id = $1
                              AND member_id = 'eve' AND lock_expires_at > now())",
            &[&ORG],
        )
        .unwrap()
        .get::<_, bool>(0)
    {
        assert!(Instant::now() < deadline, "the lock was never written");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The application: a non-superuser role owning its sessions table, guarded.
    c.batch_execute(
        "CREATE ROLE app LOGIN; GRANT mfa_app TO app;
         CREATE SCHEMA app AUTHORIZATION app;",
    )
    .unwrap();
    let app_url = url.replace("user=postgres", "user=app");
    let mut app = connect_to(&app_url);
    app.batch_execute(
        "CREATE TABLE app.sessions (
             id serial PRIMARY KEY, organization_id text NOT NULL, member_id text NOT NULL,
             intermediate_session_token text, authentication_factors jsonb)",
    )
    .unwrap();
    c.execute("SELECT mfa.session_table_guard('app.sessions')", &[])
        .unwrap();
    let token = start_login(&mut app, ORG, "ann").1;
    let used_code = totp_now(SECRET_ANN);
    let totp = json(
        &mut app,
        "SELECT mfa.totp_authenticate($1, 'ann', $2, $3)",
        &[&ORG, &used_code, &token],
    );
    assert_eq!(totp["status_code"], 200, "{totp}");
    let ann_before = insert_session(&mut app, "ann", &token).unwrap();
    assert_eq!(aal(&mut c, ann_before), "aal2");
    let zed_token = start_login(&mut app, "beta", "zed").1;
    app.execute(
        "INSERT INTO app.sessions (organization_id, member_id, intermediate_session_token)
         VALUES ('beta', 'zed', $1)",
        &[&zed_token],
    )
    .unwrap();
    drop(app);
    let before = table_hashes(&mut c, &["app.sessions"]);
    let events: i64 = before
        .iter()
        .find(|t| t.0 == "mfa.events")
        .map(|t| t.1)
        .unwrap();
    drop(c);
    let filled = started.elapsed();

    let attver_cleared = clear_attribute_versions(&old, &new_bin);
    // pg_upgrade, as an operator runs it: the old server stopped, a new cluster made by the new
    // initdb with the same key file and settings, no server running.
    old.stop_server();
    let new = Cluster::init_with(
        &format!("upgrade-{new_major}"),
        NEW_PORT,
        SETTINGS,
        &new_bin,
        &["-k"],
    );
    new.write_key_file(&keys);
    new.append_settings(&format!("mfa.encryption_key_file = '{}'", new.key_file()));
    let upgrade_started = Instant::now();
    let (old_port, new_port) = (OLD_PORT.to_string(), NEW_PORT.to_string());
    // In a directory of its own: pg_upgrade leaves its delete_old_cluster.sh there.
    let work = "/var/lib/postgresql/mfa-test-upgrade-work";
    let _ = std::process::Command::new("rm")
        .args(["-rf", work])
        .status();
    std::fs::create_dir_all(work).unwrap();
    let _ = std::process::Command::new("chown")
        .args(["postgres:postgres", work])
        .status();
    let out = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--", &format!("{new_bin}/pg_upgrade")])
        .args([
            "-b", OLD_BIN, "-B", &new_bin, "-d", &old.dir, "-D", &new.dir, "-p", &old_port, "-P",
            &new_port, "-U", "postgres",
        ])
        .current_dir(work)
        .output()
        .expect("pg_upgrade");
    let _ = std::process::Command::new("rm")
        .args(["-rf", work])
        .status();
    assert!(
        out.status.success(),
        "pg_upgrade 15 → {new_major}:\n{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        upgrade_logs(&new.dir)
    );
    let upgrade_took = upgrade_started.elapsed();
    new.start_server();
    let url = new.url("mfa_upgrade");
    let mut c = connect_to(&url);
    let server: i32 = server_version_num(&mut c);
    assert_eq!(server / 10000, new_major as i32);

    // Every row is there, unchanged.
    let after = table_hashes(&mut c, &["app.sessions"]);
    assert_eq!(
        before.len(),
        after.len(),
        "tables before {before:?}, after {after:?}"
    );
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a, "{} changed in the upgrade", b.0);
    }

    // The lock holds: the right code is refused unchecked.
    let eve = json(&mut c, "SELECT mfa.member_get($1, 'eve')", &[&ORG]);
    assert_eq!(eve["is_locked"], true, "{eve}");
    let refused = json(
        &mut c,
        "SELECT mfa.totp_authenticate($1, 'eve', $2)",
        &[&ORG, &totp_now(SECRET_EVE)],
    );
    assert_eq!(refused["status_code"], 429, "{refused}");
    assert_eq!(
        refused["error_type"], "user_lock_limit_reached",
        "{refused}"
    );

    // A TOTP login; its session through the gate. Until session_table_guard runs again, the gate
    // refuses (the guard's triggers have new oids), naming the fix.
    let mut app = connect_to(&new.url("mfa_upgrade").replace("user=postgres", "user=app"));
    let token = start_login(&mut app, ORG, "ann").1;
    let totp = json(
        &mut app,
        "SELECT mfa.totp_authenticate($1, 'ann', $2, $3)",
        &[&ORG, &fresh_totp(SECRET_ANN, &used_code), &token],
    );
    assert_eq!(totp["status_code"], 200, "{totp}");
    let before_guard = insert_session(&mut app, "ann", &token).unwrap_err();
    let db = before_guard.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "28000", "{db:?}");
    assert!(
        db.hint()
            .unwrap_or_default()
            .contains("session_table_guard"),
        "the refusal names the fix: {db:?}"
    );
    let check: Option<String> = c
        .query_one("SELECT mfa.session_table_guard_check('app.sessions')", &[])
        .unwrap()
        .get(0);
    println!(
        "major_upgrade: before session_table_guard: INSERT refused ({}); guard check: {check:?}",
        db.message()
    );
    // Fail-closed meanwhile: the guard looks broken (its triggers are not the recorded oids), so
    // every DDL of a non-superuser in the database is refused, on the sessions table or not.
    let mut refused_ddl = Vec::new();
    for ddl in [
        "CREATE INDEX sessions_member ON app.sessions (member_id)",
        "CREATE TABLE app.notes (id int)",
    ] {
        let e = app.batch_execute(ddl).unwrap_err();
        assert_eq!(sql_error(&e).0, "42501", "{ddl}: {e}");
        // The refusal says what happened and the way out.
        assert!(
            sql_error(&e).1.contains("made again under new oids")
                && sql_error(&e).1.contains("session_table_guard"),
            "{ddl}: {e}"
        );
        refused_ddl.push(sql_error(&e).1);
    }
    println!("major_upgrade: the owner's DDL before session_table_guard: {refused_ddl:?}");
    c.execute("SELECT mfa.session_table_guard('app.sessions')", &[])
        .unwrap();
    assert_eq!(
        c.query_one("SELECT mfa.session_table_guard_check('app.sessions')", &[])
            .unwrap()
            .get::<_, Option<String>>(0),
        None
    );
    let ann_after = insert_session(&mut app, "ann", &token).expect("the gate lets the login in");
    assert_eq!(aal(&mut c, ann_after), "aal2");
    assert_eq!(
        aal(&mut c, ann_before),
        "aal2",
        "a session sealed before the upgrade still verifies"
    );
    let replay = insert_session(&mut app, "ann", &token).unwrap_err();
    assert_eq!(
        sql_error(&replay).0,
        "28000",
        "a consumed token works again"
    );

    // The guard still refuses its owner's DDL; harmless DDL passes.
    for ddl in [
        "ALTER TABLE app.sessions DISABLE TRIGGER mfa_session_gate_insert",
        "ALTER TABLE app.sessions DISABLE TRIGGER ALL",
        "DROP TRIGGER mfa_session_gate_insert ON app.sessions",
        "ALTER TABLE app.sessions RENAME COLUMN member_id TO who",
        "DROP TABLE app.sessions",
    ] {
        let e = app.batch_execute(ddl).unwrap_err();
        assert_eq!(sql_error(&e).0, "42501", "{ddl}: {e}");
    }
    app.batch_execute(
        "CREATE INDEX sessions_member ON app.sessions (member_id); CREATE TABLE app.notes (id int)",
    )
    .unwrap();

    // The queued message is handed out with its code, which authenticates bob; the dead one
    // stays dead; a new send goes out and works.
    let claimed = c
        .query(
            "SELECT id, receipt, body FROM mfa.sms_outbox_claim(10, '1 minute', $1)",
            &[&ORG],
        )
        .unwrap();
    assert_eq!(claimed.len(), 1, "only bob's queued message is deliverable");
    let (id, receipt, body): (i64, String, String) =
        (claimed[0].get(0), claimed[0].get(1), claimed[0].get(2));
    assert_ne!(id, dead_id);
    c.query_one(
        "SELECT mfa.sms_outbox_complete($1, $2, 'SM-upgraded')",
        &[&id, &receipt],
    )
    .unwrap();
    let code: String = body
        .split(|ch: char| !ch.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .into();
    let sms = json(
        &mut c,
        "SELECT mfa.otp_sms_authenticate($1, 'bob', $2)",
        &[&ORG, &code],
    );
    assert_eq!(sms["status_code"], 200, "the code queued before: {sms}");
    let dead: String = c
        .query_one(
            "SELECT status FROM mfa.sms_outbox WHERE message_id = $1",
            &[&dead_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(dead, "dead");
    json(&mut c, "SELECT mfa.otp_sms_send($1, 'bob')", &[&ORG]);
    let new_id: i64 = c
        .query_one("SELECT max(message_id) FROM mfa.sms_outbox", &[])
        .unwrap()
        .get(0);
    assert!(new_id > id, "message ids continue after the upgraded ones");
    let code = sms_code(&mut c, ORG);
    let sms = json(
        &mut c,
        "SELECT mfa.otp_sms_authenticate($1, 'bob', $2)",
        &[&ORG, &code],
    );
    assert_eq!(sms["status_code"], 200, "a code sent after: {sms}");

    // The remembered device is honoured and rotates; its rotated-away token is a copy.
    let next = use_device(&mut c, &device).expect("the device is honoured after the upgrade");
    assert_ne!(next, device);
    assert!(use_device(&mut c, &rotated_away).is_none());
    let devices = json(
        &mut c,
        "SELECT mfa.remembered_devices_get($1, 'dee')",
        &[&ORG],
    );
    assert_eq!(
        devices["remembered_devices"],
        serde_json::json!([]),
        "{devices}"
    );

    let events_after: i64 = c
        .query_one("SELECT count(*) FROM mfa.events", &[])
        .unwrap()
        .get(0);
    assert!(events_after > events);
    let _ = attver_cleared;
    println!(
        "major_upgrade: PostgreSQL 15 → {new_major} with pg_upgrade: {} tables, {} rows ({} audit events) equal by count and md5; pg_upgrade took {:.1} s, the whole test {:.1} s (filling {:.1} s)",
        before.len(),
        before.iter().map(|t| t.1).sum::<i64>(),
        events,
        upgrade_took.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        filled.as_secs_f64()
    );
}
