//! The TOTP and recovery-code SQL surface: `totp_create`, `totp_authenticate`, `totp_migrate`,
//! `member_delete_totp`, `recovery_codes_get/rotate/recover`, `totp_verify` and `qr_code_text`.

use crate::core::policy::SecondFactor;
use crate::core::totp::{secret_from_base32, step_at, verify_code};
use crate::error::SqlResult;
use crate::flow::attempt::Attempt;
use crate::flow::totp;
use crate::flow::totp::{authenticate, recover};
use crate::server::settings;
use crate::store::jsonb::Jsonb;
use pgrx::prelude::*;

/// Starts an authenticator-app registration, pending until its first code is authenticated.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn totp_create(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    expiration_minutes: default!(Option<i32>, 60),
    intermediate_session_token: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    Ok(Jsonb(totp::totp_create(
        organization_id,
        member_id,
        expiration_minutes,
        intermediate_session_token,
    )?))
}

/// Verifies a code from the member's authenticator app. Failures are returned, not raised.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn totp_authenticate(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    code: Option<&str>,
    intermediate_session_token: default!(Option<&str>, "NULL"),
    set_mfa_enrollment: default!(Option<&str>, "NULL"),
    set_default_mfa: default!(Option<bool>, false),
) -> SqlResult<Jsonb> {
    let attempt = Attempt::begin(
        organization_id,
        member_id,
        intermediate_session_token,
        SecondFactor::Totp,
        "totp.authenticate",
        set_mfa_enrollment,
        set_default_mfa.unwrap_or(false),
    )?;
    Ok(Jsonb(authenticate(attempt, code.unwrap_or(""))?))
}

/// Imports an existing authenticator (active at once) and, optionally, its recovery codes.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn totp_migrate(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    secret: Option<&str>,
    recovery_codes: default!(Option<Vec<Option<String>>>, "NULL"),
) -> SqlResult<Jsonb> {
    Ok(Jsonb(totp::totp_migrate(
        organization_id,
        member_id,
        secret,
        recovery_codes,
    )?))
}

/// Removes the member's authenticator app and its recovery codes.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_delete_totp(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    intermediate_session_token: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    Ok(Jsonb(totp::member_delete_totp(
        organization_id,
        member_id,
        intermediate_session_token,
    )?))
}

/// How many recovery codes remain and when they were minted (the codes themselves are stored
/// hashed and were shown only once).
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn recovery_codes_get(organization_id: Option<&str>, member_id: Option<&str>) -> SqlResult<Jsonb> {
    Ok(Jsonb(totp::recovery_codes_get(organization_id, member_id)?))
}

/// Invalidates every recovery code and returns a new set (shown this once). Minting codes is
/// adding a factor: the intermediate session token (of a login or a step-up) must carry a second
/// factor proven with it, or whoever holds the application's role could mint codes and log in
/// with them.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn recovery_codes_rotate(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    intermediate_session_token: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    Ok(Jsonb(totp::recovery_codes_rotate(
        organization_id,
        member_id,
        intermediate_session_token,
    )?))
}

/// Spends one recovery code as the second factor. Failures are returned, not raised.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn recovery_codes_recover(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    recovery_code: Option<&str>,
    intermediate_session_token: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    // Recovery codes stand in for the authenticator app or passkey: one of them must be allowed.
    let attempt = Attempt::begin(
        organization_id,
        member_id,
        intermediate_session_token,
        SecondFactor::RecoveryCode,
        "recovery_codes.recover",
        None,
        false,
    )?;
    Ok(Jsonb(recover(attempt, recovery_code)?))
}

/// Renders any text (an otpauth URI) as a QR code of Unicode blocks, for terminals and psql.
#[pg_extern(immutable, parallel_safe)]
fn qr_code_text(text: &str) -> SqlResult<String> {
    Ok(crate::core::qr::qr_code_text(text)?)
}

/// Checks a code against a base32 secret the caller holds (an authenticator about to be imported
/// with `totp_migrate`, say) at `at`, within `mfa.totp_skew_steps`. Nothing is stored or
/// counted: the replay and lockout rules apply only to `totp_authenticate`.
#[pg_extern(stable, parallel_safe)]
fn totp_verify(
    secret: &str,
    code: &str,
    at: default!(pgrx::datum::TimestampWithTimeZone, "now()"),
) -> SqlResult<bool> {
    let secret = secret_from_base32(secret)?;
    // Microseconds since 2000-01-01; infinities end up before 1970 or far ahead, matching nothing.
    let micros: pg_sys::TimestampTz = at.into();
    let unix_seconds = micros.div_euclid(1_000_000).saturating_add(946_684_800);
    Ok(verify_code(
        &secret,
        code,
        step_at(u64::try_from(unix_seconds).unwrap_or(0)),
        settings::TOTP_SKEW_STEPS.get() as u64,
        None,
    )
    .is_ok())
}
