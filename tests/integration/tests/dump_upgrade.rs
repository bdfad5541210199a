//! Dumps, restores and upgrades: `pg_dump` + `pg_restore` into a fresh database keeps every
//! organization, member, enrollment and pending message working; a database created at the
//! first version (0.1.0), filled, then `ALTER EXTENSION mfa UPDATE`d through every upgrade script
//! since keeps working and ends up with exactly the objects of a fresh install.

mod common;
use common::*;
use postgres::{Client, NoTls};

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const RECOVERY: &str = "abcd-efgh-ijkl";

fn port() -> String {
    database_url()
        .split_whitespace()
        .find_map(|p| p.strip_prefix("port=").map(str::to_string))
        .expect("a port in MFA_TEST_DATABASE_URL")
}

fn database_of(url: &str) -> String {
    url.split_whitespace()
        .find_map(|p| p.strip_prefix("dbname=").map(str::to_string))
        .unwrap()
}

/// Runs a PostgreSQL client program against the test cluster.
fn run_pg(program: &str, args: &[&str]) {
    let port = port();
    let out = std::process::Command::new(program)
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Organization `org`: ann with an authenticator (known secret and recovery code), bob with a
/// phone and a pending SMS message, and a login of ann in progress (returned).
fn fill(c: &mut Client, org: &str) -> String {
    json(
        c,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL')",
        &[&org],
    );
    fill_members(c, org);
    start_login(c, org, "ann").1
}

/// `fill`'s members.
fn fill_members(c: &mut Client, org: &str) {
    json(c, "SELECT mfa.member_upsert($1, 'ann')", &[&org]);
    json(
        c,
        "SELECT mfa.totp_migrate($1, 'ann', $2, ARRAY[$3])",
        &[&org, &SECRET, &RECOVERY],
    );
    json(
        c,
        "SELECT mfa.member_upsert($1, 'bob', '+14155550177')",
        &[&org],
    );
}

/// `fill` on the 0.1.0 schema, under the current library: its `organization_upsert`,
/// `member_upsert` and `primary_authenticate` take arguments that 0.1.0's definitions do not pass,
/// so the organization, its members and the login in progress are written as 0.1.0 wrote them.
fn fill_0_1_0(c: &mut Client, org: &str) -> String {
    c.execute(
        "INSERT INTO mfa.organizations (organization_id, mfa_policy) VALUES ($1, 'REQUIRED_FOR_ALL')",
        &[&org],
    )
    .unwrap();
    c.execute(
        "INSERT INTO mfa.members (organization_id, member_id, mfa_phone_number, mfa_phone_country, phone_id)
         VALUES ($1, 'ann', NULL, NULL, NULL), ($1, 'bob', '+14155550177', 'US', gen_random_uuid())",
        &[&org],
    )
    .unwrap();
    json(
        c,
        "SELECT mfa.totp_migrate($1, 'ann', $2, ARRAY[$3])",
        &[&org, &SECRET, &RECOVERY],
    );
    // A token as the versions before 0.10.0 made them: 256 random bits, base64url (43 characters).
    let token = data_encoding::BASE64URL_NOPAD.encode(&rand::random::<[u8; 32]>());
    c.execute(
        "INSERT INTO mfa.intermediate_sessions (organization_id, token_hash, member_id, primary_factor, factors, expires_at)
         VALUES ($1, sha256(convert_to($2, 'UTF8')), 'ann', 'password',
                 jsonb_build_array(jsonb_build_object('type', 'password', 'delivery_method', 'password',
                                                      'last_authenticated_at', now())),
                 now() + interval '10 minutes')",
        &[&org, &token],
    )
    .unwrap();
    token
}

/// Everything `fill` made works: a TOTP login through the session gate, the recovery code, the
/// pending message (claimed with its code, which then authenticates bob), a new send.
fn check_works(c: &mut Client, org: &str, token: &str, code_in_claim: bool) {
    let totp = json(
        c,
        "SELECT mfa.totp_authenticate($1, 'ann', $2, $3)",
        &[&org, &totp_now(SECRET), &token],
    );
    assert_eq!(totp["status_code"], 200, "{totp}");
    let session = json(
        c,
        "SELECT mfa.check_session_policy($1, 'ann', $2)",
        &[&org, &token],
    );
    assert_eq!(session["status_code"], 200, "{session}");
    let recovered = json(
        c,
        "SELECT mfa.recovery_codes_recover($1, 'ann', $2)",
        &[&org, &RECOVERY],
    );
    assert_eq!(recovered["status_code"], 200, "{recovered}");
    if code_in_claim {
        let code = sms_code(c, org);
        let sms = json(
            c,
            "SELECT mfa.otp_sms_authenticate($1, 'bob', $2)",
            &[&org, &code],
        );
        assert_eq!(sms["status_code"], 200, "{sms}");
    }
    let before: i64 = c
        .query_one("SELECT max(message_id) FROM mfa.sms_outbox", &[])
        .unwrap()
        .get(0);
    json(c, "SELECT mfa.otp_sms_send($1, 'bob')", &[&org]);
    let after: i64 = c
        .query_one("SELECT max(message_id) FROM mfa.sms_outbox", &[])
        .unwrap()
        .get(0);
    assert!(
        after > before,
        "message ids continue after the restored ones"
    );
    let code = sms_code(c, org);
    let sms = json(
        c,
        "SELECT mfa.otp_sms_authenticate($1, 'bob', $2)",
        &[&org, &code],
    );
    assert_eq!(sms["status_code"], 200, "{sms}");
}

/// Organization `org` remembers devices: dee (an authenticator app) proves it in a login and has
/// her device remembered, then uses it once. Returns the device's current token and the one it
/// rotated away.
fn remember_a_device(c: &mut Client, org: &str) -> (String, String) {
    json(
        c,
        "SELECT mfa.organization_upsert($1, remember_device_days => 30)",
        &[&org],
    );
    json(c, "SELECT mfa.member_upsert($1, 'dee')", &[&org]);
    json(
        c,
        "SELECT mfa.totp_migrate($1, 'dee', $2, ARRAY[$3])",
        &[&org, &SECRET, &RECOVERY],
    );
    let token = start_login(c, org, "dee").1;
    let recovered = json(
        c,
        "SELECT mfa.recovery_codes_recover($1, 'dee', $2, $3)",
        &[&org, &RECOVERY, &token],
    );
    assert_eq!(recovered["status_code"], 200, "{recovered}");
    let first = json(
        c,
        "SELECT mfa.remembered_device_create($1, 'dee', $2, 'fingerprint')",
        &[&org, &token],
    )["device_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (current, _) = use_device(c, org, &first);
    (current.expect("the device is honoured"), first)
}

/// A login of dee presenting `device_token`: its new token when honoured (then a session is
/// allowed without MFA), and the login's token.
fn use_device(c: &mut Client, org: &str, device_token: &str) -> (Option<String>, String) {
    let login = json(
        c,
        "SELECT mfa.primary_authenticate($1, 'dee', device_token => $2, device_fingerprint => 'fingerprint')",
        &[&org, &device_token],
    );
    let token = token_of(&login);
    if login["mfa_required"].is_null() {
        let session = json(
            c,
            "SELECT mfa.check_session_policy($1, 'dee', $2)",
            &[&org, &token],
        );
        assert_eq!(session["status_code"], 200, "{session}");
    }
    (login["device_token"].as_str().map(String::from), token)
}

/// The remembered device still works, rotates, and its rotated-away token is still known as one.
fn check_device_works(c: &mut Client, org: &str, current: &str, rotated_away: &str) {
    let (next, _) = use_device(c, org, current);
    assert!(next.is_some(), "the device is honoured");
    let (none, _) = use_device(c, org, rotated_away);
    assert!(none.is_none(), "a rotated-away token is not");
    let devices = json(c, "SELECT mfa.remembered_devices_get($1, 'dee')", &[&org]);
    assert_eq!(
        devices["remembered_devices"],
        serde_json::json!([]),
        "{devices}"
    );
}

#[test]
fn dump_and_restore_keep_everything_working() {
    let source = fresh_database("mfa_dump_src");
    let mut c = connect_to(&source);
    let org = unique("dump");
    let token = fill(&mut c, &org);
    let (device, rotated_away) = remember_a_device(&mut c, &org);
    json(&mut c, "SELECT mfa.otp_sms_send($1, 'bob')", &[&org]);
    c.query_one(
        "SELECT mfa.country_code_allowlist_set(ARRAY['US', 'CA', 'GB'])",
        &[],
    )
    .unwrap();
    let events: i64 = c
        .query_one("SELECT count(*) FROM mfa.events", &[])
        .unwrap()
        .get(0);

    let file = format!("/tmp/{}.dump", database_of(&source));
    run_pg("pg_dump", &["-Fc", "-f", &file, &database_of(&source)]);
    let target = unique("mfa_dump_dst").replace('-', "_");
    let mut admin = Client::connect(&database_url(), NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {target}"))
        .unwrap();
    run_pg("pg_restore", &["--exit-on-error", "-d", &target, &file]);
    let _ = std::fs::remove_file(&file);

    let mut r = connect_to(&with_database(&database_url(), &target));
    let restored: i64 = r
        .query_one("SELECT count(*) FROM mfa.events", &[])
        .unwrap()
        .get(0);
    assert_eq!(restored, events, "the audit trail came along");
    let allowlist: Vec<String> = r
        .query_one("SELECT mfa.country_code_allowlist_get()", &[])
        .unwrap()
        .get(0);
    assert_eq!(allowlist, ["CA", "GB", "US"]);
    check_works(&mut r, &org, &token, true);
    check_device_works(&mut r, &org, &device, &rotated_away);
}

/// The extension's objects, described in a way that does not depend on how they came to be.
fn catalog(c: &mut Client) -> Vec<String> {
    c.query(
        "SELECT 'function ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') '
                || pg_get_function_result(p.oid) || ' volatile=' || p.provolatile::text || ' strict=' || p.proisstrict
                || ' definer=' || p.prosecdef || ' config=' || coalesce(p.proconfig::text, '')
                || ' defaults=' || coalesce(pg_get_expr(p.proargdefaults, 0), '')
                || ' acl=' || coalesce((SELECT string_agg(a.grantee::regrole || ':' || a.privilege_type, ',' ORDER BY 1)
                                          FROM aclexplode(p.proacl) a), '')
                || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '')
                || ' body=' || md5(p.prosrc)
           FROM pg_proc p WHERE p.pronamespace = 'mfa'::regnamespace
         UNION ALL
         SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
                || ' identity=' || a.attidentity::text
           FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
          WHERE c.relnamespace = 'mfa'::regnamespace AND c.relkind = 'r'
         UNION ALL
         SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' acl=' || coalesce(c.relacl::text, '')
                || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '')
           FROM pg_class c WHERE c.relnamespace = 'mfa'::regnamespace
         UNION ALL
         SELECT 'index ' || regexp_replace(pg_get_indexdef(i.indexrelid), 'ON mfa\\.', 'ON ')
           FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'mfa'::regnamespace
         UNION ALL
         SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' comment=' || coalesce(obj_description(t.oid, 'pg_trigger'), '')
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
          WHERE c.relnamespace = 'mfa'::regnamespace AND NOT t.tgisinternal
         UNION ALL
         SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
           FROM pg_constraint WHERE connamespace = 'mfa'::regnamespace
         UNION ALL
         SELECT 'member ' || pg_describe_object(classid, objid, objsubid)
           FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
            AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'mfa')
         UNION ALL
         SELECT 'config ' || unnest(extconfig)::regclass::text FROM pg_extension WHERE extname = 'mfa'
         ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn upgrade_from_the_previous_version_keeps_everything_working() {
    let name = unique("mfa_upgrade").replace('-', "_");
    let mut admin = Client::connect(&database_url(), NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let url = with_database(&database_url(), &name);
    let mut c = connect_to(&url);
    c.batch_execute("SET client_min_messages = error; CREATE EXTENSION mfa VERSION '0.1.0'")
        .unwrap();
    let org = unique("upgrade");
    // The library installed is the new one, and it reads members' lock state from a table 0.1.0
    // did not have: a stand-in while `fill` runs, dropped before the upgrade creates the real one.
    // So is the organizations' remember_device_days (0.8.0), and the members' count of passkeys
    // (0.10.0).
    c.batch_execute(
        "CREATE TABLE mfa.member_lockouts (organization_id text, member_id text,
             failed_attempts integer, failure_window_started_at timestamptz, lock_created_at timestamptz,
             lock_expires_at timestamptz, lock_count integer);
         ALTER TABLE mfa.organizations ADD COLUMN remember_device_days integer NOT NULL DEFAULT 0;
         ALTER TABLE mfa.members ADD COLUMN webauthn_registrations integer NOT NULL DEFAULT 0",
    )
    .unwrap();
    let token = fill_0_1_0(&mut c, &org);
    c.batch_execute(
        "DROP TABLE mfa.member_lockouts; ALTER TABLE mfa.organizations DROP COLUMN remember_device_days;
         ALTER TABLE mfa.members DROP COLUMN webauthn_registrations",
    )
    .unwrap();
    // A member 0.1.0 had locked (in its mfa.members columns): still locked after the upgrade.
    c.execute(
        "INSERT INTO mfa.members (organization_id, member_id, failed_attempts, lock_created_at, lock_expires_at)
         VALUES ($1, 'cy', 10, now(), now() + interval '1 hour')",
        &[&org],
    )
    .unwrap();
    // A message queued by 0.1.0 (its code in clear in the body, as 0.1.0 stored it).
    c.batch_execute(&format!(
        "INSERT INTO mfa.sms_codes (organization_id, member_id, code_hash, phone_number, expires_at)
         VALUES ('{org}', 'bob', '\\x00', '+14155550177', now() + interval '2 minutes');
         INSERT INTO mfa.sms_outbox (organization_id, member_id, phone_number, country_code, rate_limit_prefix,
                                     locale, body, expires_at)
         VALUES ('{org}', 'bob', '+14155550177', 'US', '+1415555', 'en',
                 'Your verification code is 424242. It expires in 2 minutes. Do not share it.',
                 now() + interval '2 minutes')"
    ))
    .unwrap();

    c.batch_execute("ALTER EXTENSION mfa UPDATE").unwrap();
    let (version, default): (String, String) = c
        .query_one(
            "SELECT e.extversion, a.default_version FROM pg_extension e
               JOIN pg_available_extensions a ON a.name = e.extname WHERE e.extname = 'mfa'",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(version, default);
    assert_ne!(version, "0.1.0");
    // The legacy message is handed out as it was and erased once sent.
    let claimed = c
        .query_one(
            "SELECT body, id, receipt FROM mfa.sms_outbox_claim(10, '1 minute', $1)",
            &[&org],
        )
        .unwrap();
    let legacy: String = claimed.get(0);
    assert!(legacy.contains("424242"), "{legacy}");
    let (id, receipt): (i64, String) = (claimed.get(1), claimed.get(2));
    c.query_one("SELECT mfa.sms_outbox_complete($1, $2)", &[&id, &receipt])
        .unwrap();
    let scrubbed: String = c
        .query_one(
            "SELECT body FROM mfa.sms_outbox WHERE organization_id = $1",
            &[&org],
        )
        .unwrap()
        .get(0);
    assert!(!scrubbed.contains("424242"), "{scrubbed}");
    check_works(&mut c, &org, &token, false);
    let cy = json(&mut c, "SELECT mfa.member_get($1, 'cy')", &[&org]);
    assert_eq!(cy["is_locked"], true, "{cy}");
    let (device, rotated_away) = remember_a_device(&mut c, &org);
    check_device_works(&mut c, &org, &device, &rotated_away);

    let fresh = fresh_database("mfa_fresh");
    let upgraded = catalog(&mut c);
    let installed = catalog(&mut connect_to(&fresh));
    let only_upgraded: Vec<_> = upgraded.iter().filter(|l| !installed.contains(l)).collect();
    let only_installed: Vec<_> = installed.iter().filter(|l| !upgraded.contains(l)).collect();
    assert!(
        only_upgraded.is_empty() && only_installed.is_empty(),
        "the upgraded schema differs from a fresh install:\n only after the upgrade: {only_upgraded:#?}\n only in a fresh install: {only_installed:#?}"
    );
}
