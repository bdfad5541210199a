//! Issue 16: the master key never reaches SQL, and keys rotate without a restart while logins go on.

mod common;

use common::{json, totp_now, Cluster};
use postgres::{Client, NoTls};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn hex_key(byte: u8) -> String {
    format!("{byte:02x}").repeat(32)
}

/// Everything `client` gets back from `sql`: its rows as text, or its error.
fn answer(client: &mut Client, sql: &str) -> String {
    match client.simple_query(sql) {
        Ok(messages) => messages
            .iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or("").to_string())
                        .collect::<Vec<_>>()
                        .join("|"),
                ),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("error: {e} {:?}", e.as_db_error().map(|d| d.message())),
    }
}

#[test]
fn no_sql_path_returns_a_key() {
    let file_key = hex_key(0x5a);
    let setting_key = hex_key(0x6b);
    let refused_key = hex_key(0x7c);
    // A 0.3.0-style deployment: the key in postgresql.conf; and the new one, a key file.
    let cluster = Cluster::start_with_key_file(
        "key-custody",
        28824,
        &format!("mfa.encryption_key = '{setting_key}'\nlog_min_messages = debug1\nlog_statement = 'all'"),
        &format!("# the server's master keys\n{file_key}\n"),
    );
    let url = cluster.create_database("mfa_custody");
    let mut admin = Client::connect(&url, NoTls).unwrap();
    admin
        .batch_execute(
            "CREATE ROLE custody_plain LOGIN;
             CREATE ROLE custody_monitor LOGIN IN ROLE pg_monitor;
             CREATE ROLE custody_app LOGIN IN ROLE mfa_app;
             SELECT mfa.organization_upsert('org-custody');
             SELECT mfa.member_upsert('org-custody', 'ann');",
        )
        .unwrap();
    // The extension works with the file's key, and made no key of its own to travel in dumps.
    let created = json(
        &mut admin,
        "SELECT mfa.totp_create('org-custody', 'ann')",
        &[],
    );
    assert!(created["secret"].is_string(), "{created}");
    let keys = answer(
        &mut admin,
        "SELECT source, encrypts, totp_secrets FROM mfa.encryption_keys()",
    );
    assert_eq!(keys, "server|t|1\nsetting|f|0", "{keys}");
    assert_eq!(
        answer(&mut admin, "SELECT count(*) FROM mfa.database_keys"),
        "0"
    );
    // No new key can go into a setting, and the refusal does not repeat it.
    for statement in [
        format!("SET mfa.encryption_key = '{refused_key}'"),
        format!("ALTER DATABASE mfa_custody SET mfa.encryption_key = '{refused_key}'"),
        format!("ALTER ROLE custody_app SET mfa.encryption_key = '{refused_key}'"),
    ] {
        let refusal = answer(&mut admin, &statement);
        assert!(refusal.starts_with("error:"), "{statement}: {refusal}");
        assert!(!refusal.contains(&refused_key), "{refusal}");
    }
    let probes = [
        "SELECT current_setting('mfa.encryption_key', true)".to_string(),
        "SHOW mfa.encryption_key".to_string(),
        "SELECT string_agg(name || '=' || coalesce(setting, '') || ' ' || coalesce(reset_val, '') || ' ' || coalesce(boot_val, ''), ', ') FROM pg_settings WHERE name LIKE 'mfa.%'".to_string(),
        "SELECT string_agg(array_to_string(setconfig, ','), '; ') FROM pg_db_role_setting".to_string(),
        "SELECT string_agg(name || '=' || coalesce(setting, ''), ', ') FROM pg_file_settings".to_string(),
        format!("SELECT pg_read_file('{}')", cluster.key_file()),
        "SELECT string_agg(encode(key, 'hex'), ',') FROM mfa.database_keys".to_string(),
    ];
    let mut seen = String::new();
    for role in [
        "custody_plain",
        "custody_monitor",
        "custody_app",
        "postgres",
    ] {
        let mut client = Client::connect(
            &cluster
                .url("mfa_custody")
                .replace("user=postgres", &format!("user={role}")),
            NoTls,
        )
        .unwrap();
        for probe in &probes {
            let got = answer(&mut client, probe);
            // A superuser reads the server's files anyway (postgresql.conf included).
            if role != "postgres"
                || !(probe.contains("pg_read_file") || probe.contains("pg_file_settings"))
            {
                assert!(
                    !got.contains(&file_key) && !got.contains(&setting_key),
                    "{role} read a key with {probe}: {got}"
                );
            }
            seen.push_str(&got);
        }
    }
    // The setting shows which key it holds, never the key.
    assert!(
        answer(&mut admin, "SHOW mfa.encryption_key").starts_with("(hidden) key "),
        "{seen}"
    );
    // A dump (with --create: database settings included) holds no key either.
    let dump = std::process::Command::new("pg_dump")
        .args([
            "--create",
            "-h",
            "127.0.0.1",
            "-p",
            "28824",
            "-U",
            "postgres",
            "mfa_custody",
        ])
        .output()
        .unwrap();
    assert!(dump.status.success());
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("totp_registrations"),
        "not a dump of the data"
    );
    for key in [&file_key, &setting_key] {
        assert!(!dump.contains(key.as_str()), "the dump holds a key");
    }
    // Nor does the server log, which saw every statement.
    let log = cluster.log();
    for key in [&file_key, &setting_key] {
        assert!(!log.contains(key.as_str()), "the server log holds a key");
    }
}

#[test]
fn a_key_file_open_to_others_stops_the_server() {
    let cluster = Cluster::init("key-custody-mode", 28825, "");
    cluster.write_key_file(&format!("{}\n", hex_key(1)));
    cluster.append_settings(&format!(
        "mfa.encryption_key_file = '{}'",
        cluster.key_file()
    ));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(cluster.key_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let started = std::process::Command::new("runuser")
        .args([
            "-u",
            "postgres",
            "--",
            &format!("{}/pg_ctl", common::bindir()),
            "-D",
            &cluster.dir,
            "-l",
            &format!("{}/server.log", cluster.dir),
            "-w",
            "-t",
            "20",
            "start",
        ])
        .output()
        .unwrap();
    assert!(
        !started.status.success(),
        "the server started with a world-readable key file"
    );
    let log = cluster.log();
    assert!(log.contains("gives access to other users"), "{log}");
    assert!(!log.contains(&hex_key(1)), "the log shows the key");
}

/// Waits until `encryption_keys()` lists `n` server keys.
fn wait_for_server_keys(client: &mut Client, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let count: i64 = client
            .query_one(
                "SELECT count(*) FROM mfa.encryption_keys() WHERE source = 'server'",
                &[],
            )
            .unwrap()
            .get(0);
        if count == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the key file was not reloaded ({count} keys)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn keys_rotate_under_concurrent_logins_without_a_restart() {
    let (old_key, new_key) = (hex_key(0x11), hex_key(0x22));
    let cluster = Cluster::start_with_key_file("key-rotation", 28826, "", &format!("{old_key}\n"));
    let url = cluster.create_database("mfa_rotation");
    let mut admin = Client::connect(&url, NoTls).unwrap();
    const MEMBERS: usize = 60;
    admin
        .batch_execute("SELECT mfa.organization_upsert('org-rot')")
        .unwrap();
    let secrets: Vec<String> = (0..MEMBERS + 1)
        .map(|i| {
            let secret = data_encoding::BASE32_NOPAD.encode(&[i as u8 + 1; 20]);
            json(
                &mut admin,
                "SELECT mfa.member_upsert('org-rot', $1)",
                &[&format!("m{i}")],
            );
            json(
                &mut admin,
                "SELECT mfa.totp_migrate('org-rot', $1, $2, ARRAY['aaaa-bbbb-cccc'])",
                &[&format!("m{i}"), &secret],
            );
            secret
        })
        .collect();
    // Queued SMS codes are encrypted too.
    admin
        .batch_execute("SELECT mfa.member_upsert('org-rot', 'sam', '+14155552671'); SELECT mfa.otp_sms_send('org-rot', 'sam')")
        .unwrap();
    // A new key is appended and the configuration reloaded: no restart.
    cluster.write_key_file(&format!("{old_key}\n{new_key}\n"));
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for_server_keys(&mut admin, 2);
    // Logins go on while the rotation runs, one member after another.
    let done = Arc::new(AtomicBool::new(false));
    let logins = {
        let (url, secrets, done) = (url.clone(), secrets.clone(), done.clone());
        std::thread::spawn(move || {
            let mut c = Client::connect(&url, NoTls).unwrap();
            let mut results = Vec::new();
            for (i, secret) in secrets.iter().enumerate().take(MEMBERS) {
                let answer: Value = c
                    .query_one(
                        "SELECT mfa.totp_authenticate('org-rot', $1, $2)",
                        &[&format!("m{i}"), &totp_now(secret)],
                    )
                    .unwrap()
                    .get(0);
                results.push(answer["status_code"].as_i64());
                std::thread::sleep(Duration::from_millis(20));
            }
            done.store(true, Ordering::Relaxed);
            results
        })
    };
    let mut batches = 0;
    loop {
        let rotated = json(&mut admin, "SELECT mfa.encryption_key_rotate(5)", &[]);
        batches += 1;
        if rotated["remaining"]["totp_secrets"] == 0
            && rotated["remaining"]["queued_sms_codes"] == 0
        {
            break;
        }
        assert!(batches < 1000, "{rotated}");
    }
    let results = logins.join().unwrap();
    assert!(
        batches > 2,
        "the rotation took {batches} batches: no overlap with the logins"
    );
    assert_eq!(
        results,
        vec![Some(200); MEMBERS],
        "a login failed during the rotation"
    );
    // Nothing is encrypted under the old key any more; its recovery-code hashes remain (they
    // cannot be re-hashed), so it must not leave yet, and still verifies them.
    let usage = |c: &mut Client| {
        answer(
            c,
            "SELECT source, encrypts, totp_secrets, queued_sms_codes, recovery_code_hashes FROM mfa.encryption_keys()",
        )
    };
    assert_eq!(
        usage(&mut admin),
        format!("server|t|{}|1|0\nserver|f|0|0|{}", MEMBERS + 1, MEMBERS + 1)
    );
    let recovered = json(
        &mut admin,
        "SELECT mfa.recovery_codes_recover('org-rot', 'm0', 'aaaa-bbbb-cccc')",
        &[],
    );
    assert_eq!(recovered["status_code"], 200, "{recovered}");
    // The old key leaves the file: the last member's login (never done yet) still works.
    cluster.write_key_file(&format!("{new_key}\n"));
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for_server_keys(&mut admin, 1);
    let last = json(
        &mut admin,
        "SELECT mfa.totp_authenticate('org-rot', $1, $2)",
        &[&format!("m{MEMBERS}"), &totp_now(&secrets[MEMBERS])],
    );
    assert_eq!(last["status_code"], 200, "{last}");
    // What the departed key still covered shows up as missing.
    let after = usage(&mut admin);
    assert!(
        after.contains(&format!("missing|f|0|0|{MEMBERS}")),
        "{after}"
    );
    let events: i64 = admin
        .query_one(
            "SELECT count(*) FROM mfa.events WHERE event_type = 'encryption_key.rotated'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(events >= 1);
}
