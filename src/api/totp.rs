//! The TOTP and recovery-code SQL surface: `totp_create`, `totp_authenticate`, `totp_migrate`,
//! `member_delete_totp`, `recovery_codes_get/rotate/recover`, `totp_verify` and `qr_code_text`.

use crate::core::policy::MfaMethod;
use crate::core::qr::qr_code_data_url;
use crate::core::totp::{
    new_secret, normalize_recovery_code, otpauth_uri, secret_from_base32, secret_to_base32,
    step_at, verify_code,
};
use crate::error::{err, ErrorType, MfaError, MfaResult, SqlResult};
use crate::flow::attempt::Attempt;
use crate::flow::member::{self, Load};
use crate::flow::totp::{
    authenticate, mint_recovery_codes, recover, require_active_registration, store_recovery_codes,
    store_registration,
};
use crate::flow::{answer, token};
use crate::server::settings;
use crate::store::audit::Request;
use crate::store::jsonb::Jsonb;
use crate::store::members::{self};
use crate::store::totp;
use pgrx::datum::ToIsoString;
use pgrx::prelude::*;
use serde_json::json;

/// Starts an authenticator-app registration, pending until its first code is authenticated.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn totp_create(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    expiration_minutes: default!(Option<i32>, 60),
    intermediate_session_token: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    let request = Request::new();
    let expiration_minutes = expiration_minutes.unwrap_or(60);
    if !(5..=1440).contains(&expiration_minutes) {
        return err(
            ErrorType::InvalidExpirationMinutes,
            "expiration_minutes must be between 5 and 1440.",
        );
    }
    let (member, org) = member::load_with_policy(organization_id, member_id, Load::Lock)?;
    org.require_allowed(MfaMethod::Totp, member.is_breakglass)?;
    token::find_optional(&member, intermediate_session_token)?;
    if let Some(existing) = &member.totp {
        if existing.active {
            return err(
                ErrorType::ActiveTotpExists,
                "The member already has an active TOTP registration.",
            );
        }
        if !existing.expired {
            return err(
                ErrorType::PendingTotpExists,
                "The member has a pending TOTP registration; authenticate a code from it, or wait until it expires.",
            );
        }
    }
    token::require_step_up_for_new_factor(&member, intermediate_session_token)?;
    let secret = new_secret();
    let registration_id = store_registration(&member, &secret, Some(expiration_minutes))?;
    let recovery_codes = mint_recovery_codes(&member)?;
    let uri = otpauth_uri(&settings::totp_issuer(), &member.member_id, &secret);
    request.audit(
        &member.organization_id,
        Some(&member.member_id),
        "totp.created",
        json!({ "totp_registration_id": registration_id, "expiration_minutes": expiration_minutes }),
    )?;
    Ok(Jsonb(answer::about(
        &request,
        &member,
        json!({
            "totp_registration_id": registration_id,
            "secret": secret_to_base32(&secret),
            "otpauth_uri": uri,
            "qr_code": qr_code_data_url(&uri)?,
            "recovery_codes": recovery_codes,
            "member": answer::member_before_mfa_now(&member.organization_id, &member.member_id)?,
        }),
    )))
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
        MfaMethod::Totp,
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
    let request = Request::new();
    let secret = secret_from_base32(secret.unwrap_or(""))?;
    let codes = recovery_codes
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            c.as_deref()
                .and_then(normalize_recovery_code)
                .ok_or_else(|| {
                    MfaError::new(
                        ErrorType::InvalidRecoveryCode,
                        "A recovery code to import is not valid.",
                    )
                })
        })
        .collect::<MfaResult<Vec<String>>>()?;
    let member = member::load(organization_id, member_id, Load::Lock)?;
    if member.totp.as_ref().is_some_and(|r| r.active) {
        return err(
            ErrorType::ActiveTotpExists,
            "The member already has an active TOTP registration.",
        );
    }
    let registration_id = store_registration(&member, &secret, None)?;
    store_recovery_codes(&member, &codes)?;
    request.audit(
        &member.organization_id,
        Some(&member.member_id),
        "totp.migrated",
        json!({ "totp_registration_id": registration_id, "recovery_codes_imported": codes.len() }),
    )?;
    Ok(Jsonb(json!({
        "status_code": 200,
        "request_id": request.id,
        "totp_registration_id": registration_id,
        "recovery_codes_remaining": codes.len(),
        "member": answer::member_now(&member.organization_id, &member.member_id)?,
    })))
}

/// Removes the member's authenticator app and its recovery codes.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_delete_totp(organization_id: Option<&str>, member_id: Option<&str>) -> SqlResult<Jsonb> {
    let request = Request::new();
    let member = member::load(organization_id, member_id, Load::Lock)?;
    let Some(registration) = &member.totp else {
        return err(
            ErrorType::TotpNotFound,
            "The member has no TOTP registration.",
        );
    };
    members::remove_totp(&member)?;
    crate::flow::devices::revoke_all(&request, &member, "totp_deleted")?;
    request.audit(
        &member.organization_id,
        Some(&member.member_id),
        "totp.deleted",
        json!({ "totp_registration_id": registration.totp_registration_id }),
    )?;
    Ok(Jsonb(answer::member_now(
        &member.organization_id,
        &member.member_id,
    )?))
}

/// How many recovery codes remain and when they were minted (the codes themselves are stored
/// hashed and were shown only once).
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn recovery_codes_get(organization_id: Option<&str>, member_id: Option<&str>) -> SqlResult<Jsonb> {
    let request = Request::new();
    let member = member::load(organization_id, member_id, Load::Read)?;
    let (remaining, created_at) = totp::recovery_codes_left(&member)?;
    Ok(Jsonb(answer::about(
        &request,
        &member,
        json!({
            "recovery_codes_remaining": remaining,
            "recovery_codes_created_at": created_at.map(|t| t.to_iso_string()),
        }),
    )))
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
    let request = Request::new();
    let member = member::load(organization_id, member_id, Load::Lock)?;
    require_active_registration(&member)?;
    match token::find_optional(&member, intermediate_session_token)? {
        Some(session) if token::has_second_factor(&session) => {}
        _ => {
            return err(
                ErrorType::InsufficientFactors,
                "Rotating recovery codes needs an intermediate session token that carries a second factor proven with it (a login's, or step_up_start's).",
            )
        }
    }
    let codes = mint_recovery_codes(&member)?;
    request.audit(
        &member.organization_id,
        Some(&member.member_id),
        "recovery_codes.rotated",
        json!({}),
    )?;
    Ok(Jsonb(answer::about(
        &request,
        &member,
        json!({ "recovery_codes": codes }),
    )))
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
    // Recovery codes stand in for the authenticator app: the `totp` method must be allowed.
    let attempt = Attempt::begin(
        organization_id,
        member_id,
        intermediate_session_token,
        MfaMethod::Totp,
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
