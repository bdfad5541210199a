//! The passkey (WebAuthn) SQL surface: the allowed origins, `webauthn_register_start/register`,
//! `webauthn_authenticate_start/authenticate`, the member's list of passkeys, and what an RLS
//! policy asks of a session's factors (phishing resistance, RFC 8176 `amr`).

use crate::core::factor;
use crate::core::policy::SecondFactor;
use crate::error::SqlResult;
use crate::flow::attempt::Attempt;
use crate::flow::webauthn;
use crate::store::jsonb::Jsonb;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

/// Replaces the project's allowed origins; returns them as stored (normalized, sorted).
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn webauthn_allowed_origins_set(origins: Option<Vec<Option<String>>>) -> SqlResult<Vec<String>> {
    Ok(webauthn::allowed_origins_set(origins)?)
}

/// The project's allowed origins.
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn webauthn_allowed_origins_get() -> SqlResult<Vec<String>> {
    Ok(webauthn::allowed_origins_get()?)
}

/// Options for `navigator.credentials.create` (`PublicKeyCredentialCreationOptionsJSON`).
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn webauthn_register_start(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    domain: Option<&str>,
    intermediate_session_token: default!(Option<&str>, "NULL"),
    authenticator_type: default!(Option<&str>, "NULL"),
    user_agent: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    Ok(Jsonb(webauthn::register_start(
        organization_id,
        member_id,
        domain,
        intermediate_session_token,
        authenticator_type,
        user_agent,
    )?))
}

fn credential(value: Option<JsonB>) -> Value {
    value.map(|JsonB(v)| v).unwrap_or(Value::Null)
}

/// Verifies the browser's `RegistrationResponseJSON` and stores the passkey. Failures are
/// returned, not raised.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn webauthn_register(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    public_key_credential: Option<JsonB>,
    intermediate_session_token: default!(Option<&str>, "NULL"),
    set_mfa_enrollment: default!(Option<&str>, "NULL"),
    set_default_mfa: default!(Option<bool>, false),
) -> SqlResult<Jsonb> {
    let attempt = Attempt::begin(
        organization_id,
        member_id,
        intermediate_session_token,
        SecondFactor::Webauthn,
        "webauthn.register",
        set_mfa_enrollment,
        set_default_mfa.unwrap_or(false),
    )?;
    Ok(Jsonb(webauthn::register(
        attempt,
        &credential(public_key_credential),
        intermediate_session_token,
    )?))
}

/// Options for `navigator.credentials.get` (`PublicKeyCredentialRequestOptionsJSON`), for the
/// login or step-up of the token.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn webauthn_authenticate_start(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    domain: Option<&str>,
    intermediate_session_token: Option<&str>,
) -> SqlResult<Jsonb> {
    Ok(Jsonb(webauthn::authenticate_start(
        organization_id,
        member_id,
        domain,
        intermediate_session_token,
    )?))
}

/// Verifies the browser's `AuthenticationResponseJSON`. Failures are returned, not raised.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn webauthn_authenticate(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    public_key_credential: Option<JsonB>,
    intermediate_session_token: Option<&str>,
    set_mfa_enrollment: default!(Option<&str>, "NULL"),
    set_default_mfa: default!(Option<bool>, false),
) -> SqlResult<Jsonb> {
    let attempt = Attempt::begin(
        organization_id,
        member_id,
        intermediate_session_token,
        SecondFactor::Webauthn,
        "webauthn.authenticate",
        set_mfa_enrollment,
        set_default_mfa.unwrap_or(false),
    )?;
    Ok(Jsonb(webauthn::authenticate(
        attempt,
        &credential(public_key_credential),
    )?))
}

/// The member's passkeys (no key material).
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn webauthn_registrations_get(
    organization_id: Option<&str>,
    member_id: Option<&str>,
) -> SqlResult<Jsonb> {
    Ok(Jsonb(webauthn::registrations_get(
        organization_id,
        member_id,
    )?))
}

/// Names one of the member's passkeys.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn webauthn_registration_update(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    webauthn_registration_id: Option<&str>,
    name: Option<&str>,
) -> SqlResult<Jsonb> {
    Ok(Jsonb(webauthn::registration_update(
        organization_id,
        member_id,
        webauthn_registration_id,
        name,
    )?))
}

/// Removes one of the member's passkeys.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn webauthn_registration_delete(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    webauthn_registration_id: Option<&str>,
    intermediate_session_token: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    Ok(Jsonb(webauthn::registration_delete(
        organization_id,
        member_id,
        webauthn_registration_id,
        intermediate_session_token,
    )?))
}

fn factors(authentication_factors: &Option<JsonB>) -> &[Value] {
    match authentication_factors {
        Some(JsonB(Value::Array(items))) => items,
        _ => &[],
    }
}

/// Whether a factors column's newest second factor is a passkey, trusting the column (no seal
/// is checked). Policies use the three-argument form.
#[pg_extern(immutable, parallel_safe)]
pub fn session_phishing_resistant(authentication_factors: Option<JsonB>) -> bool {
    factor::phishing_resistant(factors(&authentication_factors))
}

/// The RFC 8176 authentication method references of a factors column, trusting it (no seal is
/// checked). Tokens for others use the three-argument form.
#[pg_extern(immutable, parallel_safe)]
pub fn session_amr(authentication_factors: Option<JsonB>) -> Vec<String> {
    factor::amr(factors(&authentication_factors))
        .into_iter()
        .map(str::to_string)
        .collect()
}
