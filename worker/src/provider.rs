//! Where messages go: the console, Twilio's Messages API, or a signed JSON webhook.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::time::Duration;

/// One message claimed from the outbox.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: i64,
    pub phone_number: String,
    pub country_code: String,
    pub locale: String,
    pub body: String,
    pub attempts: i32,
    /// What completing or failing the message needs (never logged).
    pub receipt: String,
}

/// What the provider said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent {
        provider_message_id: Option<String>,
    },
    /// Worth retrying later: timeouts, connection errors, 429, 5xx.
    Transient(String),
    /// Will never work: an invalid number, bad credentials, a refused request.
    Permanent(String),
}

#[derive(Debug, Clone)]
pub struct TwilioConfig {
    pub base_url: String,
    pub account_sid: String,
    /// The user and password of HTTP basic auth: the account SID and auth token, or an API key
    /// SID and its secret.
    pub username: String,
    pub password: String,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Provider {
    Console,
    Twilio(TwilioConfig),
    Webhook { url: String, secret: String },
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Console => "console",
            Provider::Twilio(_) => "twilio",
            Provider::Webhook { .. } => "webhook",
        }
    }

    pub async fn send(&self, http: &reqwest::Client, message: &Message) -> Outcome {
        match self {
            Provider::Console => {
                // The console provider's job is to show the text (for development and the demo);
                // the logs never do.
                println!(
                    "[sms] to {} ({}, {}): {}",
                    message.phone_number, message.country_code, message.locale, message.body
                );
                Outcome::Sent {
                    provider_message_id: Some(format!("console-{}", message.id)),
                }
            }
            Provider::Twilio(config) => send_twilio(http, config, message).await,
            Provider::Webhook { url, secret } => send_webhook(http, url, secret, message).await,
        }
    }
}

async fn send_twilio(http: &reqwest::Client, config: &TwilioConfig, message: &Message) -> Outcome {
    let url = format!(
        "{}/2010-04-01/Accounts/{}/Messages.json",
        config.base_url.trim_end_matches('/'),
        config.account_sid
    );
    let mut form = vec![
        ("To", message.phone_number.as_str()),
        ("Body", message.body.as_str()),
    ];
    match (&config.messaging_service_sid, &config.from) {
        (Some(sid), _) => form.push(("MessagingServiceSid", sid.as_str())),
        (None, Some(from)) => form.push(("From", from.as_str())),
        (None, None) => return Outcome::Permanent("twilio: no sender configured".into()),
    }
    let response = http
        .post(url)
        .basic_auth(&config.username, Some(&config.password))
        .form(&form)
        .send()
        .await;
    classify(response, "sid").await
}

/// The signature header of a webhook call: `v1=` and the hex HMAC-SHA256, keyed with the shared
/// secret, of `{timestamp}.{body}` (the timestamp lets the receiver refuse replays).
pub fn webhook_signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1={}",
        data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
    )
}

async fn send_webhook(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    message: &Message,
) -> Outcome {
    let body = serde_json::to_vec(message).expect("a message serializes");
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let response = http
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Mfa-Timestamp", timestamp.to_string())
        .header(
            "X-Mfa-Signature",
            webhook_signature(secret, timestamp, &body),
        )
        .body(body)
        .send()
        .await;
    classify(response, "id").await
}

/// Maps an HTTP answer to an outcome; `id_field` names the provider's message id in a JSON body.
async fn classify(response: Result<reqwest::Response, reqwest::Error>, id_field: &str) -> Outcome {
    let response = match response {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Outcome::Transient("timeout".into()),
        Err(e) if e.is_connect() => return Outcome::Transient("connection failed".into()),
        Err(e) => return Outcome::Transient(format!("request failed: {}", e.without_url())),
    };
    let status = response.status();
    if status.is_redirection() {
        return Outcome::Permanent(format!(
            "HTTP {}: redirects are not followed; configure the final URL",
            status.as_u16()
        ));
    }
    let text = response.text().await.unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if status.is_success() {
        let id = json
            .get(id_field)
            .and_then(|v| v.as_str())
            .map(str::to_string);
        return Outcome::Sent {
            provider_message_id: id,
        };
    }
    // Twilio's error bodies carry a numeric code and a message; keep them short.
    let detail = match (
        json.get("code"),
        json.get("message").and_then(|m| m.as_str()),
    ) {
        (Some(code), Some(msg)) => {
            format!("HTTP {}: {} {}", status.as_u16(), code, truncate(msg, 200))
        }
        _ => format!("HTTP {}", status.as_u16()),
    };
    if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408 {
        Outcome::Transient(detail)
    } else {
        Outcome::Permanent(detail)
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        // A redirect would re-send the signed body, number and code included, wherever it points.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mfa-sms-worker/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_signatures_are_keyed_and_cover_the_timestamp() {
        let a = webhook_signature("s3cret", 1700000000, b"{}");
        assert!(a.starts_with("v1=") && a.len() == 67);
        assert_ne!(a, webhook_signature("other", 1700000000, b"{}"));
        assert_ne!(a, webhook_signature("s3cret", 1700000001, b"{}"));
        assert_eq!(a, webhook_signature("s3cret", 1700000000, b"{}"));
    }
}
