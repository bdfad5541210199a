//! The SMS OTP SQL surface: `otp_sms_send`, `otp_sms_authenticate`, and the project-wide
//! `country_code_allowlist_get/set`.

use crate::core::phone::{self, check_sms_country, normalize_allowlist, parse_phone_number};
use crate::core::policy::MfaMethod;
use crate::core::sms::Locale;
use crate::error::{err, ErrorType, MfaError, SqlResult};
use crate::flow::attempt::Attempt;
use crate::flow::member::{self, Load};
use crate::flow::sms::{allowlist, authenticate, send_code};
use crate::flow::{answer, token};
use crate::store::audit::Request;
use crate::store::jsonb::Jsonb;
use crate::store::members::{self};
use crate::store::sms::{self};
use pgrx::prelude::*;
use serde_json::json;

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
    let request = Request::new();
    let token = intermediate_session_token;
    let requested = mfa_phone_number.map(parse_phone_number).transpose()?;
    let locale = Locale::from_tag(locale.unwrap_or("en"));
    let (member, org) = member::load_with_policy(
        organization_id,
        member_id,
        Load::LockForSending {
            to: requested.as_ref().map(|p| p.e164.as_str()),
        },
    )?;
    org.require_allowed(MfaMethod::SmsOtp, member.is_breakglass)?;
    token::find_optional(&member, token)?;
    // A locked member cannot authenticate: a code would only cost a message (and could be sent
    // again and again at the member's expense).
    if member.is_locked {
        return err(
            ErrorType::UserLockLimitReached,
            "The member is locked after too many failed attempts; no code is sent until the lock ends.",
        );
    }
    let mut linked = false;
    if let Some(phone) = &requested {
        // A number is passed only to link a first phone. A member who has one is sent to it
        // without passing it; passing one is refused whatever it is, so that the answer never
        // tells whether a guessed number is the member's (their masked number would otherwise
        // be found in a few hundred guesses).
        if member.mfa_phone_number.is_some() {
            return Err(MfaError::new(
                ErrorType::DuplicateMemberPhoneNumber,
                "The member already has a phone number: send without mfa_phone_number to use it, or delete it before linking another.",
            )
            .into());
        }
        // Linking a new phone is adding a factor: a member who already has one must have
        // proven it in this login.
        token::require_step_up_for_new_factor(&member, token)?;
        check_sms_country(phone, &allowlist()?)?;
        members::link_phone(&member, phone)?;
        linked = true;
    }
    send_code(&request, &member, requested.as_ref(), locale, true)?;
    // A send changes the member only when it linked the phone. Sent during a login, before any
    // second factor: the number is masked.
    let object = if linked {
        answer::member_before_mfa_now(&member.organization_id, &member.member_id)?
    } else {
        answer::member_before_mfa(&member)
    };
    Ok(Jsonb(answer::about(
        &request,
        &member,
        json!({ "member": object }),
    )))
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
        MfaMethod::SmsOtp,
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
    let request = Request::new();
    let codes = country_codes.unwrap_or_default();
    let wanted = normalize_allowlist(codes.iter().map(|c| c.as_deref()))?;
    let before = allowlist()?;
    sms::replace_allowlist(&wanted)?;
    request.audit(
        "",
        None,
        "country_code_allowlist.set",
        json!({ "before": before, "after": wanted }),
    )?;
    Ok(wanted)
}

/// Whether SMS can ever be sent to a country (documentation helper for the unsupported list).
#[pg_extern(immutable, parallel_safe)]
fn sms_country_supported(country_code: &str) -> bool {
    let upper = country_code.trim().to_ascii_uppercase();
    phone::is_country_code(&upper) && !phone::is_sms_unsupported(&upper)
}
