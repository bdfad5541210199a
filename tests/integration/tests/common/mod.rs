//! Shared helpers: connections to the test database named by MFA_TEST_DATABASE_URL.
#![allow(dead_code)]

use postgres::{Client, NoTls};
use serde_json::Value;

pub fn connect() -> Client {
    let url = std::env::var("MFA_TEST_DATABASE_URL").expect(
        "MFA_TEST_DATABASE_URL must name a database with the mfa extension (make test sets it)",
    );
    let mut client = Client::connect(&url, NoTls).expect("connect to the test database");
    client
        .batch_execute(
            "SET mfa.sms_min_interval_seconds = 0; SET mfa.sms_sends_per_prefix_per_hour = 100000",
        )
        .unwrap();
    client
}

/// A fresh organization id, so tests running at once never share state.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// A new organization with a unique id (tests running at once never share state).
pub fn new_organization(client: &mut Client, prefix: &str) -> String {
    let org = unique(prefix);
    json(client, "SELECT mfa.organization_upsert($1)", &[&org]);
    org
}

/// A new organization holding one member without factors.
pub fn organization_with_member(client: &mut Client, prefix: &str, member: &str) -> String {
    let org = new_organization(client, prefix);
    json(client, "SELECT mfa.member_upsert($1, $2)", &[&org, &member]);
    org
}

/// Runs a query returning one jsonb value.
pub fn json(
    client: &mut Client,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Value {
    let row = client
        .query_one(sql, params)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.get::<_, Value>(0)
}

pub fn totp_now(secret_b32: &str) -> String {
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret_b32.as_bytes())
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 0, 30, secret).generate(now)
}

/// Runs `f` on `n` threads, each with its own connection, released together.
pub fn race<T: Send + 'static>(
    n: usize,
    f: impl Fn(&mut Client, usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = std::sync::Arc::new(f);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (f, barrier) = (f.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut client = connect();
                barrier.wait();
                f(&mut client, i)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect()
}
