//! Signed-in pages (home, billing, admin), the development SMS inbox and the demo's seed.

use axum::body::Bytes;
use axum::extract::{Form, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashMap;

use crate::db::{call, Fail};
use crate::web::{internal_error, message_for, notice_for, sha256, Ctx, SESSION_COOKIE};
use crate::SmsMessage;

type Fields = HashMap<String, String>;

fn internal(e: Fail) -> Response {
    if let Fail::Internal(msg) = &e {
        eprintln!("mfa-webapp: {msg}");
    }
    internal_error()
}

pub struct Session {
    pub organization_id: String,
    pub member_id: String,
    pub display_name: String,
    pub is_admin: bool,
    pub aal: String,
    pub last_mfa_at: Option<String>,
    pub factors: Value,
}

const TIME: &str = "'YYYY-MM-DD HH24:MI:SS \"UTC\"'";

/// The session the cookie names, with what mfa verifies of it (the three-argument forms check the
/// gate's seal).
pub async fn current_session(ctx: &Ctx) -> Option<Session> {
    let token = ctx.cookies.get(SESSION_COOKIE)?;
    let client = ctx.app.db.get().await.ok()?;
    let sql = format!(
        "UPDATE app.sessions s SET last_seen_at = now() FROM app.users u
          WHERE s.token_hash = $1 AND u.organization_id = s.organization_id AND u.email = s.member_id
      RETURNING s.organization_id, s.member_id, u.display_name, u.is_admin,
                mfa.session_aal(s.organization_id, s.member_id, s.authentication_factors),
                to_char(mfa.last_mfa_at(s.organization_id, s.member_id, s.authentication_factors) AT TIME ZONE 'UTC', {TIME}),
                (SELECT coalesce(jsonb_agg(jsonb_build_object(
                            'type', CASE f ->> 'type' WHEN 'webauthn' THEN 'passkey' WHEN 'totp' THEN 'authenticator app'
                                                    WHEN 'otp' THEN 'text message' WHEN 'recovery_codes' THEN 'recovery code'
                                                    WHEN 'remembered_device' THEN 'remembered device'
                                                    ELSE f ->> 'type' END,
                            'delivery_method', f ->> 'delivery_method',
                            'at', to_char((f ->> 'last_authenticated_at')::timestamptz AT TIME ZONE 'UTC', {TIME}))), '[]')
                   FROM jsonb_array_elements(mfa.session_verified_factors(s.organization_id, s.member_id, s.authentication_factors)) f)"
    );
    let row = client.query_opt(&sql, &[&sha256(token)]).await;
    match row {
        Ok(Some(r)) => Some(Session {
            organization_id: r.get(0),
            member_id: r.get(1),
            display_name: r.get(2),
            is_admin: r.get(3),
            aal: r.get(4),
            last_mfa_at: r.get(5),
            factors: r.get(6),
        }),
        Ok(None) => None,
        Err(e) => {
            eprintln!("mfa-webapp: session lookup: {:?}", Fail::from(e));
            None
        }
    }
}

/// A page that needs a session: a cookie whose session is gone (signed out elsewhere, deleted)
/// signs the browser out.
macro_rules! session_or_login {
    ($ctx:ident) => {
        match current_session(&$ctx).await {
            Some(s) => s,
            None => {
                let mut ctx = $ctx;
                let had = ctx.cookies.contains_key(SESSION_COOKIE);
                ctx.clear_cookie(SESSION_COOKIE);
                return ctx.redirect(if had {
                    "/login?n=session_ended"
                } else {
                    "/login"
                });
            }
        }
    };
}

fn user_json(s: &Session) -> Value {
    json!({"name": s.display_name, "member_id": s.member_id, "organization_id": s.organization_id, "is_admin": s.is_admin})
}

pub async fn root(ctx: Ctx) -> Response {
    if ctx.cookies.contains_key(SESSION_COOKIE) {
        ctx.redirect("/home")
    } else {
        ctx.redirect("/login")
    }
}

pub async fn home(ctx: Ctx, Query(q): Query<Fields>) -> Response {
    let s = session_or_login!(ctx);
    let devices = call(
        &ctx.app.db,
        "SELECT mfa.remembered_devices_get($1, $2)",
        &[&s.organization_id, &s.member_id],
    )
    .await
    .map(|v| v["remembered_devices"].clone())
    .unwrap_or(Value::Null);
    let recovery = call(
        &ctx.app.db,
        "SELECT mfa.recovery_codes_get($1, $2)",
        &[&s.organization_id, &s.member_id],
    )
    .await
    .ok()
    .and_then(|v| v.get("recovery_codes_remaining").cloned());
    let error = q.get("e").map(|e| message_for(e, ""));
    let notice = q.get("n").and_then(|n| notice_for(n));
    ctx.page(
        StatusCode::OK,
        "home.html",
        json!({
            "title": "Home", "user": user_json(&s), "aal": s.aal, "last_mfa_at": s.last_mfa_at,
            "factors": s.factors, "devices": devices, "recovery_remaining": recovery,
            "error": error, "notice": notice,
        }),
    )
}

/// The sensitive page: its rows are behind an RLS policy on `mfa.last_mfa_at(…)`; the session's
/// cookie token goes in as a setting, so the policy finds the session by its hash.
pub async fn billing(ctx: Ctx, Query(q): Query<Fields>) -> Response {
    let s = session_or_login!(ctx);
    let token = ctx.cookies.get(SESSION_COOKIE).cloned().unwrap_or_default();
    let mut client = match ctx.app.db.get().await {
        Ok(c) => c,
        Err(e) => return internal(e.into()),
    };
    let rows = async {
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT set_config('app.session_token', $1, true), set_config('app.step_up_seconds', $2, true)",
            &[&token, &ctx.app.config.step_up_seconds.to_string()],
        )
        .await?;
        let rows = tx
            .query(
                "SELECT period, to_char(amount_cents / 100.0, 'FM999G999G990D00'), card
                   FROM app.billing WHERE organization_id = $1 ORDER BY invoice_id",
                &[&s.organization_id],
            )
            .await?;
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(rows)
    }
    .await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return internal(e.into()),
    };
    let invoices: Vec<Value> = rows
        .iter()
        .map(|r| json!({"period": r.get::<_, String>(0), "amount": r.get::<_, String>(1), "card": r.get::<_, String>(2)}))
        .collect();
    let error = q.get("e").map(|e| message_for(e, ""));
    let minutes = ctx.app.config.step_up_seconds.div_ceil(60);
    let window = if ctx.app.config.step_up_seconds % 60 == 0 {
        format!("{minutes} minutes")
    } else {
        format!("{} seconds", ctx.app.config.step_up_seconds)
    };
    ctx.page(
        StatusCode::OK,
        "billing.html",
        json!({"title": "Billing", "user": user_json(&s), "invoices": invoices,
               "refused": invoices.is_empty(), "window": window, "error": error}),
    )
}

async fn require_admin(ctx: &Ctx) -> Option<Session> {
    current_session(ctx).await.filter(|s| s.is_admin)
}

/// The organization admin page (the admin pool, in mfa_admin, is used here only).
pub async fn admin(ctx: Ctx, Query(q): Query<Fields>) -> Response {
    let s = session_or_login!(ctx);
    if !s.is_admin {
        return ctx.page(
            StatusCode::FORBIDDEN,
            "message.html",
            json!({"title": "Admin", "user": user_json(&s), "heading": "Administrators only",
                   "error": "Only your organization's administrators can open this page."}),
        );
    }
    let org = match call(
        &ctx.app.admin_db,
        "SELECT mfa.organization_get($1)",
        &[&s.organization_id],
    )
    .await
    {
        Ok(v) => v,
        Err(e) => return internal(e),
    };
    let users = match ctx.app.db.get().await {
        Ok(c) => match c
            .query(
                "SELECT email, display_name, is_admin FROM app.users WHERE organization_id = $1 ORDER BY email",
                &[&s.organization_id],
            )
            .await
        {
            Ok(rows) => rows,
            Err(e) => return internal(e.into()),
        },
        Err(e) => return internal(e.into()),
    };
    let mut members = Vec::new();
    for u in &users {
        let email: String = u.get(0);
        let m = call(
            &ctx.app.admin_db,
            "SELECT mfa.member_get($1, $2)",
            &[&s.organization_id, &email],
        )
        .await
        .unwrap_or(Value::Null);
        let phone = m["mfa_phone_number"].as_str().map(|p| {
            let tail = &p[p.len().saturating_sub(4)..];
            format!("•••• {tail}")
        });
        members.push(json!({
            "email": email, "name": u.get::<_, String>(1), "is_admin": u.get::<_, bool>(2),
            "known": !m.is_null(),
            "totp": !m["totp_registration_id"].is_null(), "phone": phone,
            "phone_verified": m["mfa_phone_number_verified"], "enrolled": m["mfa_enrolled"],
            "locked": m["is_locked"], "lock_expires_at": m["lock_expires_at"].as_str().map(|t| t.chars().take(16).collect::<String>().replace('T', " ")),
        }));
    }
    let allowed: Vec<String> = org["allowed_mfa_methods"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let restricted = org["mfa_methods"] == "RESTRICTED";
    ctx.page(
        StatusCode::OK,
        "admin.html",
        json!({
            "title": "Organization", "user": user_json(&s), "org": org, "members": members,
            "allow_totp": !restricted || allowed.iter().any(|m| m == "totp"),
            "allow_sms": !restricted || allowed.iter().any(|m| m == "sms_otp"),
            "error": q.get("e").map(|e| message_for(e, "")), "notice": q.get("n").and_then(|n| notice_for(n)),
        }),
    )
}

pub async fn admin_policy(ctx: Ctx, Form(f): Form<Fields>) -> Response {
    if !ctx.csrf_ok(&f) {
        return ctx.forbidden();
    }
    let Some(s) = require_admin(&ctx).await else {
        return ctx.redirect("/login");
    };
    let policy = f.get("mfa_policy").cloned().unwrap_or_default();
    let totp = f.contains_key("allow_totp");
    let sms = f.contains_key("allow_sms");
    let (methods, allowed): (&str, Option<Vec<String>>) = match (totp, sms) {
        (true, true) => ("ALL_ALLOWED", Some(vec![])),
        (true, false) => ("RESTRICTED", Some(vec!["totp".into()])),
        (false, true) => ("RESTRICTED", Some(vec!["sms_otp".into()])),
        (false, false) => return ctx.redirect("/admin?e=invalid_organization_allowed_mfa_methods"),
    };
    let Ok(days) = f
        .get("remember_device_days")
        .map(|d| d.trim())
        .unwrap_or("0")
        .parse::<i32>()
    else {
        return ctx.redirect("/admin?e=invalid_remember_device_days");
    };
    match call(
        &ctx.app.admin_db,
        "SELECT mfa.organization_upsert($1, $2, $3, $4, $5)",
        &[&s.organization_id, &policy, &methods, &allowed, &days],
    )
    .await
    {
        Ok(_) => ctx.redirect("/admin?n=saved"),
        Err(Fail::Refused(kind)) => ctx.redirect(&format!("/admin?e={kind}")),
        Err(e) => internal(e),
    }
}

pub async fn admin_unlock(ctx: Ctx, Form(f): Form<Fields>) -> Response {
    if !ctx.csrf_ok(&f) {
        return ctx.forbidden();
    }
    let Some(s) = require_admin(&ctx).await else {
        return ctx.redirect("/login");
    };
    let member = f.get("member_id").cloned().unwrap_or_default();
    // Only a user of the admin's own organization.
    let known = match ctx.app.db.get().await {
        Ok(c) => c
            .query_opt(
                "SELECT 1 FROM app.users WHERE organization_id = $1 AND email = $2",
                &[&s.organization_id, &member],
            )
            .await
            .map(|r| r.is_some())
            .unwrap_or(false),
        Err(e) => return internal(e.into()),
    };
    if !known {
        return ctx.redirect("/admin?e=member_not_found");
    }
    match call(
        &ctx.app.admin_db,
        "SELECT mfa.member_unlock($1, $2)",
        &[&s.organization_id, &member],
    )
    .await
    {
        Ok(_) => ctx.redirect("/admin?n=unlocked"),
        Err(Fail::Refused(kind)) => ctx.redirect(&format!("/admin?e={kind}")),
        Err(e) => internal(e),
    }
}

/// The development SMS inbox (demo mode only): what the SMS worker's webhook provider posted.
pub async fn inbox(ctx: Ctx) -> Response {
    let messages: Vec<Value> = ctx
        .app
        .inbox
        .lock()
        .expect("inbox")
        .iter()
        .rev()
        .map(|m| json!({"received_at": m.received_at, "to": m.to, "body": m.body}))
        .collect();
    ctx.page(
        StatusCode::OK,
        "inbox.html",
        json!({"title": "SMS inbox", "messages": messages}),
    )
}

/// The webhook the SMS worker posts to (`--provider webhook`): the signature
/// `v1=hex(HMAC-SHA256(secret, "{timestamp}.{body}"))` and a timestamp within five minutes.
pub async fn inbox_webhook(
    axum::extract::State(app): axum::extract::State<std::sync::Arc<crate::App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = app.config.webhook_secret.as_deref() else {
        return (StatusCode::NOT_FOUND, "no inbox").into_response();
    };
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let timestamp: u64 = get("x-mfa-timestamp").parse().unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let valid = signature_ok(secret, timestamp, &body, &get("x-mfa-signature"));
    if !valid || now.abs_diff(timestamp) > 300 {
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "bad body").into_response();
    };
    let id = message["id"].as_i64().unwrap_or(0);
    let received_at = {
        let secs = now % 86400;
        format!(
            "{:02}:{:02}:{:02} UTC",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    };
    let mut inbox = app.inbox.lock().expect("inbox");
    inbox.push_back(SmsMessage {
        received_at,
        to: message["phone_number"].as_str().unwrap_or("").to_string(),
        body: message["body"].as_str().unwrap_or("").to_string(),
    });
    while inbox.len() > 50 {
        inbox.pop_front();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"id": format!("dev-inbox-{id}")}).to_string(),
    )
        .into_response()
}

/// `X-Mfa-Signature: v1=hex(HMAC-SHA256(secret, "{timestamp}.{body}"))`, compared in constant time.
fn signature_ok(secret: &str, timestamp: u64, body: &[u8], header: &str) -> bool {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    header
        .strip_prefix("v1=")
        .and_then(|hex| data_encoding::HEXLOWER.decode(hex.as_bytes()).ok())
        .is_some_and(|sig| mac.verify_slice(&sig).is_ok())
}

pub async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../static/style.css"),
    )
        .into_response()
}

pub async fn passkey_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../static/passkey.js"),
    )
        .into_response()
}

pub async fn favicon() -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'><rect width='16' height='16' rx='4' fill='#3b5bdb'/></svg>",
    )
        .into_response()
}

pub async fn not_found(ctx: Ctx) -> Response {
    ctx.page(
        StatusCode::NOT_FOUND,
        "message.html",
        json!({"title": "Not found", "heading": "Page not found", "error": "There is no page at this address."}),
    )
}

/// Every answer: not cached (pages carry secrets once), not framed, scripts from nowhere.
pub async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `mfa-webapp seed-demo`: the demo's organizations, members, users and invoices (as a superuser,
/// after sql/schema.sql). Password `demo-password` for everyone.
pub async fn seed_demo(url: &str) -> Result<(), String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let hash = {
        use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut OsRng);
        argon2::Argon2::default()
            .hash_password(b"demo-password", &salt)
            .map_err(|e| e.to_string())?
            .to_string()
    };
    let e = |e: tokio_postgres::Error| e.to_string();
    client
        .batch_execute(
            "SELECT mfa.organization_upsert('acme', 'REQUIRED_FOR_ALL', 'ALL_ALLOWED', remember_device_days => 30);
             SELECT mfa.organization_upsert('globex', 'OPTIONAL', 'ALL_ALLOWED', remember_device_days => 0);
             SELECT mfa.member_upsert('acme', 'ann@acme.example');
             SELECT mfa.member_upsert('acme', 'bob@acme.example', '+1 415 555 2671');
             SELECT mfa.member_upsert('acme', 'dana@acme.example');
             SELECT mfa.member_upsert('globex', 'carol@globex.example');
             INSERT INTO app.billing (organization_id, period, amount_cents, card) VALUES
               ('acme', '2026-10', 129900, 'Visa •••• 4242'), ('acme', '2026-11', 129900, 'Visa •••• 4242'),
               ('globex', '2026-11', 49900, 'Mastercard •••• 5100');",
        )
        .await
        .map_err(e)?;
    // The origins whose pages may use passkeys: the demo's (MFA_WEB_SEED_ORIGINS, comma-separated).
    let origins: Vec<String> = std::env::var("MFA_WEB_SEED_ORIGINS")
        .unwrap_or_else(|_| "http://localhost:8080".into())
        .split(',')
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty())
        .collect();
    client
        .execute("SELECT mfa.webauthn_allowed_origins_set($1)", &[&origins])
        .await
        .map_err(e)?;
    for (org, email, name, admin) in [
        ("acme", "ann@acme.example", "Ann Archer", true),
        ("acme", "bob@acme.example", "Bob Baker", false),
        ("acme", "dana@acme.example", "Dana Diaz", false),
        ("globex", "carol@globex.example", "Carol Chen", true),
    ] {
        client
            .execute(
                "INSERT INTO app.users (organization_id, email, password_hash, display_name, is_admin)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (organization_id, email) DO UPDATE SET password_hash = EXCLUDED.password_hash",
                &[&org, &email, &hash, &name, &admin],
            )
            .await
            .map_err(e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::signature_ok;
    use mfa_sms_worker::provider::webhook_signature;

    #[test]
    fn the_inbox_accepts_the_workers_signature_and_nothing_else() {
        let body = br#"{"id":1,"body":"Your verification code is 123456."}"#;
        let good = webhook_signature("s3cret", 1_700_000_000, body);
        assert!(signature_ok("s3cret", 1_700_000_000, body, &good));
        assert!(!signature_ok("other", 1_700_000_000, body, &good));
        assert!(!signature_ok("s3cret", 1_700_000_001, body, &good));
        assert!(!signature_ok("s3cret", 1_700_000_000, b"{}", &good));
        assert!(!signature_ok("s3cret", 1_700_000_000, body, ""));
        assert!(!signature_ok(
            "s3cret",
            1_700_000_000,
            body,
            &good.replace("v1=", "v2=")
        ));
    }
}
