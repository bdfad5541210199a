//! The worker's own figures, in Prometheus' text format on `/metrics` (`--metrics-addr`): what it
//! sent, what failed and was retried or given up, how long the provider took, how many messages
//! each claim brought, and whether it is connected to the database. A registry of its own (not
//! the process-wide default one); the counters start at zero with the process.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntGauge, Opts, Registry,
    TextEncoder,
};
use std::sync::LazyLock;
use tokio::net::TcpListener;
use tracing::{info, warn};

pub struct Metrics {
    registry: Registry,
    /// Messages the provider accepted.
    pub sent: IntCounter,
    /// Sending attempts the provider refused or that never reached it, whatever comes next.
    pub failed: IntCounter,
    /// Failed attempts reported for a retry that the outbox took back (the message comes again).
    pub retried: IntCounter,
    /// Messages the outbox gave up on (a permanent failure, or the last attempt).
    pub dead: IntCounter,
    /// Reports (complete or fail) the database did not take: the message comes back after its
    /// visibility timeout.
    pub unacknowledged: IntCounter,
    /// How long each provider request took, by provider and outcome (sent, retry, failed).
    pub provider_latency: HistogramVec,
    /// Messages each claim brought (0 for a claim that found nothing).
    pub claim_batch: Histogram,
    /// 1 while the worker holds a connection to the database it claims from, else 0.
    pub connected: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::with_opts(Opts::new(name, help)).expect("a valid counter");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let sent = counter(
            &registry,
            "mfa_sms_worker_messages_sent_total",
            "Messages the provider accepted.",
        );
        let failed = counter(
            &registry,
            "mfa_sms_worker_messages_failed_total",
            "Sending attempts that failed (retried or not).",
        );
        let retried = counter(
            &registry,
            "mfa_sms_worker_messages_retried_total",
            "Failed attempts the outbox took back for a later retry.",
        );
        let dead = counter(
            &registry,
            "mfa_sms_worker_messages_dead_total",
            "Messages the outbox gave up on (a permanent failure or the last attempt).",
        );
        let unacknowledged = counter(
            &registry,
            "mfa_sms_worker_acknowledgements_failed_total",
            "Completions or failures the database did not take (the message is sent again after its visibility timeout).",
        );
        let provider_latency = HistogramVec::new(
            HistogramOpts::new(
                "mfa_sms_worker_provider_request_duration_seconds",
                "How long the provider took to answer a message, by outcome.",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["provider", "outcome"],
        )
        .expect("a valid histogram");
        registry
            .register(Box::new(provider_latency.clone()))
            .expect("registered once");
        let claim_batch = Histogram::with_opts(
            HistogramOpts::new(
                "mfa_sms_worker_claim_batch_size",
                "Messages each claim brought (0: the outbox had nothing deliverable).",
            )
            .buckets(vec![
                0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
            ]),
        )
        .expect("a valid histogram");
        registry
            .register(Box::new(claim_batch.clone()))
            .expect("registered once");
        let connected = IntGauge::with_opts(Opts::new(
            "mfa_sms_worker_database_connected",
            "1 while the worker holds its connection to the database it claims from.",
        ))
        .expect("a valid gauge");
        registry
            .register(Box::new(connected.clone()))
            .expect("registered once");
        Metrics {
            registry,
            sent,
            failed,
            retried,
            dead,
            unacknowledged,
            provider_latency,
            claim_batch,
            connected,
        }
    }

    /// Every metric in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("the text format encodes");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// The worker's metrics (one set per process).
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Serves `GET /metrics` on `listener` until the process ends; anything else is 404.
pub async fn serve(listener: TcpListener) {
    if let Ok(address) = listener.local_addr() {
        info!(%address, "serving Prometheus metrics on /metrics");
    }
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                Ok::<_, std::convert::Infallible>(answer(&request))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) =
        if request.method() == hyper::Method::GET && request.uri().path() == "/metrics" {
            (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                METRICS.render(),
            )
        } else {
            (
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "not found: the metrics are on GET /metrics\n".to_string(),
            )
        };
    Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}
