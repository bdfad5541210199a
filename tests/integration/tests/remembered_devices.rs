//! Remembered devices against the application's own role (`mfa_app`, owner of its guarded sessions
//! table), with real concurrent connections: one device token presented at once gives at most one
//! remembered login; a rotated token presented again revokes every device of its member, even when
//! the caller rolls its transaction back; a device token of another member or organization, or a
//! login that only presented a device, never gets past MFA.

mod common;
use common::*;
use postgres::{Client, NoTls};
use serde_json::Value;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const SECRET: &str = "JBSWY3DPEHPK3PXP";
const RACERS: usize = 8;

/// An organization that remembers devices for 30 days, with member `ann` (an authenticator app and
/// `codes` recovery codes), and an application role that owns the guarded `sessions` table.
struct Tenant {
    org: String,
    role: String,
    table: String,
    codes: Vec<String>,
}

fn tenant(prefix: &str, codes: usize) -> Tenant {
    let mut c = connect();
    let org = unique(prefix);
    json(
        &mut c,
        "SELECT mfa.organization_upsert($1, 'REQUIRED_FOR_ALL', remember_device_days => 30)",
        &[&org],
    );
    json(&mut c, "SELECT mfa.member_upsert($1, 'ann')", &[&org]);
    let codes: Vec<String> = (0..codes).map(|i| format!("{i:04}-rdev-code")).collect();
    json(
        &mut c,
        "SELECT mfa.totp_migrate($1, 'ann', $2, $3)",
        &[&org, &SECRET, &codes],
    );
    let role = unique(&format!("{prefix}_app")).replace('-', "_");
    c.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN; GRANT mfa_app TO {role};
         CREATE SCHEMA {role} AUTHORIZATION {role};
         SET ROLE {role};
         CREATE TABLE {role}.sessions (id serial PRIMARY KEY, organization_id text NOT NULL,
             member_id text NOT NULL, intermediate_session_token text, authentication_factors jsonb);
         RESET ROLE;
         SELECT mfa.session_table_guard('{role}.sessions');"
    ))
    .unwrap();
    Tenant {
        table: format!("{role}.sessions"),
        org,
        role,
        codes,
    }
}

impl Tenant {
    fn app(&self) -> Client {
        Client::connect(&database_url_as(&self.role), NoTls).expect("connect as the app role")
    }

    /// A login of ann with recovery code `code`, whose device is then remembered: its token.
    fn remember(&self, app: &mut Client, code: usize) -> String {
        let (_, token) = start_login(app, &self.org, "ann");
        let recovered = json(
            app,
            "SELECT mfa.recovery_codes_recover($1, 'ann', $2, $3)",
            &[&self.org, &self.codes[code], &token],
        );
        assert_eq!(recovered["status_code"], 200, "{recovered}");
        let device = json(
            app,
            "SELECT mfa.remembered_device_create($1, 'ann', $2)",
            &[&self.org, &token],
        );
        device["device_token"].as_str().unwrap().to_string()
    }

    fn devices(&self, c: &mut Client) -> usize {
        json(
            c,
            "SELECT mfa.remembered_devices_get($1, 'ann')",
            &[&self.org],
        )["remembered_devices"]
            .as_array()
            .unwrap()
            .len()
    }

    fn sessions(&self, c: &mut Client) -> i64 {
        c.query_one(&format!("SELECT count(*) FROM {}", self.table), &[])
            .unwrap()
            .get(0)
    }
}

/// A login presenting `device_token`; its session is inserted when no MFA was asked. The answer.
fn remembered_login(app: &mut Client, t: &Tenant, device_token: &str) -> Value {
    let login = json(
        app,
        "SELECT mfa.primary_authenticate($1, 'ann', device_token => $2)",
        &[&t.org, &device_token],
    );
    if login["mfa_required"].is_null() {
        app.execute(
            &format!(
                "INSERT INTO {} (organization_id, member_id, intermediate_session_token) VALUES ($1, 'ann', $2)",
                t.table
            ),
            &[&t.org, &token_of(&login)],
        )
        .expect("the gate accepts a remembered login");
    }
    login
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn one_device_token_presented_at_once_gives_one_remembered_login() {
    let t = Arc::new(tenant("rdev-race", 1));
    let mut c = connect();
    let device_token = t.remember(&mut t.app(), 0);
    let barrier = Arc::new(Barrier::new(RACERS));
    let handles: Vec<_> = (0..RACERS)
        .map(|_| {
            let (t, barrier, device_token) = (t.clone(), barrier.clone(), device_token.clone());
            std::thread::spawn(move || {
                let mut app = t.app();
                let mut tx = app.transaction().unwrap();
                barrier.wait();
                let login: Value = tx
                    .query_one(
                        "SELECT mfa.primary_authenticate($1, 'ann', device_token => $2)",
                        &[&t.org, &device_token],
                    )
                    .unwrap()
                    .get(0);
                if login["mfa_required"].is_null() {
                    tx.execute(
                        &format!(
                            "INSERT INTO {} (organization_id, member_id, intermediate_session_token) VALUES ($1, 'ann', $2)",
                            t.table
                        ),
                        &[&t.org, &token_of(&login)],
                    )
                    .unwrap();
                }
                tx.commit().unwrap();
                login
            })
        })
        .collect();
    let logins: Vec<Value> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let remembered: Vec<&Value> = logins
        .iter()
        .filter(|l| l["mfa_required"].is_null())
        .collect();
    assert_eq!(remembered.len(), 1, "{logins:#?}");
    assert_eq!(t.sessions(&mut c), 1);
    // The others presented a token the winner had rotated away: a copy, so every device went,
    // the winner's new token included.
    assert_eq!(t.devices(&mut c), 0);
    let winner_token = remembered[0]["device_token"].as_str().unwrap();
    let again = remembered_login(&mut t.app(), &t, winner_token);
    assert!(!again["mfa_required"].is_null(), "{again}");
    assert_eq!(t.sessions(&mut c), 1);
}

#[test]
fn a_rotated_token_presented_again_revokes_every_device_even_when_rolled_back() {
    let t = tenant("rdev-theft", 2);
    let mut c = connect();
    let mut app = t.app();
    let laptop = t.remember(&mut app, 0);
    let phone = t.remember(&mut app, 1);
    let used = remembered_login(&mut app, &t, &laptop);
    assert!(used["mfa_required"].is_null(), "{used}");
    assert_eq!(t.devices(&mut c), 2);

    // The copied cookie, presented inside a transaction that is rolled back: the revocation in
    // it is undone, the one the attempt ledger's worker makes is not.
    let mut tx = app.transaction().unwrap();
    let stolen: Value = tx
        .query_one(
            "SELECT mfa.primary_authenticate($1, 'ann', device_token => $2)",
            &[&t.org, &laptop],
        )
        .unwrap()
        .get(0);
    assert!(!stolen["mfa_required"].is_null(), "{stolen}");
    assert!(stolen.get("device_token").is_none(), "{stolen}");
    // The worker writes the theft while this transaction still holds the devices' rows (its own
    // revocation deleted them): it cannot delete them, and the rollback brings them back.
    let suspected = |c: &mut Client| -> i64 {
        c.query_one(
            "SELECT count(*) FROM mfa.events WHERE organization_id = $1 AND member_id = 'ann'
                AND event_type = 'remembered_device.theft_suspected'",
            &[&t.org],
        )
        .unwrap()
        .get(0)
    };
    wait_for("the worker's theft event", || suspected(&mut c) == 1);
    tx.rollback().unwrap();
    wait_for("the worker's revocation", || t.devices(&mut c) == 0);
    assert_eq!(suspected(&mut c), 1);
    // Neither the rotated laptop token nor the phone's works any more.
    for token in [used["device_token"].as_str().unwrap(), phone.as_str()] {
        let login = remembered_login(&mut app, &t, token);
        assert!(!login["mfa_required"].is_null(), "{login}");
    }
    assert_eq!(t.sessions(&mut c), 1);
}

#[test]
fn a_device_never_passes_for_another_member_or_organization_nor_mints_devices() {
    let t = tenant("rdev-tenancy", 2);
    let other = tenant("rdev-other", 0);
    let mut c = connect();
    json(&mut c, "SELECT mfa.member_upsert($1, 'bob')", &[&t.org]);
    json(
        &mut c,
        "SELECT mfa.totp_migrate($1, 'bob', $2)",
        &[&t.org, &SECRET],
    );
    let mut app = t.app();
    let device = t.remember(&mut app, 0);
    // Ann's token for bob, and in another organization (which has its own ann): ignored.
    let as_bob = json(
        &mut app,
        "SELECT mfa.primary_authenticate($1, 'bob', device_token => $2)",
        &[&t.org, &device],
    );
    assert!(!as_bob["mfa_required"].is_null(), "{as_bob}");
    let elsewhere = json(
        &mut other.app(),
        "SELECT mfa.primary_authenticate($1, 'ann', device_token => $2)",
        &[&other.org, &device],
    );
    assert!(!elsewhere["mfa_required"].is_null(), "{elsewhere}");
    // Neither was a use: the token still works for ann, once.
    let login = remembered_login(&mut app, &t, &device);
    assert!(login["mfa_required"].is_null(), "{login}");
    // A login that only presented a device cannot remember another, nor step a session up.
    let (_, token) = {
        let l = json(
            &mut app,
            "SELECT mfa.primary_authenticate($1, 'ann', device_token => $2)",
            &[&t.org, &login["device_token"].as_str().unwrap()],
        );
        assert!(l["mfa_required"].is_null(), "{l}");
        (l.clone(), token_of(&l))
    };
    let minted = app.query_one(
        "SELECT mfa.remembered_device_create($1, 'ann', $2)",
        &[&t.org, &token],
    );
    assert_eq!(sql_error(&minted.unwrap_err()).0, "28000");
    let stepped = app.execute(
        &format!(
            "UPDATE {} SET intermediate_session_token = $2 WHERE organization_id = $1",
            t.table
        ),
        &[&t.org, &token],
    );
    assert_eq!(sql_error(&stepped.unwrap_err()).0, "28000");
    // Bob's login token, presented for ann: refused.
    let (_, bob_token) = start_login(&mut app, &t.org, "bob");
    let wrong = app.query_one(
        "SELECT mfa.remembered_device_create($1, 'ann', $2)",
        &[&t.org, &bob_token],
    );
    assert_eq!(sql_error(&wrong.unwrap_err()).0, "P0002");
    // In an organization that does not remember devices: 42501.
    let mut plain = connect();
    let off = organization_with_member(&mut plain, "rdev-off", "ann");
    let (_, off_token) = start_login(&mut plain, &off, "ann");
    let refused = plain.query_one(
        "SELECT mfa.remembered_device_create($1, 'ann', $2)",
        &[&off, &off_token],
    );
    assert_eq!(sql_error(&refused.unwrap_err()).0, "42501");
}

#[test]
fn a_lock_revokes_the_members_devices() {
    let t = tenant("rdev-lock", 1);
    let mut c = connect();
    let mut app = t.app();
    let device = t.remember(&mut app, 0);
    // A login presenting the device, left open while the member is locked: it holds the device's
    // row (rotated), so the worker cannot delete it when it writes the lock.
    let mut holder = t.app();
    let mut held = holder.transaction().unwrap();
    let rotated: Value = held
        .query_one(
            "SELECT mfa.primary_authenticate($1, 'ann', device_token => $2)",
            &[&t.org, &device],
        )
        .unwrap()
        .get(0);
    let device = rotated["device_token"]
        .as_str()
        .expect("rotated")
        .to_string();
    // Wrong codes until the member is locked (mfa.lock_threshold, 10 by default), slowly enough
    // for mfa.member_checks_per_second.
    let (_, token) = start_login(&mut app, &t.org, "ann");
    wait_for("the lock", || {
        std::thread::sleep(Duration::from_millis(250));
        let failed = json(
            &mut app,
            "SELECT mfa.totp_authenticate($1, 'ann', '000000', $2)",
            &[&t.org, &token],
        );
        failed["error_type"] == "user_lock_limit_reached"
    });
    let member = json(&mut c, "SELECT mfa.member_get($1, 'ann')", &[&t.org]);
    assert_eq!(member["is_locked"], true, "{member}");
    wait_for("the lock's row", || {
        c.query_one(
            "SELECT count(*) FROM mfa.member_lockouts WHERE organization_id = $1 AND lock_expires_at > now()",
            &[&t.org],
        )
        .unwrap()
        .get::<_, i64>(0)
            == 1
    });
    held.commit().unwrap();
    // Not honoured while locked, and revoked by the ledger's worker when it writes the lock.
    let login = json(
        &mut app,
        "SELECT mfa.primary_authenticate($1, 'ann', device_token => $2)",
        &[&t.org, &device],
    );
    assert!(!login["mfa_required"].is_null(), "{login}");
    wait_for("the lock's revocation", || t.devices(&mut c) == 0);
    json(&mut c, "SELECT mfa.member_unlock($1, 'ann')", &[&t.org]);
    let login = json(
        &mut app,
        "SELECT mfa.primary_authenticate($1, 'ann', device_token => $2)",
        &[&t.org, &device],
    );
    assert!(!login["mfa_required"].is_null(), "{login}");
}

/// A remembered device that is no longer honoured when the session is created (revoked between
/// the login and the INSERT) gives the session no assurance, even where the organization's policy
/// lets the member in without MFA: the gate does not seal a factor it did not count.
#[test]
fn a_device_revoked_before_the_session_gives_it_no_assurance() {
    let t = tenant("stale-device", 1);
    let mut app = t.app();
    let device = t.remember(&mut app, 0);
    let mut su = connect();
    json(
        &mut su,
        "SELECT mfa.organization_upsert($1, 'OPTIONAL')",
        &[&t.org],
    );
    su.execute(
        "UPDATE mfa.members SET mfa_enrolled = false WHERE organization_id = $1",
        &[&t.org],
    )
    .unwrap();
    let login = json(
        &mut app,
        "SELECT mfa.primary_authenticate($1, 'ann', device_token => $2)",
        &[&t.org, &device],
    );
    let token = token_of(&login);
    su.execute(
        "DELETE FROM mfa.remembered_devices WHERE organization_id = $1",
        &[&t.org],
    )
    .unwrap();
    let row = app
        .query_one(
            &format!(
                "INSERT INTO {} (organization_id, member_id, intermediate_session_token) VALUES ($1, 'ann', $2)
                 RETURNING jsonb_path_query_array(authentication_factors, '$[*].type'),
                           mfa.session_aal(organization_id, member_id, authentication_factors)",
                t.table
            ),
            &[&t.org, &token],
        )
        .unwrap();
    let (types, aal): (Value, String) = (row.get(0), row.get(1));
    assert_eq!(types, serde_json::json!(["password"]), "{login}");
    assert_eq!(aal, "aal1");
}
