//! Sign-in, the second step, step-up and sign-out: the calls into mfa an application makes.

use axum::extract::{Form, Query};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use std::collections::HashMap;

use crate::db::{self, call, Fail};
use crate::web::{
    device_cookie_name, device_name, internal_error, message_for, notice_for, random_token, sha256,
    Ctx, Pending, LOGIN_COOKIE, SESSION_COOKIE,
};

type Fields = HashMap<String, String>;

fn field<'a>(f: &'a Fields, k: &str) -> &'a str {
    f.get(k).map(|s| s.trim()).unwrap_or("")
}

fn internal(e: Fail) -> Response {
    if let Fail::Internal(msg) = &e {
        eprintln!("mfa-webapp: {msg}");
    }
    internal_error()
}

/// An argon2id hash of a password nobody has: checked when the user does not exist, so that the
/// answer takes as long as for a wrong password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$7kMxp9T0Bzb6oMBbaR8Ql5cvQ+zMiJTT1Mu+zlV0pSY";

async fn password_ok(hash: Option<String>, password: String) -> bool {
    let known = hash.is_some();
    let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_string());
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        let ok = PasswordHash::new(&hash)
            .map(|h| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        ok && known
    })
    .await
    .unwrap_or(false)
}

pub async fn signin_form(ctx: Ctx, Query(q): Query<Fields>) -> Response {
    let notice = q.get("n").and_then(|n| notice_for(n));
    let org = q.get("organization").cloned().unwrap_or_default();
    ctx.page(
        StatusCode::OK,
        "signin.html",
        json!({"title": "Sign in", "notice": notice, "organization": org}),
    )
}

fn signin_error(ctx: Ctx, f: &Fields, error: String) -> Response {
    ctx.page(
        StatusCode::OK,
        "signin.html",
        json!({"title": "Sign in", "error": error,
               "organization": field(f, "organization"), "email": field(f, "email")}),
    )
}

/// The first step: the application's own password check, then `mfa.primary_authenticate`.
pub async fn signin(mut ctx: Ctx, Form(f): Form<Fields>) -> Response {
    if !ctx.csrf_ok(&f) {
        return ctx.forbidden();
    }
    let org = field(&f, "organization").to_lowercase();
    let email = field(&f, "email").to_lowercase();
    let password = f.get("password").cloned().unwrap_or_default();
    let hash: Option<String> = match ctx.app.db.get().await {
        Ok(c) => match c
            .query_opt(
                "SELECT password_hash FROM app.users WHERE organization_id = $1 AND email = $2",
                &[&org, &email],
            )
            .await
        {
            Ok(row) => row.map(|r| r.get(0)),
            Err(e) => return internal(e.into()),
        },
        Err(e) => return internal(e.into()),
    };
    if org.is_empty() || email.is_empty() || !password_ok(hash, password).await {
        return signin_error(
            ctx,
            &f,
            "The organization, email or password is wrong.".into(),
        );
    }

    // A remembered device presents its token; mfa rotates it (a copy presented later revokes all).
    let device_cookie = device_cookie_name(&org, &email);
    let device_token = ctx
        .cookies
        .get(&device_cookie)
        .cloned()
        .filter(|t| !t.is_empty());
    let answer = match call(
        &ctx.app.db,
        "SELECT mfa.primary_authenticate($1, $2, 'password', 'en', device_token => $3)",
        &[&org, &email, &device_token],
    )
    .await
    {
        Ok(v) => v,
        Err(Fail::Refused(kind)) => return signin_error(ctx, &f, message_for(&kind, "login")),
        Err(e) => return internal(e),
    };
    if let Some(new_device_token) = db::s(&answer, "device_token") {
        ctx.set_cookie(&device_cookie, &new_device_token, Some(90 * 86400));
    }
    let Some(token) = db::s(&answer, "intermediate_session_token") else {
        return internal(Fail::Internal(
            "primary_authenticate answered no token".into(),
        ));
    };
    if answer.get("member_authenticated") == Some(&Value::Bool(true)) {
        // The organization's policy is met already (MFA optional, or a remembered device).
        return finish_login(ctx, &org, &email, &token, false).await;
    }
    let options = &answer["mfa_required"]["member_options"];
    let pending = Pending {
        organization_id: org,
        member_id: email,
        token,
        purpose: "login".into(),
        masked_phone: db::s(options, "mfa_phone_number"),
        has_totp: options
            .get("totp_registration_id")
            .is_some_and(|v| !v.is_null()),
        has_passkey: options["webauthn_registrations"]
            .as_i64()
            .is_some_and(|n| n > 0),
        next: "/home".into(),
    };
    let initiated = db::s(&answer["mfa_required"], "secondary_auth_initiated");
    second_step(ctx, pending, initiated).await
}

/// Sends the member to the second step their factors call for.
async fn second_step(mut ctx: Ctx, pending: Pending, initiated: Option<String>) -> Response {
    ctx.set_pending(&pending);
    // The phishing-resistant factor first, when the member has one.
    if pending.has_passkey {
        return ctx.redirect("/login/passkey");
    }
    if pending.has_totp {
        return ctx.redirect("/login/totp");
    }
    if pending.masked_phone.is_some() {
        if initiated.as_deref() == Some("sms_otp") {
            return ctx.redirect("/login/sms");
        }
        return match send_sms(&ctx, &pending, None).await {
            Ok(()) => ctx.redirect("/login/sms"),
            Err(Fail::Refused(kind)) => ctx.redirect(&format!("/login/sms?e={kind}")),
            Err(e) => internal(e),
        };
    }
    if pending.purpose == "step_up" {
        return ctx.redirect("/billing?e=no_factor");
    }
    ctx.redirect("/login/enroll")
}

async fn send_sms(ctx: &Ctx, p: &Pending, phone: Option<&str>) -> db::R<()> {
    call(
        &ctx.app.db,
        "SELECT mfa.otp_sms_send($1, $2, $3, 'en', $4)",
        &[&p.organization_id, &p.member_id, &phone, &p.token],
    )
    .await
    .map(|_| ())
}

/// Enforced enrollment of an authenticator app: the QR code, the secret, the recovery codes —
/// shown this once (the page is not cached), then a code from the app.
pub async fn enroll_totp(ctx: Ctx) -> Response {
    let Some(p) = ctx.pending() else {
        return ctx.redirect("/login");
    };
    let answer = call(
        &ctx.app.db,
        "SELECT mfa.totp_create($1, $2, 10, $3)",
        &[&p.organization_id, &p.member_id, &p.token],
    )
    .await;
    match answer {
        Ok(v) => ctx.page(
            StatusCode::OK,
            "enroll_totp.html",
            json!({
                "title": "Set up an authenticator app",
                "qr_code": v["qr_code"], "recovery_codes": v["recovery_codes"],
                "secret_grouped": grouped(v["secret"].as_str().unwrap_or("")),
                "member_id": p.member_id,
            }),
        ),
        // An organization restricted to SMS: the phone is the way to enroll.
        Err(Fail::Refused(kind)) if kind == "operation_restricted_by_organization_mfa_methods" => {
            ctx.redirect("/login/enroll/phone")
        }
        Err(Fail::Refused(kind)) if kind == "pending_totp_exists" => code_page(ctx, &p, "totp", Some(message_for(&kind, "")), None),
        Err(Fail::Refused(kind)) => ctx.page(
            StatusCode::OK,
            "message.html",
            json!({"title": "Sign in", "heading": "Set up an authenticator app", "error": message_for(&kind, ""), "restart": true}),
        ),
        Err(e) => internal(e),
    }
}

/// The secret in groups of four, as people type it (authenticator apps ignore the spaces).
fn grouped(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn enroll_phone_form(ctx: Ctx) -> Response {
    let Some(p) = ctx.pending() else {
        return ctx.redirect("/login");
    };
    ctx.page(
        StatusCode::OK,
        "enroll_phone.html",
        json!({"title": "Add your phone", "member_id": p.member_id}),
    )
}

pub async fn enroll_phone(mut ctx: Ctx, Form(f): Form<Fields>) -> Response {
    if !ctx.csrf_ok(&f) {
        return ctx.forbidden();
    }
    let Some(mut p) = ctx.pending() else {
        return ctx.redirect("/login");
    };
    let phone = field(&f, "phone").to_string();
    match send_sms(&ctx, &p, Some(&phone)).await {
        Ok(()) => {
            let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
            let tail = &digits[digits.len().saturating_sub(4)..];
            p.masked_phone = Some(format!("+*******{tail}"));
            ctx.set_pending(&p);
            ctx.redirect("/login/sms")
        }
        Err(Fail::Refused(kind)) => ctx.page(
            StatusCode::OK,
            "enroll_phone.html",
            json!({"title": "Add your phone", "member_id": p.member_id, "phone": phone,
                   "error": message_for(&kind, "send")}),
        ),
        Err(e) => internal(e),
    }
}

/// The code form of a second step: kind is "totp", "sms" or "recovery".
fn code_page(
    ctx: Ctx,
    p: &Pending,
    kind: &str,
    error: Option<String>,
    notice: Option<&str>,
) -> Response {
    let step_up = p.purpose == "step_up";
    let title = match (kind, step_up) {
        (_, true) => "Confirm it's you",
        ("totp", _) => "Authenticator app",
        ("sms", _) => "Text message",
        _ => "Recovery code",
    };
    ctx.page(
        StatusCode::OK,
        "code.html",
        json!({
            "title": title, "kind": kind, "step_up": step_up, "error": error, "notice": notice,
            "masked_phone": p.masked_phone, "has_totp": p.has_totp, "member_id": p.member_id,
            "has_passkey": p.has_passkey,
        }),
    )
}

fn code_form(ctx: Ctx, q: &Fields, kind: &str) -> Response {
    let Some(p) = ctx.pending() else {
        return ctx.redirect("/login");
    };
    let error = q
        .get("e")
        .map(|e| message_for(e, if kind == "sms" { "send" } else { "" }));
    let notice = q.get("n").and_then(|n| notice_for(n));
    code_page(ctx, &p, kind, error, notice)
}

pub async fn totp_form(ctx: Ctx, Query(q): Query<Fields>) -> Response {
    code_form(ctx, &q, "totp")
}
pub async fn sms_form(ctx: Ctx, Query(q): Query<Fields>) -> Response {
    code_form(ctx, &q, "sms")
}
pub async fn recovery_form(ctx: Ctx, Query(q): Query<Fields>) -> Response {
    code_form(ctx, &q, "recovery")
}

pub async fn totp_verify(ctx: Ctx, Form(f): Form<Fields>) -> Response {
    verify(ctx, f, "totp").await
}
pub async fn sms_verify(ctx: Ctx, Form(f): Form<Fields>) -> Response {
    verify(ctx, f, "sms").await
}
pub async fn recovery_verify(ctx: Ctx, Form(f): Form<Fields>) -> Response {
    verify(ctx, f, "recovery").await
}

/// Checks the code with mfa; a success records the factor on the login's token.
async fn verify(ctx: Ctx, f: Fields, kind: &str) -> Response {
    if !ctx.csrf_ok(&f) {
        return ctx.forbidden();
    }
    let Some(p) = ctx.pending() else {
        return ctx.redirect("/login");
    };
    let code = field(&f, "code").replace(' ', "");
    // A login enrolls the factor it proves (enforced enrollment); a step-up changes nothing.
    let enroll: Option<&str> = if p.purpose == "login" {
        Some("enroll")
    } else {
        None
    };
    let (sql, params): (&str, Vec<&(dyn tokio_postgres::types::ToSql + Sync)>) = match kind {
        "totp" => (
            "SELECT mfa.totp_authenticate($1, $2, $3, $4, $5)",
            vec![&p.organization_id, &p.member_id, &code, &p.token, &enroll],
        ),
        "sms" => (
            "SELECT mfa.otp_sms_authenticate($1, $2, $3, $4, $5)",
            vec![&p.organization_id, &p.member_id, &code, &p.token, &enroll],
        ),
        _ => (
            "SELECT mfa.recovery_codes_recover($1, $2, $3, $4)",
            vec![&p.organization_id, &p.member_id, &code, &p.token],
        ),
    };
    match call(&ctx.app.db, sql, &params).await {
        Ok(_) => {
            let remember = p.purpose == "login" && f.contains_key("remember");
            if p.purpose == "step_up" {
                finish_step_up(ctx, &p).await
            } else {
                finish_login(ctx, &p.organization_id, &p.member_id, &p.token, remember).await
            }
        }
        Err(Fail::Refused(kind_of)) => {
            code_page(ctx, &p, kind, Some(message_for(&kind_of, "check")), None)
        }
        Err(e) => internal(e),
    }
}

/// The passkey page: the options of `mfa.webauthn_register_start` (enrollment) or
/// `webauthn_authenticate_start` (sign-in, step-up), handed to the page's script.
async fn passkey_page(ctx: Ctx, p: &Pending, register: bool, error: Option<String>) -> Response {
    let domain = ctx.app.config.passkey_domain.clone();
    let answer = if register {
        call(
            &ctx.app.db,
            "SELECT mfa.webauthn_register_start($1, $2, $3, $4, user_agent => $5)",
            &[
                &p.organization_id,
                &p.member_id,
                &domain,
                &p.token,
                &device_name(&ctx.user_agent),
            ],
        )
        .await
        .map(|v| v["public_key_credential_creation_options"].clone())
    } else {
        call(
            &ctx.app.db,
            "SELECT mfa.webauthn_authenticate_start($1, $2, $3, $4)",
            &[&p.organization_id, &p.member_id, &domain, &p.token],
        )
        .await
        .map(|v| v["public_key_credential_request_options"].clone())
    };
    let (options, error) = match answer {
        Ok(options) => (Some(options.to_string()), error),
        Err(Fail::Refused(kind)) => (None, Some(message_for(&kind, ""))),
        Err(e) => return internal(e),
    };
    ctx.page(
        StatusCode::OK,
        "passkey.html",
        json!({
            "title": if register { "Create a passkey" } else { "Passkey" },
            "ceremony": if register { "register" } else { "authenticate" },
            "action": if register { "/login/enroll/passkey" } else { "/login/passkey" },
            "options": options, "error": error, "step_up": p.purpose == "step_up",
            "member_id": p.member_id, "has_totp": p.has_totp, "masked_phone": p.masked_phone,
        }),
    )
}

pub async fn passkey_form(ctx: Ctx) -> Response {
    let Some(p) = ctx.pending() else {
        return ctx.redirect("/login");
    };
    passkey_page(ctx, &p, false, None).await
}

pub async fn enroll_passkey_form(ctx: Ctx) -> Response {
    let Some(p) = ctx.pending() else {
        return ctx.redirect("/login");
    };
    passkey_page(ctx, &p, true, None).await
}

/// The browser's credential (`credential.toJSON()`), as the form posted it.
fn posted_credential(f: &Fields) -> Value {
    serde_json::from_str(f.get("credential").map(String::as_str).unwrap_or(""))
        .unwrap_or(Value::Null)
}

/// A passkey's signature as the second factor: verified by mfa, in the login's transaction.
pub async fn passkey_verify(ctx: Ctx, Form(f): Form<Fields>) -> Response {
    if !ctx.csrf_ok(&f) {
        return ctx.forbidden();
    }
    let Some(p) = ctx.pending() else {
        return ctx.redirect("/login");
    };
    let enroll: Option<&str> = (p.purpose == "login").then_some("enroll");
    let answer = call(
        &ctx.app.db,
        "SELECT mfa.webauthn_authenticate($1, $2, $3, $4, $5)",
        &[
            &p.organization_id,
            &p.member_id,
            &posted_credential(&f),
            &p.token,
            &enroll,
        ],
    )
    .await;
    match answer {
        Ok(_) if p.purpose == "step_up" => finish_step_up(ctx, &p).await,
        Ok(_) => {
            let remember = f.contains_key("remember");
            finish_login(ctx, &p.organization_id, &p.member_id, &p.token, remember).await
        }
        Err(Fail::Refused(kind)) => {
            passkey_page(ctx, &p, false, Some(message_for(&kind, "check"))).await
        }
        Err(e) => internal(e),
    }
}

/// Enforced enrollment of a passkey: verified and stored by mfa, a second factor of this login.
/// The member's first passkey comes with recovery codes, shown this once after the session exists.
pub async fn enroll_passkey(ctx: Ctx, Form(f): Form<Fields>) -> Response {
    if !ctx.csrf_ok(&f) {
        return ctx.forbidden();
    }
    let Some(p) = ctx.pending() else {
        return ctx.redirect("/login");
    };
    let answer = call(
        &ctx.app.db,
        "SELECT mfa.webauthn_register($1, $2, $3, $4, 'enroll')",
        &[
            &p.organization_id,
            &p.member_id,
            &posted_credential(&f),
            &p.token,
        ],
    )
    .await;
    let registered = match answer {
        Ok(v) => v,
        Err(Fail::Refused(kind)) => {
            return passkey_page(ctx, &p, true, Some(message_for(&kind, "check"))).await
        }
        Err(e) => return internal(e),
    };
    let (ctx, next) =
        match create_session(ctx, &p.organization_id, &p.member_id, &p.token, false).await {
            Ok(done) => done,
            Err(response) => return response,
        };
    match registered["recovery_codes"].as_array() {
        Some(codes) if !codes.is_empty() => ctx.page(
            StatusCode::OK,
            "recovery_codes.html",
            json!({"title": "Your passkey is ready", "recovery_codes": codes,
                   "member_id": p.member_id, "next": next}),
        ),
        _ => ctx.redirect(&next),
    }
}

pub async fn sms_send(ctx: Ctx, Form(f): Form<Fields>) -> Response {
    if !ctx.csrf_ok(&f) {
        return ctx.forbidden();
    }
    let Some(p) = ctx.pending() else {
        return ctx.redirect("/login");
    };
    match send_sms(&ctx, &p, None).await {
        Ok(()) => ctx.redirect("/login/sms?n=sent"),
        Err(Fail::Refused(kind)) => ctx.redirect(&format!("/login/sms?e={kind}")),
        Err(e) => internal(e),
    }
}

/// The session insert, then the next page.
async fn finish_login(ctx: Ctx, org: &str, member: &str, token: &str, remember: bool) -> Response {
    match create_session(ctx, org, member, token, remember).await {
        Ok((ctx, next)) => ctx.redirect(&next),
        Err(response) => response,
    }
}

/// The session insert: mfa's guard lets it in only with a token that carries what the
/// organization's policy demands, consumes the token and writes the factors itself. Returns
/// where to go next, or the page that says why there is no session.
async fn create_session(
    mut ctx: Ctx,
    org: &str,
    member: &str,
    token: &str,
    remember: bool,
) -> Result<(Ctx, String), Response> {
    let session_token = random_token();
    let client = match ctx.app.db.get().await {
        Ok(c) => c,
        Err(e) => return Err(internal(e.into())),
    };
    let inserted = client
        .execute(
            "INSERT INTO app.sessions (token_hash, organization_id, member_id, intermediate_session_token)
             VALUES ($1, $2, $3, $4)",
            &[&sha256(&session_token), &org, &member, &token],
        )
        .await;
    if let Err(e) = inserted {
        return Err(match Fail::from(e) {
            Fail::Refused(kind) => ctx.page(
                StatusCode::OK,
                "message.html",
                json!({"title": "Sign in", "heading": "Sign-in not complete", "error": message_for(&kind, ""), "restart": true}),
            ),
            e => internal(e),
        });
    }
    let mut next = "/home".to_string();
    if remember {
        let answer = db::check(
            match client
                .query_one(
                    "SELECT mfa.remembered_device_create($1, $2, $3, device_name => $4)",
                    &[&org, &member, &token, &device_name(&ctx.user_agent)],
                )
                .await
            {
                Ok(row) => row.get(0),
                Err(e) => match Fail::from(e) {
                    Fail::Refused(kind) => json!({"status_code": 400, "error_type": kind}),
                    e => return Err(internal(e)),
                },
            },
        );
        match answer {
            Ok(v) => {
                if let Some(device_token) = db::s(&v, "device_token") {
                    // The cookie lives as long as the organization remembers (90 days at most);
                    // mfa enforces the real expiry.
                    ctx.set_cookie(
                        &device_cookie_name(org, member),
                        &device_token,
                        Some(90 * 86400),
                    );
                    next = "/home?n=remembered".into();
                }
            }
            Err(Fail::Refused(kind)) => next = format!("/home?e={kind}"),
            Err(e) => return Err(internal(e)),
        }
    }
    ctx.set_cookie(SESSION_COOKIE, &session_token, None);
    ctx.clear_cookie(LOGIN_COOKIE);
    Ok((ctx, next))
}

/// Step-up: the new token, with its fresh second factor, written into the session row.
async fn finish_step_up(mut ctx: Ctx, p: &Pending) -> Response {
    let Some(session_token) = ctx.cookies.get(SESSION_COOKIE).cloned() else {
        return ctx.redirect("/login?n=session_ended");
    };
    let client = match ctx.app.db.get().await {
        Ok(c) => c,
        Err(e) => return internal(e.into()),
    };
    let updated = client
        .execute(
            "UPDATE app.sessions SET intermediate_session_token = $1
              WHERE token_hash = $2 AND organization_id = $3 AND member_id = $4",
            &[
                &p.token,
                &sha256(&session_token),
                &p.organization_id,
                &p.member_id,
            ],
        )
        .await;
    ctx.clear_cookie(LOGIN_COOKIE);
    match updated {
        Ok(1) => {
            let next = if p.next.starts_with('/') && !p.next.starts_with("//") {
                p.next.clone()
            } else {
                "/home".into()
            };
            ctx.redirect(&next)
        }
        Ok(_) => ctx.redirect("/login?n=session_ended"),
        Err(e) => match Fail::from(e) {
            Fail::Refused(kind) => ctx.redirect(&format!("/billing?e={kind}")),
            e => internal(e),
        },
    }
}

/// Starts a step-up of the signed-in session (`mfa.step_up_start`), then the usual second step.
pub async fn step_up(ctx: Ctx, Form(f): Form<Fields>) -> Response {
    if !ctx.csrf_ok(&f) {
        return ctx.forbidden();
    }
    let Some(session) = crate::pages::current_session(&ctx).await else {
        let mut ctx = ctx;
        ctx.clear_cookie(SESSION_COOKIE);
        return ctx.redirect("/login?n=session_ended");
    };
    let answer = match call(
        &ctx.app.db,
        "SELECT mfa.step_up_start($1, $2, 'en')",
        &[&session.organization_id, &session.member_id],
    )
    .await
    {
        Ok(v) => v,
        Err(Fail::Refused(kind)) => return ctx.redirect(&format!("/billing?e={kind}")),
        Err(e) => return internal(e),
    };
    let Some(token) = db::s(&answer, "intermediate_session_token") else {
        return internal(Fail::Internal("step_up_start answered no token".into()));
    };
    let options = &answer["mfa_required"]["member_options"];
    let pending = Pending {
        organization_id: session.organization_id,
        member_id: session.member_id,
        token,
        purpose: "step_up".into(),
        masked_phone: db::s(options, "mfa_phone_number"),
        has_totp: options
            .get("totp_registration_id")
            .is_some_and(|v| !v.is_null()),
        has_passkey: options["webauthn_registrations"]
            .as_i64()
            .is_some_and(|n| n > 0),
        next: "/billing".into(),
    };
    let initiated = db::s(&answer["mfa_required"], "secondary_auth_initiated");
    second_step(ctx, pending, initiated).await
}

pub async fn logout(mut ctx: Ctx, Form(f): Form<Fields>) -> Response {
    if !ctx.csrf_ok(&f) {
        return ctx.forbidden();
    }
    if let Some(token) = ctx.cookies.get(SESSION_COOKIE).cloned() {
        match ctx.app.db.get().await {
            Ok(c) => {
                if let Err(e) = c
                    .execute(
                        "DELETE FROM app.sessions WHERE token_hash = $1",
                        &[&sha256(&token)],
                    )
                    .await
                {
                    return internal(e.into());
                }
            }
            Err(e) => return internal(e.into()),
        }
    }
    ctx.clear_cookie(SESSION_COOKIE);
    ctx.clear_cookie(LOGIN_COOKIE);
    ctx.redirect("/login?n=signed_out")
}
