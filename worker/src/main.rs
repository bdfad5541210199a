//! Command line of `mfa-sms-worker`: flags or environment variables, structured logs on stderr,
//! graceful shutdown on SIGTERM and SIGINT.

use clap::{Parser, ValueEnum};
use mfa_sms_worker::provider::{Provider, TwilioConfig};
use mfa_sms_worker::{run, Config};
use std::time::Duration;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (timestamp, level, fields, target), for log collectors.
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ProviderKind {
    Console,
    Twilio,
    Webhook,
}

/// Delivers the SMS messages of the mfa extension's outbox.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// PostgreSQL connection string of a role granted mfa_sms_worker (key=value or postgres:// URL).
    #[arg(long, env = "MFA_DATABASE_URL")]
    database_url: String,
    /// More servers to LISTEN on for new messages (repeat, or comma-separated): on a Citus
    /// cluster, each worker node (a code's notification is raised where its organization is).
    #[arg(
        long = "listen-url",
        env = "MFA_SMS_LISTEN_URLS",
        value_delimiter = ','
    )]
    listen_urls: Vec<String>,
    /// Where messages go.
    #[arg(long, env = "MFA_SMS_PROVIDER", value_enum, default_value = "console")]
    provider: ProviderKind,
    /// Messages claimed at once (at most the free sending slots).
    #[arg(long, env = "MFA_SMS_BATCH_SIZE", default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..=1000))]
    batch_size: i32,
    /// Messages sent at the same time.
    #[arg(long, env = "MFA_SMS_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    concurrency: u32,
    /// Seconds a claimed message stays hidden from other workers.
    #[arg(long, env = "MFA_SMS_VISIBILITY_TIMEOUT", default_value_t = 30)]
    visibility_timeout: u64,
    /// Seconds between polls when no notification arrives; fractions allowed (with
    /// `mfa.sms_outbox_notify = off`, polling is how messages are found).
    #[arg(long, env = "MFA_SMS_POLL_INTERVAL", default_value_t = 5.0, value_parser = poll_seconds)]
    poll_interval: f64,
    /// Seconds before a provider request is abandoned (and retried later).
    #[arg(long, env = "MFA_SMS_REQUEST_TIMEOUT", default_value_t = 10)]
    request_timeout: u64,
    /// Exit once nothing is deliverable.
    #[arg(long)]
    exit_when_idle: bool,
    /// Serve Prometheus metrics on http://HOST:PORT/metrics (e.g. 127.0.0.1:9187); off by default.
    #[arg(long, env = "MFA_SMS_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// The format of the logs on stderr.
    #[arg(long, env = "MFA_SMS_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Twilio account SID (AC…).
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    twilio_account_sid: Option<String>,
    /// Twilio auth token (or use an API key).
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    twilio_auth_token: Option<String>,
    /// Twilio API key SID (SK…), with --twilio-api-key-secret.
    #[arg(long, env = "TWILIO_API_KEY_SID")]
    twilio_api_key_sid: Option<String>,
    #[arg(long, env = "TWILIO_API_KEY_SECRET", hide_env_values = true)]
    twilio_api_key_secret: Option<String>,
    /// Sender number (E.164), or use --twilio-messaging-service-sid.
    #[arg(long, env = "TWILIO_FROM")]
    twilio_from: Option<String>,
    #[arg(long, env = "TWILIO_MESSAGING_SERVICE_SID")]
    twilio_messaging_service_sid: Option<String>,
    #[arg(
        long,
        env = "TWILIO_BASE_URL",
        default_value = "https://api.twilio.com"
    )]
    twilio_base_url: String,
    /// URL that receives each message as a signed JSON POST.
    #[arg(long, env = "MFA_SMS_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Shared secret of the webhook's X-Mfa-Signature HMAC.
    #[arg(long, env = "MFA_SMS_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Accept an http:// webhook URL (a test endpoint on loopback): messages carry codes and
    /// numbers, so production webhooks are https:// only.
    #[arg(long)]
    allow_insecure_webhook: bool,
}

/// A webhook URL is https://, or http:// when explicitly allowed.
fn webhook_url(url: &str, allow_insecure: bool) -> Result<String, String> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("https") => Ok(url.to_string()),
        Some("http") if allow_insecure => Ok(url.to_string()),
        Some("http") => Err(
            "the webhook URL must be https:// (messages carry codes and phone numbers); --allow-insecure-webhook accepts http:// for a local test endpoint".into(),
        ),
        _ => Err(format!("the webhook URL must be https://; got {url:?}")),
    }
}

fn provider(args: &Args) -> Result<Provider, String> {
    Ok(match args.provider {
        ProviderKind::Console => Provider::Console,
        ProviderKind::Twilio => {
            let account_sid = args
                .twilio_account_sid
                .clone()
                .ok_or("twilio needs --twilio-account-sid")?;
            let (username, password) = match (&args.twilio_api_key_sid, &args.twilio_api_key_secret, &args.twilio_auth_token) {
                (Some(key), Some(secret), _) => (key.clone(), secret.clone()),
                (None, None, Some(token)) => (account_sid.clone(), token.clone()),
                _ => return Err("twilio needs --twilio-auth-token, or --twilio-api-key-sid with --twilio-api-key-secret".into()),
            };
            if args.twilio_from.is_none() && args.twilio_messaging_service_sid.is_none() {
                return Err("twilio needs --twilio-from or --twilio-messaging-service-sid".into());
            }
            Provider::Twilio(TwilioConfig {
                base_url: args.twilio_base_url.clone(),
                account_sid,
                username,
                password,
                from: args.twilio_from.clone(),
                messaging_service_sid: args.twilio_messaging_service_sid.clone(),
            })
        }
        ProviderKind::Webhook => Provider::Webhook {
            url: webhook_url(
                args.webhook_url
                    .as_deref()
                    .ok_or("webhook needs --webhook-url")?,
                args.allow_insecure_webhook,
            )?,
            secret: args
                .webhook_secret
                .clone()
                .ok_or("webhook needs --webhook-secret")?,
        },
    })
}

#[tokio::main]
async fn main() {
    use std::io::IsTerminal;
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("MFA_SMS_LOG")
        .unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match args.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
    let provider = match provider(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mfa-sms-worker: {e}");
            std::process::exit(2);
        }
    };
    let config = Config {
        database_url: args.database_url.clone(),
        listen_urls: args.listen_urls.clone(),
        provider,
        batch_size: args.batch_size,
        concurrency: args.concurrency as usize,
        visibility_timeout: Duration::from_secs(args.visibility_timeout.max(1)),
        poll_interval: Duration::from_secs_f64(args.poll_interval),
        request_timeout: Duration::from_secs(args.request_timeout.max(1)),
        exit_when_idle: args.exit_when_idle,
    };
    if let Some(address) = args.metrics_addr {
        match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => {
                tokio::spawn(mfa_sms_worker::metrics::serve(listener));
            }
            Err(e) => {
                eprintln!("mfa-sms-worker: cannot serve metrics on {address}: {e}");
                std::process::exit(2);
            }
        }
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down: finishing the messages in flight");
        let _ = stop.send(true);
    });
    run(config, stopped).await;
}

/// A poll interval in seconds: between 0.01 and 3600.
fn poll_seconds(text: &str) -> Result<f64, String> {
    let seconds: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.01..=3600.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err("must be between 0.01 and 3600 seconds".into())
    }
}

#[cfg(test)]
mod tests {
    use super::{poll_seconds, webhook_url};

    #[test]
    fn webhook_urls_are_https_unless_a_test_endpoint_is_allowed() {
        assert!(webhook_url("https://hooks.example/sms", false).is_ok());
        assert!(webhook_url("HTTPS://hooks.example/sms", false).is_ok());
        assert!(webhook_url("http://hooks.example/sms", false).is_err());
        assert!(webhook_url("http://127.0.0.1:8080/sms", true).is_ok());
        for bad in ["ftp://x/sms", "hooks.example/sms", "", "file:///etc/passwd"] {
            assert!(webhook_url(bad, true).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn poll_intervals_may_be_fractions_within_bounds() {
        assert_eq!(poll_seconds("0.2"), Ok(0.2));
        assert_eq!(poll_seconds("5"), Ok(5.0));
        for bad in ["0", "0.001", "-1", "3601", "NaN", "inf", "soon", ""] {
            assert!(poll_seconds(bad).is_err(), "{bad} accepted");
        }
    }
}
