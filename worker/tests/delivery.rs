//! The worker against the extension on a local cluster and a fake provider on loopback.
//! Needs MFA_WORKER_TEST_DATABASE_URL (a database of its own: every test drains the whole outbox)
//! and, for the restart test, MFA_TEST_PGDATA; `make test` sets both. Run with one test thread.

mod common;

use postgres::{Client, NoTls};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn database_url() -> String {
    std::env::var("MFA_WORKER_TEST_DATABASE_URL")
        .expect("MFA_WORKER_TEST_DATABASE_URL (make test sets it)")
}

fn db() -> Client {
    let mut c = Client::connect(&database_url(), NoTls).expect("connect");
    c.batch_execute(
        "SET mfa.sms_min_interval_seconds = 0; SET mfa.sms_sends_per_prefix_per_hour = 100000;
         SET mfa.sms_sends_per_member_per_hour = 1000",
    )
    .unwrap();
    c
}

/// An empty outbox and `n` fresh messages; returns their ids.
fn queue_messages(c: &mut Client, n: usize) -> Vec<i64> {
    c.batch_execute("DELETE FROM mfa.sms_outbox; DELETE FROM mfa.organizations WHERE organization_id = 'worker-test';
                     SELECT mfa.organization_upsert('worker-test')")
        .unwrap();
    for i in 0..n {
        let member = format!("m{i}");
        let phone = format!("+1415555{:04}", 2000 + i);
        c.query_one("SELECT mfa.member_upsert('worker-test', $1)", &[&member])
            .unwrap();
        c.query_one(
            "SELECT mfa.otp_sms_send('worker-test', $1, $2)",
            &[&member, &phone],
        )
        .unwrap();
    }
    let rows = c
        .query(
            "SELECT message_id FROM mfa.sms_outbox ORDER BY message_id",
            &[],
        )
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

fn statuses(c: &mut Client) -> Vec<(i64, String, i32, Option<String>)> {
    c.query("SELECT message_id, status, attempts, provider_message_id FROM mfa.sms_outbox ORDER BY message_id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A provider on loopback: answers each request with the next scripted (delay, status, body), or
/// 201 with a fresh id when the script is empty, and records every request.
struct FakeProvider {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeProvider {
    fn start(script: Vec<(Duration, u16, &'static str)>) -> FakeProvider {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter().collect::<VecDeque<_>>()));
        let recorded = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (recorded, script) = (recorded.clone(), script.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut headers = Vec::new();
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.push((k.trim().to_string(), v.trim().to_string()));
                        }
                    }
                    let length: usize = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let n = {
                        let mut all = recorded.lock().unwrap();
                        all.push(Request {
                            path,
                            headers,
                            body: String::from_utf8_lossy(&body).into_owned(),
                        });
                        all.len()
                    };
                    let next = script.lock().unwrap().pop_front();
                    let (delay, status, reply) = match next {
                        Some((d, s, b)) => (d, s, b.to_string()),
                        None => (
                            Duration::ZERO,
                            201,
                            format!(r#"{{"sid": "SM{n:04}", "id": "WH{n:04}"}}"#),
                        ),
                    };
                    std::thread::sleep(delay);
                    // A scripted redirect's body is where it points.
                    let location = if (300..400).contains(&status) {
                        format!("Location: {reply}\r\n")
                    } else {
                        String::new()
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\n{location}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                        reply.len()
                    );
                });
            }
        });
        FakeProvider { url, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

struct Worker(Child);

impl Worker {
    fn start(provider_args: &[&str], extra: &[&str]) -> Worker {
        Worker::spawn(provider_args, extra, "warn", std::process::Stdio::inherit())
    }

    /// A worker whose logs (at `level`) go to `stderr`.
    fn spawn(
        provider_args: &[&str],
        extra: &[&str],
        level: &str,
        stderr: std::process::Stdio,
    ) -> Worker {
        // Polls every second unless the test says otherwise.
        let poll: &[&str] = if extra.contains(&"--poll-interval") {
            &[]
        } else {
            &["--poll-interval", "1"]
        };
        let child = Command::new(env!("CARGO_BIN_EXE_mfa-sms-worker"))
            .args(["--database-url", &database_url()])
            .args(poll)
            .args(provider_args)
            .args(extra)
            .env("MFA_SMS_LOG", level)
            .stderr(stderr)
            .spawn()
            .expect("the worker starts");
        Worker(child)
    }

    fn twilio(url: &str, extra: &[&str]) -> Worker {
        Worker::start(
            &[
                "--provider",
                "twilio",
                "--twilio-base-url",
                url,
                "--twilio-account-sid",
                "AC123",
                "--twilio-auth-token",
                "tok3n",
                "--twilio-from",
                "+15005550006",
            ],
            extra,
        )
    }

    fn webhook(url: &str, extra: &[&str]) -> Worker {
        let hook = format!("{url}/sms");
        Worker::start(
            &[
                "--provider",
                "webhook",
                "--webhook-url",
                &hook,
                "--webhook-secret",
                "whsec",
                // The fake provider speaks plain HTTP on loopback.
                "--allow-insecure-webhook",
            ],
            extra,
        )
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the worker did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn all_sent(c: &mut Client) -> bool {
    statuses(c).iter().all(|s| s.1 == "sent")
}

#[test]
fn twilio_messages_are_delivered_with_body_and_auth() {
    let mut c = db();
    let ids = queue_messages(&mut c, 3);
    let fake = FakeProvider::start(vec![]);
    let worker = Worker::twilio(&fake.url, &[]);
    wait_until("all messages sent", Duration::from_secs(20), || {
        all_sent(&mut c)
    });
    assert!(worker.stop().success(), "graceful shutdown exits 0");
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert_eq!(r.path, "/2010-04-01/Accounts/AC123/Messages.json");
        // Basic base64("AC123:tok3n")
        assert_eq!(r.header("authorization"), Some("Basic QUMxMjM6dG9rM24="));
        assert!(r.body.contains("To=%2B1415555"), "{}", r.body);
        assert!(r.body.contains("From=%2B15005550006"), "{}", r.body);
        assert!(
            r.body.contains("Body=Your+verification+code+is+"),
            "{}",
            r.body
        );
    }
    let done = statuses(&mut c);
    assert_eq!(done.iter().map(|s| s.0).collect::<Vec<_>>(), ids);
    assert!(done
        .iter()
        .all(|s| s.3.as_deref().is_some_and(|id| id.starts_with("SM"))));
    let scrubbed: i64 = c
        .query_one(
            "SELECT count(*) FROM mfa.sms_outbox WHERE body ~ '[0-9]{6}'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(scrubbed, 0);
}

#[test]
fn transient_errors_retry_and_permanent_ones_fail_at_once() {
    let mut c = db();
    queue_messages(&mut c, 2);
    // First request: 503 (retried after the back-off); second: an invalid number (dead at once).
    let fake = FakeProvider::start(vec![
        (
            Duration::ZERO,
            503,
            r#"{"code": 20500, "message": "Internal Server Error"}"#,
        ),
        (
            Duration::ZERO,
            400,
            r#"{"code": 21211, "message": "Invalid 'To' Phone Number"}"#,
        ),
    ]);
    let _worker = Worker::twilio(&fake.url, &["--concurrency", "1", "--batch-size", "1"]);
    wait_until("one sent, one dead", Duration::from_secs(30), || {
        let s = statuses(&mut c);
        s.iter().any(|m| m.1 == "sent") && s.iter().any(|m| m.1 == "dead")
    });
    let s = statuses(&mut c);
    let sent = s.iter().find(|m| m.1 == "sent").unwrap();
    let dead = s.iter().find(|m| m.1 == "dead").unwrap();
    assert_eq!(sent.2, 2, "the 503 was retried once");
    assert_eq!(dead.2, 1, "the invalid number was not retried");
    let last_error: String = c
        .query_one(
            "SELECT last_error FROM mfa.sms_outbox WHERE status = 'dead'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(last_error.contains("21211"), "{last_error}");
}

#[test]
fn rate_limited_requests_are_retried() {
    let mut c = db();
    queue_messages(&mut c, 1);
    let fake = FakeProvider::start(vec![(
        Duration::ZERO,
        429,
        r#"{"code": 20429, "message": "Too Many Requests"}"#,
    )]);
    let _worker = Worker::webhook(&fake.url, &[]);
    wait_until("sent after a 429", Duration::from_secs(30), || {
        all_sent(&mut c)
    });
    assert_eq!(fake.requests().len(), 2);
}

#[test]
fn webhook_posts_are_signed() {
    let mut c = db();
    let ids = queue_messages(&mut c, 1);
    let fake = FakeProvider::start(vec![]);
    let _worker = Worker::webhook(&fake.url, &[]);
    wait_until("sent", Duration::from_secs(20), || all_sent(&mut c));
    let r = &fake.requests()[0];
    assert_eq!(r.path, "/sms");
    let timestamp: u64 = r.header("x-mfa-timestamp").unwrap().parse().unwrap();
    let expected =
        mfa_sms_worker::provider::webhook_signature("whsec", timestamp, r.body.as_bytes());
    assert_eq!(r.header("x-mfa-signature"), Some(expected.as_str()));
    let payload: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(payload["id"], ids[0]);
    assert_eq!(payload["country_code"], "US");
    assert!(payload["body"]
        .as_str()
        .unwrap()
        .starts_with("Your verification code is "));
    assert_eq!(statuses(&mut c)[0].3.as_deref(), Some("WH0001"));
}

#[test]
fn two_workers_never_send_the_same_message() {
    let mut c = db();
    let ids = queue_messages(&mut c, 40);
    let fake = FakeProvider::start(vec![]);
    let a = Worker::webhook(&fake.url, &["--batch-size", "3", "--concurrency", "2"]);
    let b = Worker::webhook(&fake.url, &["--batch-size", "3", "--concurrency", "2"]);
    wait_until("all 40 sent", Duration::from_secs(60), || all_sent(&mut c));
    assert!(a.stop().success() && b.stop().success());
    let mut sent: Vec<i64> = fake
        .requests()
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    sent.sort();
    assert_eq!(sent, ids, "every message exactly once");
}

#[test]
fn a_killed_workers_messages_are_delivered_by_another() {
    let mut c = db();
    queue_messages(&mut c, 1);
    // The provider hangs on the first request; the worker holding it is killed without answering.
    let fake = FakeProvider::start(vec![(Duration::from_secs(30), 201, r#"{"id": "late"}"#)]);
    let mut first = Worker::webhook(
        &fake.url,
        &["--visibility-timeout", "2", "--request-timeout", "60"],
    );
    wait_until("the first worker to send", Duration::from_secs(20), || {
        !fake.requests().is_empty()
    });
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let _second = Worker::webhook(&fake.url, &["--visibility-timeout", "2"]);
    wait_until(
        "redelivery after the visibility timeout",
        Duration::from_secs(30),
        || all_sent(&mut c),
    );
    assert_eq!(
        fake.requests().len(),
        2,
        "at least once: the killed worker's message went out again"
    );
}

#[test]
fn the_worker_survives_a_database_restart() {
    let pgdata = std::env::var("MFA_TEST_PGDATA").expect("MFA_TEST_PGDATA (make test sets it)");
    let mut c = db();
    queue_messages(&mut c, 1);
    let fake = FakeProvider::start(vec![]);
    let worker = Worker::webhook(&fake.url, &[]);
    wait_until("the first message", Duration::from_secs(20), || {
        all_sent(&mut c)
    });
    let restarted = Command::new("runuser")
        .args([
            "-u",
            "postgres",
            "--",
            &common::server_program("pg_ctl"),
            "-D",
            &pgdata,
            "-l",
            &format!("{pgdata}/server.log"),
            "-m",
            "fast",
            "-w",
            "restart",
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(restarted.success());
    let mut c = db();
    c.query_one("SELECT mfa.otp_sms_send('worker-test', 'm0')", &[])
        .unwrap();
    wait_until(
        "a message after the restart",
        Duration::from_secs(60),
        || all_sent(&mut c),
    );
    assert_eq!(fake.requests().len(), 2);
    assert!(worker.stop().success());
}

/// The webhook is https:// unless a test endpoint is explicitly allowed, and a redirect is never
/// followed: the signed body (number and code) stays with the configured endpoint.
#[test]
fn webhook_refuses_http_and_redirects() {
    let plain = Command::new(env!("CARGO_BIN_EXE_mfa-sms-worker"))
        .args(["--database-url", &database_url(), "--provider", "webhook"])
        .args([
            "--webhook-url",
            "http://127.0.0.1:9/sms",
            "--webhook-secret",
            "whsec",
        ])
        .output()
        .unwrap();
    assert_eq!(plain.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("https://"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );

    let elsewhere = FakeProvider::start(vec![]);
    let target = format!("{}/stolen", elsewhere.url);
    let redirecting = FakeProvider::start(vec![
        (Duration::ZERO, 307, Box::leak(target.into_boxed_str())),
        (Duration::ZERO, 308, "http://127.0.0.1:9/stolen"),
    ]);
    let mut c = db();
    let ids = queue_messages(&mut c, 1);
    let _worker = Worker::webhook(&redirecting.url, &[]);
    wait_until(
        "the redirected message to be given up",
        Duration::from_secs(20),
        || {
            statuses(&mut c)
                .iter()
                .all(|(_, status, _, _)| status == "dead")
        },
    );
    assert_eq!(redirecting.requests().len(), 1);
    assert!(elsewhere.requests().is_empty(), "the redirect was followed");
    let error: String = c
        .query_one(
            "SELECT last_error FROM mfa.sms_outbox WHERE message_id = $1",
            &[&ids[0]],
        )
        .unwrap()
        .get(0);
    assert!(error.contains("redirect"), "{error}");
}

#[test]
fn a_notification_on_another_server_wakes_the_worker() {
    // On Citus a code is queued on the node that holds its organization, and its notification
    // is raised there; claims go to the coordinator. Here: the messages are queued without a
    // notification, and one is raised in another database, which the worker also listens on.
    let mut c = db();
    let other = database_url().replace("dbname=mfa_worker", "dbname=postgres");
    assert_ne!(other, database_url(), "the test database is mfa_worker");
    let fake = FakeProvider::start(vec![]);
    let worker = Worker::twilio(
        &fake.url,
        &["--poll-interval", "600", "--listen-url", &other],
    );
    // The worker's first claim finds the outbox empty; then it waits (10 minutes between polls).
    c.batch_execute("DELETE FROM mfa.sms_outbox").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    c.batch_execute("SET mfa.sms_outbox_notify = off").unwrap();
    let ids = queue_messages(&mut c, 2);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        statuses(&mut c).iter().all(|s| s.1 == "pending"),
        "nothing wakes the worker yet"
    );
    Client::connect(&other, NoTls)
        .unwrap()
        .batch_execute("NOTIFY mfa_sms_outbox")
        .unwrap();
    wait_until("the messages sent", Duration::from_secs(10), || {
        all_sent(&mut c)
    });
    assert_eq!(fake.requests().len(), ids.len());
    assert!(worker.stop().success());
}

/// A port free on loopback a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` on loopback `port`: the status line and the body.
fn http_get(port: u16, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the metrics port");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The value of the sample `series` (a name with its labels, as the text format writes them).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
        .parse()
        .unwrap()
}

/// `--metrics-addr`: after a known run — a 503 (retried), a 400 (dead), then successes — the
/// counters say exactly that; `--log-format json`: every line is a JSON object, and none holds a
/// code or a number the provider received.
#[test]
fn metrics_and_json_logs_tell_what_happened_and_never_a_code() {
    let mut c = db();
    queue_messages(&mut c, 3);
    let fake = FakeProvider::start(vec![
        (
            Duration::ZERO,
            503,
            r#"{"code": 20500, "message": "Internal Server Error"}"#,
        ),
        (
            Duration::ZERO,
            400,
            r#"{"code": 21211, "message": "Invalid 'To' Phone Number"}"#,
        ),
    ]);
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let log = std::env::temp_dir().join(format!("mfa-worker-json-{}.log", std::process::id()));
    let worker = Worker::spawn(
        &[
            "--provider",
            "twilio",
            "--twilio-base-url",
            &fake.url,
            "--twilio-account-sid",
            "AC123",
            "--twilio-auth-token",
            "tok3n",
            "--twilio-from",
            "+15005550006",
        ],
        &[
            "--concurrency",
            "1",
            "--batch-size",
            "1",
            "--metrics-addr",
            &address,
            "--log-format",
            "json",
        ],
        "debug",
        std::fs::File::create(&log).unwrap().into(),
    );
    wait_until("two sent, one dead", Duration::from_secs(40), || {
        let s = statuses(&mut c);
        s.iter().filter(|m| m.1 == "sent").count() == 2 && s.iter().any(|m| m.1 == "dead")
    });
    // The last acknowledgement is counted right after its statement returns.
    std::thread::sleep(Duration::from_millis(300));
    let (status, text) = http_get(port, "/metrics");
    assert!(status.contains("200"), "{status}");
    assert_eq!(sample(&text, "mfa_sms_worker_messages_sent_total"), 2.0);
    assert_eq!(sample(&text, "mfa_sms_worker_messages_failed_total"), 2.0);
    assert_eq!(sample(&text, "mfa_sms_worker_messages_retried_total"), 1.0);
    assert_eq!(sample(&text, "mfa_sms_worker_messages_dead_total"), 1.0);
    assert_eq!(
        sample(&text, "mfa_sms_worker_acknowledgements_failed_total"),
        0.0
    );
    assert_eq!(sample(&text, "mfa_sms_worker_database_connected"), 1.0);
    // Four provider requests: two sent, one retry, one failure.
    let latency = "mfa_sms_worker_provider_request_duration_seconds_count";
    assert_eq!(
        sample(
            &text,
            &format!(r#"{latency}{{outcome="sent",provider="twilio"}}"#)
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"{latency}{{outcome="retry",provider="twilio"}}"#)
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"{latency}{{outcome="failed",provider="twilio"}}"#)
        ),
        1.0
    );
    // Claims brought the four deliveries one at a time (and found nothing the other times).
    assert_eq!(sample(&text, "mfa_sms_worker_claim_batch_size_sum"), 4.0);
    assert!(sample(&text, r#"mfa_sms_worker_claim_batch_size_bucket{le="0"}"#) >= 1.0);
    assert_eq!(
        sample(&text, r#"mfa_sms_worker_claim_batch_size_bucket{le="1"}"#),
        sample(&text, "mfa_sms_worker_claim_batch_size_count")
    );
    assert!(http_get(port, "/other").0.contains("404"));
    assert!(worker.stop().success());

    let requests = fake.requests();
    assert_eq!(requests.len(), 4);
    let codes: Vec<String> = requests
        .iter()
        .map(|r| {
            let at = r.body.find("code+is+").expect("a code in the text") + "code+is+".len();
            r.body[at..at + 6].to_string()
        })
        .collect();
    assert!(codes
        .iter()
        .all(|code| code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())));
    let logs = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let lines: Vec<&str> = logs.lines().collect();
    assert!(lines.len() >= 5, "{logs}");
    let mut delivered = 0;
    for line in &lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            event["timestamp"].is_string() && event["level"].is_string(),
            "{line}"
        );
        for code in &codes {
            assert!(!line.contains(code.as_str()), "a code in the logs: {line}");
        }
        assert!(
            !line.contains("1415555"),
            "a phone number in the logs: {line}"
        );
        assert!(
            !line.contains("tok3n"),
            "the provider's token in the logs: {line}"
        );
        if event["fields"]["message"] == "delivered" {
            delivered += 1;
        }
    }
    assert_eq!(delivered, 4, "{logs}");
}
