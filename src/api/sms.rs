//! The SMS OTP SQL surface: `otp_sms_send`, `otp_sms_authenticate`, and the project-wide
//! `country_code_allowlist_get/set`.

use crate::core::phone::{self};
use crate::core::policy::SecondFactor;
use crate::error::SqlResult;
use crate::flow::attempt::Attempt;
use crate::flow::sms;
use crate::flow::sms::{allowlist, authenticate};
use crate::store::jsonb::Jsonb;
use pgrx::prelude::*;

/// Sends a new code by SMS (through the outbox). Never returns the code.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn otp_sms_send(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    mfa_phone_number: default!(Option<&str>, "NULL"),
    locale: default!(Option<&str>, "'en'"),
    intermediate_session_token: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    Ok(Jsonb(sms::otp_sms_send(
        organization_id,
        member_id,
        mfa_phone_number,
        locale,
        intermediate_session_token,
    )?))
}

/// Verifies the member's SMS code. Failures are returned, not raised.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn otp_sms_authenticate(
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
        SecondFactor::SmsOtp,
        "sms_otp.authenticate",
        set_mfa_enrollment,
        set_default_mfa.unwrap_or(false),
    )?;
    Ok(Jsonb(authenticate(attempt, code.unwrap_or(""))?))
}

/// The countries SMS codes may be sent to.
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn country_code_allowlist_get() -> SqlResult<Vec<String>> {
    Ok(allowlist()?)
}

/// Replaces the allowlist (ISO alpha-2, case-insensitive, de-duplicated).
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn country_code_allowlist_set(
    country_codes: Option<Vec<Option<String>>>,
) -> SqlResult<Vec<String>> {
    Ok(sms::country_code_allowlist_set(country_codes)?)
}

/// Whether SMS can ever be sent to a country (documentation helper for the unsupported list).
#[pg_extern(immutable, parallel_safe)]
fn sms_country_supported(country_code: &str) -> bool {
    let upper = country_code.trim().to_ascii_uppercase();
    phone::is_country_code(&upper) && !phone::is_sms_unsupported(&upper)
}
