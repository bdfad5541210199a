//! Cookies, CSRF, signed login state, pages and the mapping of mfa's error types to messages.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

use crate::App;

pub const SESSION_COOKIE: &str = "mfa_session";
pub const CSRF_COOKIE: &str = "mfa_csrf";
pub const LOGIN_COOKIE: &str = "mfa_login";

/// 256 random bits, URL-safe base64.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    B64.encode(bytes)
}

pub fn sha256(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes()).to_vec()
}

/// The cookie that holds a member's remembered-device token (one per member, so that two members
/// sharing a browser keep theirs apart).
pub fn device_cookie_name(organization_id: &str, member_id: &str) -> String {
    let digest = Sha256::digest(format!("{organization_id}\n{member_id}").as_bytes());
    format!(
        "mfa_device_{}",
        &data_encoding::HEXLOWER.encode(&digest)[..16]
    )
}

/// A login (or step-up) between its first and its second step. It travels in an HttpOnly cookie
/// signed with the server's key; the intermediate session token in it is the member's own, bound
/// to the member by mfa, and dies with the login (10 minutes).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Pending {
    pub organization_id: String,
    pub member_id: String,
    pub token: String,
    /// "login" or "step_up".
    pub purpose: String,
    pub masked_phone: Option<String>,
    pub has_totp: bool,
    #[serde(default)]
    pub has_passkey: bool,
    pub next: String,
}

/// What every handler needs from the request: its cookies, the CSRF token (made on first visit)
/// and the cookies the answer sets.
pub struct Ctx {
    pub app: Arc<App>,
    pub cookies: HashMap<String, String>,
    pub csrf: String,
    pub set_cookies: Vec<String>,
    pub user_agent: String,
}

impl FromRequestParts<Arc<App>> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let cookies = parse_cookies(&parts.headers);
        let mut set_cookies = Vec::new();
        let csrf = match cookies.get(CSRF_COOKIE) {
            Some(v) if v.len() >= 32 => v.clone(),
            _ => {
                let v = random_token();
                set_cookies.push(cookie_header(
                    CSRF_COOKIE,
                    &v,
                    None,
                    app.config.secure_cookies,
                ));
                v
            }
        };
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Ok(Ctx {
            app: app.clone(),
            cookies,
            csrf,
            set_cookies,
            user_agent,
        })
    }
}

impl Ctx {
    pub fn set_cookie(&mut self, name: &str, value: &str, max_age: Option<i64>) {
        let c = cookie_header(name, value, max_age, self.app.config.secure_cookies);
        self.set_cookies.push(c);
    }
    pub fn clear_cookie(&mut self, name: &str) {
        self.set_cookie(name, "", Some(0));
    }

    /// The form's CSRF field must equal the browser's CSRF cookie (double submit; the cookie is
    /// HttpOnly and SameSite=Lax, so another site can neither read nor send it with a POST).
    pub fn csrf_ok(&self, form: &HashMap<String, String>) -> bool {
        match (self.cookies.get(CSRF_COOKIE), form.get("csrf")) {
            (Some(cookie), Some(field)) if !cookie.is_empty() => {
                cookie.as_bytes().ct_eq(field.as_bytes()).into()
            }
            _ => false,
        }
    }

    pub fn pending(&self) -> Option<Pending> {
        let raw = self.cookies.get(LOGIN_COOKIE)?;
        let (payload, mac) = raw.split_once('.')?;
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.app.cookie_key).ok()?;
        m.update(payload.as_bytes());
        m.verify_slice(&B64.decode(mac).ok()?).ok()?;
        serde_json::from_slice(&B64.decode(payload).ok()?).ok()
    }

    pub fn set_pending(&mut self, pending: &Pending) {
        let payload = B64.encode(serde_json::to_vec(pending).expect("serializes"));
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.app.cookie_key).expect("key");
        m.update(payload.as_bytes());
        let value = format!("{payload}.{}", B64.encode(m.finalize().into_bytes()));
        self.set_cookie(LOGIN_COOKIE, &value, Some(600));
    }

    /// A page rendered from a template, with the context every page needs.
    pub fn page(self, status: StatusCode, template: &str, mut vars: serde_json::Value) -> Response {
        if let Some(obj) = vars.as_object_mut() {
            obj.insert("csrf".into(), self.csrf.clone().into());
            obj.insert("demo".into(), self.app.config.demo.into());
        }
        let html = match self
            .app
            .templates
            .get_template(template)
            .and_then(|t| t.render(&vars))
        {
            Ok(html) => html,
            Err(e) => {
                eprintln!("mfa-webapp: template {template}: {e:#}");
                return internal_error();
            }
        };
        let mut response = (status, axum::response::Html(html)).into_response();
        add_cookies(response.headers_mut(), &self.set_cookies);
        response
    }

    pub fn redirect(self, to: &str) -> Response {
        let mut response =
            (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response();
        add_cookies(response.headers_mut(), &self.set_cookies);
        response
    }

    pub fn forbidden(self) -> Response {
        self.page(
            StatusCode::FORBIDDEN,
            "message.html",
            serde_json::json!({
                "title": "Form expired",
                "heading": "This form has expired",
                "error": "The form was missing its security token or came from another site. Go back, reload the page and try again.",
            }),
        )
    }
}

fn add_cookies(headers: &mut HeaderMap, cookies: &[String]) {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            headers.append(header::SET_COOKIE, v);
        }
    }
}

pub fn internal_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::response::Html(
            "<!doctype html><title>Error</title><link rel=\"icon\" href=\"data:,\"><p>Something went wrong on our side. Try again in a moment.</p>",
        ),
    )
        .into_response()
}

pub fn parse_cookies(headers: &HeaderMap) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for value in headers.get_all(header::COOKIE) {
        if let Ok(s) = value.to_str() {
            for pair in s.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=') {
                    out.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
        }
    }
    out
}

pub fn cookie_header(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

/// A short name for the device being remembered, from its user agent.
pub fn device_name(user_agent: &str) -> String {
    let browser = ["Firefox", "Edg", "Chrome", "Safari"]
        .iter()
        .find(|b| user_agent.contains(*b))
        .map(|b| if *b == "Edg" { "Edge" } else { b })
        .unwrap_or("Browser");
    let os = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("Windows", "Windows"),
        ("Mac OS", "macOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(k, _)| user_agent.contains(k))
    .map(|(_, v)| *v)
    .unwrap_or("unknown system");
    format!("{browser} on {os}")
}

/// Every error_type mfa answers, as a person reads it. `context` tells a send from a check.
pub fn message_for(error_type: &str, context: &str) -> String {
    let m = match (error_type, context) {
        ("too_many_requests", "send") => {
            "A code was sent a moment ago, or too many were sent. Wait 30 seconds, then ask for another."
        }
        ("too_many_requests", _) => "Too many attempts in a short time. Wait a moment, then try again.",
        ("user_lock_limit_reached", _) => {
            "Too many wrong codes: your account is locked for an hour. Ask your organization's administrator to unlock it."
        }
        ("unable_to_authenticate_totp", _) | ("invalid_totp_code", _) | ("expired_totp", _) => {
            "That code is not right. Type the 6-digit code your authenticator app shows now."
        }
        ("totp_code_already_authenticated", _) => "That code was already used. Wait for the next one.",
        ("unable_to_auth_otp_code", _) => "That code is not right. Check the text message, or send a new code.",
        ("otp_code_expired", _) => "That code has expired. Send a new one.",
        ("otp_code_not_found", _) => "No code is waiting for you. Send a new one.",
        ("invalid_recovery_code", _) | ("no_active_recovery_code_backed_factor", _) => {
            "That recovery code is not valid or was already used."
        }
        ("invalid_phone_number", _) => {
            "That phone number is not valid. Type it with its country code, e.g. +1 415 555 0100."
        }
        ("invalid_phone_number_country_code", _) => "Text messages cannot be sent to that country.",
        ("member_phone_number_not_found", _) => "There is no phone number on your account.",
        ("duplicate_member_phone_number", _) => "Your account already has a phone number.",
        ("operation_restricted_by_organization_mfa_methods", _) => {
            "Your organization does not allow this method. Choose another one."
        }
        ("insufficient_factors", _) => "Your sign-in is not complete: prove a second factor first.",
        ("intermediate_session_not_found", _)
        | ("invalid_intermediate_session_token_for_organization", _) => {
            "Your sign-in took too long or was already used. Sign in again."
        }
        ("member_not_found", _) | ("organization_not_found", _) | ("invalid_member_id", _)
        | ("invalid_organization_id", _) => "The organization, email or password is wrong.",
        ("pending_totp_exists", _) => {
            "An authenticator app setup is already under way: type a code from it, or wait ten minutes and sign in again."
        }
        ("active_totp_exists", _) => "You already have an authenticator app.",
        ("totp_not_found", _) => "There is no authenticator app on your account.",
        ("remembered_devices_not_allowed", _) => "Your organization does not remember devices.",
        ("invalid_remember_device_days", _) => "Remembered devices last between 0 and 90 days.",
        ("invalid_organization_mfa_policy", _) | ("invalid_organization_mfa_methods", _)
        | ("invalid_organization_allowed_mfa_methods", _)
        | ("allowed_mfa_methods_required_for_restricted", _) => "Choose a policy and at least one method.",
        ("default_mfa_member_missing_factor", _) => "That member has no such factor.",
        ("no_factor", _) => "This page needs a second factor, and your account has none yet.",
        ("unable_to_auth_webauthn", _) | ("invalid_public_key_credential", _) => {
            "That passkey could not be verified for this site. Try again, or use another method."
        }
        ("invalid_webauthn_challenge", _) => "That passkey prompt has expired. Try again.",
        ("webauthn_clone_suspected", _) => {
            "That passkey looks copied and is blocked. Use another method and ask your administrator."
        }
        ("webauthn_registration_not_found", _) => "There is no passkey on your account.",
        ("duplicate_webauthn_registration", _) => "That passkey is registered already.",
        ("mfa_not_preloaded", _) | ("attempt_ledger_full", _) | ("cluster_node_failed", _) => {
            "Sign-in is unavailable right now. Try again in a few minutes."
        }
        _ => "That did not work. Try again, or sign in again.",
    };
    m.to_string()
}

/// Notices named in a redirect's query string (never free text: only these).
pub fn notice_for(key: &str) -> Option<&'static str> {
    Some(match key {
        "signed_out" => "You are signed out.",
        "session_ended" => "Your session has ended. Sign in again.",
        "sent" => "We sent a new code.",
        "saved" => "Saved.",
        "unlocked" => "The member is unlocked.",
        "remembered" => {
            "This device is remembered: next time you will not be asked for a code here."
        }
        "stepped_up" => "Thanks, that is confirmed.",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::{cookie_header, message_for};

    #[test]
    fn cookies_are_httponly_lax_and_secure_outside_the_demo() {
        let c = cookie_header("mfa_session", "t", None, true);
        assert_eq!(c, "mfa_session=t; Path=/; HttpOnly; SameSite=Lax; Secure");
        assert!(!cookie_header("mfa_session", "t", Some(0), false).contains("Secure"));
    }

    #[test]
    fn every_error_type_mfa_answers_in_the_login_flow_has_its_own_sentence() {
        let fallback = message_for("no such error", "");
        for kind in [
            "too_many_requests",
            "user_lock_limit_reached",
            "unable_to_authenticate_totp",
            "invalid_totp_code",
            "totp_code_already_authenticated",
            "unable_to_auth_otp_code",
            "otp_code_expired",
            "otp_code_not_found",
            "invalid_recovery_code",
            "invalid_phone_number",
            "invalid_phone_number_country_code",
            "operation_restricted_by_organization_mfa_methods",
            "insufficient_factors",
            "intermediate_session_not_found",
            "member_not_found",
            "pending_totp_exists",
            "remembered_devices_not_allowed",
            "mfa_not_preloaded",
            "attempt_ledger_full",
        ] {
            assert_ne!(message_for(kind, ""), fallback, "{kind}");
        }
    }
}
