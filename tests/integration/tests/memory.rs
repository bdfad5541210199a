//! A million calls in one backend leave its memory flat: the backend's anonymous resident memory
//! (palloc'd and Rust heap alike; shared buffers are not anonymous) and its memory contexts are
//! measured after a warm-up and at the end.

mod common;
use common::*;
use postgres::Client;

fn rss_anon_kb(pid: i32) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the backend runs on this machine")
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("RssAnon in /proc/<pid>/status")
}

fn context_bytes(c: &mut Client) -> i64 {
    c.query_one(
        "SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts",
        &[],
    )
    .unwrap()
    .get(0)
}

/// `calls` calls of `what`, in statements of 10,000 (1,000 for the failed TOTP attempts, which
/// lock the member: it is unlocked between statements).
fn call(c: &mut Client, org: &str, calls: usize, what: &str) {
    let (sql, batch) = match what {
        "totp_verify" => (
            "SELECT count(*) FILTER (WHERE mfa.totp_verify('JBSWY3DPEHPK3PXP', '123456'))
               FROM generate_series(1, $2) WHERE $1::text IS NOT NULL",
            10_000,
        ),
        "member_get" => (
            "SELECT count(mfa.member_get($1, 'ann')) FROM generate_series(1, $2)",
            10_000,
        ),
        "totp_authenticate" => (
            "SELECT count(mfa.totp_authenticate($1, 'ann', '000000')) FROM generate_series(1, $2)",
            1_000,
        ),
        _ => unreachable!(),
    };
    let mut done = 0;
    while done < calls {
        let n = (calls - done).min(batch) as i32;
        c.query_one(sql, &[&org, &n]).unwrap();
        if what == "totp_authenticate" {
            c.query_one("SELECT mfa.member_unlock($1, 'ann')", &[&org])
                .unwrap();
        }
        done += n as usize;
    }
}

#[test]
fn a_million_calls_leave_memory_flat() {
    let mut c = connect();
    let org = organization_with_member(&mut c, "memory", "ann");
    json(&mut c, "SELECT mfa.totp_create($1, 'ann')", &[&org]);
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    // (calls, function): 1,000,000 calls in all, the SPI-heavy ones included.
    let plan = [
        (700_000, "totp_verify"),
        (270_000, "member_get"),
        (30_000, "totp_authenticate"),
    ];
    // On a cluster whose coordinator does not hold the organization, attempts in an expression
    // are not delegated: refused (no attempt counted on the coordinator), and left out.
    let plan: Vec<_> = if organization_elsewhere(&mut c, &org) {
        let e = c
            .query_one(
                "SELECT count(mfa.totp_authenticate($1, 'ann', '000000')) FROM generate_series(1, 2)",
                &[&org],
            )
            .unwrap_err();
        assert_not_on_this_node(&e);
        plan.into_iter()
            .filter(|(_, what)| *what != "totp_authenticate")
            .collect()
    } else {
        plan.to_vec()
    };
    // Warm-up: a tenth of each, then the baseline.
    for &(n, what) in &plan {
        call(&mut c, &org, n / 10, what);
    }
    let (rss_before, contexts_before) = (rss_anon_kb(pid), context_bytes(&mut c));
    for &(n, what) in &plan {
        call(&mut c, &org, n, what);
    }
    let (rss_after, contexts_after) = (rss_anon_kb(pid), context_bytes(&mut c));
    println!(
        "memory: 1,000,000 calls (700,000 totp_verify, 270,000 member_get, 30,000 totp_authenticate) in backend {pid}: \
         RssAnon {rss_before} kB → {rss_after} kB, memory contexts {contexts_before} B → {contexts_after} B"
    );
    assert!(
        rss_after - rss_before < 4096,
        "anonymous memory grew by {} kB",
        rss_after - rss_before
    );
    assert!(
        contexts_after - contexts_before < 1 << 20,
        "memory contexts grew by {} B",
        contexts_after - contexts_before
    );
}
