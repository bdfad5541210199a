//! The reference web application of the `mfa` extension: a B2B sign-in whose MFA authority is the
//! database. Everything MFA goes through mfa's SQL API (`src/login.rs` holds the calls); the
//! application keeps its own users, passwords and sessions (`sql/schema.sql`).
//!
//! `mfa-webapp` serves; `mfa-webapp seed-demo` fills the demo organizations (as a superuser).

mod db;
mod login;
mod pages;
mod web;

use axum::routing::{get, post};
use axum::Router;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use minijinja::Environment;
use rand::RngCore;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

pub struct Config {
    /// Demo mode: the development SMS inbox is served and cookies are not `Secure` (plain http on
    /// 127.0.0.1). Never in production.
    pub demo: bool,
    pub secure_cookies: bool,
    /// The freshness /billing asks of the newest second factor (at most 300: the RLS policy caps it).
    pub step_up_seconds: u32,
    /// The shared secret of the SMS worker's webhook (demo inbox).
    pub webhook_secret: Option<String>,
    /// The passkeys' relying-party id: the site's host (or a registrable suffix of it), one of
    /// mfa.webauthn_allowed_origins' hosts. Browsers refuse IP addresses: `localhost` in the demo.
    pub passkey_domain: String,
}

pub struct SmsMessage {
    pub received_at: String,
    pub to: String,
    pub body: String,
}

pub struct App {
    pub db: Pool,
    pub admin_db: Pool,
    pub templates: Environment<'static>,
    pub cookie_key: [u8; 32],
    pub config: Config,
    pub inbox: Mutex<VecDeque<SmsMessage>>,
}

fn pool(url: &str, size: usize) -> Pool {
    let config: tokio_postgres::Config = url.parse().unwrap_or_else(|e| {
        eprintln!("mfa-webapp: bad connection string: {e}");
        std::process::exit(2)
    });
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager).max_size(size).build().expect("pool")
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn templates() -> Environment<'static> {
    let mut t = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("../templates/base.html")),
        ("signin.html", include_str!("../templates/signin.html")),
        (
            "enroll_totp.html",
            include_str!("../templates/enroll_totp.html"),
        ),
        (
            "enroll_phone.html",
            include_str!("../templates/enroll_phone.html"),
        ),
        ("code.html", include_str!("../templates/code.html")),
        ("passkey.html", include_str!("../templates/passkey.html")),
        (
            "recovery_codes.html",
            include_str!("../templates/recovery_codes.html"),
        ),
        ("home.html", include_str!("../templates/home.html")),
        ("billing.html", include_str!("../templates/billing.html")),
        ("admin.html", include_str!("../templates/admin.html")),
        ("inbox.html", include_str!("../templates/inbox.html")),
        ("message.html", include_str!("../templates/message.html")),
    ] {
        t.add_template(name, source).expect("template parses");
    }
    t
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("seed-demo") {
        let url = env(
            "MFA_WEB_SEED_DATABASE_URL",
            "host=/tmp port=28816 user=postgres dbname=mfa_demo",
        );
        if let Err(e) = pages::seed_demo(&url).await {
            eprintln!("mfa-webapp seed-demo: {e}");
            std::process::exit(1);
        }
        return;
    }
    if args.len() > 1 {
        eprintln!("usage: mfa-webapp [seed-demo]   (settings: MFA_WEB_* environment variables, see README)");
        std::process::exit(2);
    }

    let demo = env("MFA_WEB_DEMO", "0") == "1";
    let config = Config {
        demo,
        secure_cookies: !demo,
        step_up_seconds: env("MFA_WEB_STEP_UP_SECONDS", "300")
            .parse()
            .unwrap_or(300)
            .min(300),
        webhook_secret: std::env::var("MFA_WEB_WEBHOOK_SECRET")
            .ok()
            .filter(|s| !s.is_empty()),
        passkey_domain: env("MFA_WEB_PASSKEY_DOMAIN", "localhost"),
    };
    let mut cookie_key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut cookie_key);
    let app = Arc::new(App {
        db: pool(
            &env(
                "MFA_WEB_DATABASE_URL",
                "host=/tmp port=28816 user=mfa_webapp dbname=mfa_demo",
            ),
            16,
        ),
        admin_db: pool(
            &env(
                "MFA_WEB_ADMIN_DATABASE_URL",
                "host=/tmp port=28816 user=mfa_webapp_admin dbname=mfa_demo",
            ),
            4,
        ),
        templates: templates(),
        cookie_key,
        config,
        inbox: Mutex::new(VecDeque::new()),
    });

    let mut router = Router::new()
        .route("/", get(pages::root))
        .route("/login", get(login::signin_form).post(login::signin))
        .route("/login/enroll", get(login::enroll_totp))
        .route(
            "/login/enroll/phone",
            get(login::enroll_phone_form).post(login::enroll_phone),
        )
        .route(
            "/login/totp",
            get(login::totp_form).post(login::totp_verify),
        )
        .route(
            "/login/enroll/passkey",
            get(login::enroll_passkey_form).post(login::enroll_passkey),
        )
        .route(
            "/login/passkey",
            get(login::passkey_form).post(login::passkey_verify),
        )
        .route("/login/sms", get(login::sms_form).post(login::sms_verify))
        .route("/login/sms/send", post(login::sms_send))
        .route(
            "/login/recovery",
            get(login::recovery_form).post(login::recovery_verify),
        )
        .route("/step-up", post(login::step_up))
        .route("/logout", post(login::logout))
        .route("/home", get(pages::home))
        .route("/billing", get(pages::billing))
        .route("/admin", get(pages::admin))
        .route("/admin/policy", post(pages::admin_policy))
        .route("/admin/unlock", post(pages::admin_unlock))
        .route("/static/style.css", get(pages::style))
        .route("/static/passkey.js", get(pages::passkey_script))
        .route("/favicon.ico", get(pages::favicon));
    if demo {
        router = router
            .route("/dev/sms", get(pages::inbox))
            .route("/dev/sms/webhook", post(pages::inbox_webhook));
    }
    let router = router
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(pages::security_headers))
        .with_state(app);

    let bind = env("MFA_WEB_BIND", "127.0.0.1");
    let port = env("MFA_WEB_PORT", "8080");
    let listener = match tokio::net::TcpListener::bind(format!("{bind}:{port}")).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mfa-webapp: cannot listen on {bind}:{port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!(
        "mfa-webapp: listening on http://{bind}:{port}/{}",
        if demo { " (demo mode)" } else { "" }
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("signal");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        })
        .await
        .expect("server");
}
