//! `mfa-sms-worker`: drains the SMS outbox of the `mfa` extension.
//!
//! It `LISTEN`s on `mfa_sms_outbox` and also polls (a notification is a hint, never the only
//! trigger), claims batches with `mfa.sms_outbox_claim` — never more than it has free sending
//! slots, so nothing it holds waits — sends concurrently, and answers each message with
//! `mfa.sms_outbox_complete` or `mfa.sms_outbox_fail`. Delivery is at least once: a crash between
//! the provider's acceptance and the acknowledgement sends the message again after the visibility
//! timeout.

pub mod metrics;
pub mod provider;
pub mod tls;

use futures_util::StreamExt;
use metrics::METRICS;
use provider::{Message, Outcome, Provider};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{error, info, warn};

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    /// More servers to `LISTEN` on: on a Citus cluster a code is queued (and its notification
    /// raised) on the node that holds the organization, while claims go to the coordinator.
    pub listen_urls: Vec<String>,
    pub provider: Provider,
    pub batch_size: i32,
    pub concurrency: usize,
    pub visibility_timeout: Duration,
    pub poll_interval: Duration,
    pub request_timeout: Duration,
    /// Exit once the outbox has nothing deliverable (for cron jobs and the demo).
    pub exit_when_idle: bool,
}

/// Runs until `shutdown` turns true; then stops claiming, lets every send in flight finish and be
/// acknowledged, and returns.
pub async fn run(config: Config, mut shutdown: watch::Receiver<bool>) {
    let http = provider::http_client(config.request_timeout);
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let mut backoff = Duration::from_millis(500);
    // Wake-ups from the other servers; `_hints` keeps the channel open when there are none.
    let (_hints, mut hints) = listen_elsewhere(&config.listen_urls, &shutdown);
    'connection: while !*shutdown.borrow() {
        METRICS.connected.set(0);
        let (client, mut wakeups) = match connect(&config.database_url).await {
            Ok(c) => {
                backoff = Duration::from_millis(500);
                METRICS.connected.set(1);
                c
            }
            Err(e) => {
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot reach the database");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        let client = Arc::new(client);
        info!(
            provider = config.provider.name(),
            "connected; listening on mfa_sms_outbox"
        );
        loop {
            if *shutdown.borrow() {
                break 'connection;
            }
            let free = slots.available_permits().min(config.batch_size as usize);
            if free == 0 {
                // Every slot is busy: wait for one rather than claim what cannot be sent yet.
                drop(slots.clone().acquire_owned().await);
                continue;
            }
            let claimed = match claim(&client, free as i32, config.visibility_timeout).await {
                Ok(messages) => {
                    METRICS.claim_batch.observe(messages.len() as f64);
                    messages
                }
                Err(e) => {
                    warn!(error = %e, "claim failed; reconnecting");
                    continue 'connection;
                }
            };
            let count = claimed.len();
            for message in claimed {
                let permit = slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let (client, http, provider) =
                    (client.clone(), http.clone(), config.provider.clone());
                tokio::spawn(async move {
                    deliver(&client, &http, &provider, message).await;
                    drop(permit);
                });
            }
            if count == free {
                continue; // there may be more waiting
            }
            if config.exit_when_idle {
                break 'connection;
            }
            tokio::select! {
                woke = wakeups.recv() => if woke.is_none() {
                    warn!("database connection lost; reconnecting");
                    continue 'connection;
                },
                _ = hints.recv() => {}
                _ = tokio::time::sleep(config.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
    // Every send in flight finishes and is acknowledged before the worker exits.
    let _all = slots.acquire_many(config.concurrency as u32).await;
    METRICS.connected.set(0);
    info!("stopped");
}

/// Listens on `mfa_sms_outbox` on each of `urls` (reconnecting as needed) until shutdown, and
/// turns every notification into a wake-up on the returned receiver.
fn listen_elsewhere(
    urls: &[String],
    shutdown: &watch::Receiver<bool>,
) -> (mpsc::UnboundedSender<()>, mpsc::UnboundedReceiver<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    for url in urls {
        let (url, tx, mut shutdown) = (url.clone(), tx.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            while !*shutdown.borrow() {
                match connect(&url).await {
                    Ok((_client, mut notifications)) => {
                        backoff = Duration::from_millis(500);
                        loop {
                            tokio::select! {
                                woke = notifications.recv() => match woke {
                                    Some(()) => { let _ = tx.send(()); }
                                    None => break,
                                },
                                _ = shutdown.changed() => return,
                            }
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot listen on a server");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        });
    }
    (tx, rx)
}

/// Why a connection could not be made.
#[derive(Debug)]
pub enum Failure {
    /// The connection string's TLS settings cannot work (bad sslmode, unreadable sslrootcert).
    Configuration(String),
    Database(tokio_postgres::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Configuration(e) => write!(f, "{e}"),
            Failure::Database(e) => write!(f, "{e}"),
        }
    }
}

/// Connects, starts the task that drives the connection, and `LISTEN`s. The receiver yields once
/// per notification and closes when the connection is lost.
pub async fn connect(
    url: &str,
) -> Result<(tokio_postgres::Client, mpsc::UnboundedReceiver<()>), Failure> {
    let target = tls::parse(url).map_err(Failure::Configuration)?;
    let (client, rx) = if target.plain {
        let (client, connection) =
            tokio_postgres::connect(&target.connection_string, tokio_postgres::NoTls)
                .await
                .map_err(Failure::Database)?;
        (client, drive(connection))
    } else {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(
            tls::client_config(&target).map_err(Failure::Configuration)?,
        );
        let (client, connection) = tokio_postgres::connect(&target.connection_string, tls)
            .await
            .map_err(Failure::Database)?;
        (client, drive(connection))
    };
    client
        .batch_execute("LISTEN mfa_sms_outbox")
        .await
        .map_err(Failure::Database)?;
    Ok((client, rx))
}

/// Starts the task that drives a connection; the receiver yields once per notification.
fn drive<S, T>(mut connection: tokio_postgres::Connection<S, T>) -> mpsc::UnboundedReceiver<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                    let _ = tx.send(());
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "database connection ended");
                    break;
                }
            }
        }
    });
    rx
}

async fn claim(
    client: &tokio_postgres::Client,
    batch_size: i32,
    visibility_timeout: Duration,
) -> Result<Vec<Message>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT id, phone_number, country_code, locale, body, attempts, receipt
               FROM mfa.sms_outbox_claim($1, make_interval(secs => $2))",
            &[&batch_size, &visibility_timeout.as_secs_f64()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Message {
            id: r.get(0),
            phone_number: r.get(1),
            country_code: r.get(2),
            locale: r.get(3),
            body: r.get(4),
            attempts: r.get(5),
            receipt: r.get(6),
        })
        .collect())
}

/// Sends one message and acknowledges the outcome. Logs carry the id, country and outcome —
/// never the number or the text.
async fn deliver(
    client: &tokio_postgres::Client,
    http: &reqwest::Client,
    provider: &Provider,
    message: Message,
) {
    let started = std::time::Instant::now();
    let outcome = provider.send(http, &message).await;
    let (statement, detail, result) = match &outcome {
        Outcome::Sent {
            provider_message_id,
        } => (
            "SELECT mfa.sms_outbox_complete($1, $3, $2) ->> 'status'",
            provider_message_id.as_deref(),
            "sent",
        ),
        Outcome::Transient(reason) => (
            "SELECT mfa.sms_outbox_fail($1, $3, $2, true) ->> 'status'",
            Some(reason.as_str()),
            "retry",
        ),
        Outcome::Permanent(reason) => (
            "SELECT mfa.sms_outbox_fail($1, $3, $2, false) ->> 'status'",
            Some(reason.as_str()),
            "failed",
        ),
    };
    match outcome {
        Outcome::Sent { .. } => METRICS.sent.inc(),
        _ => METRICS.failed.inc(),
    }
    METRICS
        .provider_latency
        .with_label_values(&[provider.name(), result])
        .observe(started.elapsed().as_secs_f64());
    let acknowledged = client
        .query_one(statement, &[&message.id, &detail, &message.receipt])
        .await
        .map(|row| row.get::<_, Option<String>>(0));
    match acknowledged {
        Ok(status) => {
            // What the outbox made of the report: sent, pending again (a retry), or dead.
            match (result, status.as_deref()) {
                ("sent", _) => {}
                (_, Some("dead")) => METRICS.dead.inc(),
                _ => METRICS.retried.inc(),
            }
            info!(message_id = message.id, country = %message.country_code, attempts = message.attempts, result, status = status.as_deref().unwrap_or(""), "delivered")
        }
        // The message comes back after its visibility timeout: at least once, never lost.
        Err(e) => {
            METRICS.unacknowledged.inc();
            error!(message_id = message.id, result, error = %e, "could not acknowledge")
        }
    }
}
