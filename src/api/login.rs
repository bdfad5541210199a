//! The login flow: `primary_authenticate` and `step_up_start` issue an intermediate session token;
//! the factor functions find the login it stands for (`find`); the session gate consumes it
//! (`api::gate`).

use crate::api::{answer, remembered_devices};
use crate::core::crypto::{new_token, token_hash};
use crate::core::factor::{second_factors, Factor};
use crate::core::phone::mask_e164;
use crate::core::policy::{self, MfaMethod, OrganizationPolicy, PrimaryMethod};
use crate::core::sms::Locale;
use crate::error::{err, ErrorType, MfaError, MfaResult, SqlResult};
use crate::settings;
use crate::store::audit::Request;
use crate::store::cluster;
use crate::store::jsonb::Jsonb;
use crate::store::members::{self, Load, Member};
use crate::store::sessions::{self, IntermediateSession, NewSession};
use pgrx::prelude::*;
use serde_json::{json, Value};

pub fn token_not_found() -> MfaError {
    MfaError::new(
        ErrorType::IntermediateSessionNotFound,
        "The intermediate session token is unknown, expired or already used.",
    )
}

/// Finds the live login `token` belongs to and checks it is this member's. A token of another
/// organization is `invalid_intermediate_session_token_for_organization`; an unknown, expired or
/// consumed one, or one of another member, is `intermediate_session_not_found`. The row stays
/// locked until the end of the transaction.
pub fn find_for(
    organization_id: &str,
    member_id: &str,
    token: &str,
) -> MfaResult<IntermediateSession> {
    match sessions::find(organization_id, member_id, token_hash(token))? {
        Some(found) if found.live => Ok(found),
        Some(_) => Err(token_not_found()),
        None => Err(token_unknown_here(organization_id, token)?),
    }
}

/// The error for a token the member's organization does not hold for them: another
/// organization's, or unknown (or another member's). On Citus a call runs on the node of its
/// organization (delegated, or in the session gate on a shard), where a question across
/// organizations is a nested distributed query Citus refuses: there a token of another
/// organization is reported as unknown.
pub fn token_unknown_here(organization_id: &str, token: &str) -> MfaResult<MfaError> {
    Ok(
        if !cluster::on_citus()
            && sessions::of_another_organization(organization_id, token_hash(token))?
        {
            MfaError::new(
                ErrorType::InvalidIntermediateSessionTokenForOrganization,
                "The intermediate session token belongs to another organization.",
            )
        } else {
            token_not_found()
        },
    )
}

/// `find_for` the member, for an optional token argument.
pub fn find_optional(
    member: &Member,
    token: Option<&str>,
) -> MfaResult<Option<IntermediateSession>> {
    token
        .map(|t| find_for(&member.organization_id, &member.member_id, t))
        .transpose()
}

/// Whether a login carries a second factor proven with it.
pub fn has_second_factor(session: &IntermediateSession) -> bool {
    !second_factors(&session.factors).is_empty()
}

/// Adding a factor when the member already has an active one needs a token that already carries
/// an MFA factor: otherwise whoever knows the password could enroll their own phone or app.
pub fn require_step_up_for_new_factor(member: &Member, token: Option<&str>) -> MfaResult<()> {
    if !member.has_active_factor() {
        return Ok(());
    }
    match find_optional(member, token)? {
        Some(session) if has_second_factor(&session) => Ok(()),
        _ => err(
            ErrorType::InsufficientFactors,
            "The member already has an active MFA factor: adding another needs an intermediate session token that carries an MFA factor.",
        ),
    }
}

/// What a new intermediate session token is for.
#[derive(Clone, Copy, PartialEq)]
enum Start {
    /// A login: the application checked this primary factor.
    Login(PrimaryMethod),
    /// A step-up of an existing session: no primary factor, so it can never create a session;
    /// the factors proven with it raise a session's assurance (see `api::gate`).
    StepUp,
}

fn mfa_required(start: Start, org: &OrganizationPolicy, member: &Member) -> bool {
    // A step-up always asks for a second factor: that is what it is for.
    start == Start::StepUp || policy::mfa_required(org, member.mfa_enrolled, member.is_breakglass)
}

/// When SMS is how this member proves themselves, the code goes out as the login starts.
fn sms_first(start: Start, org: &OrganizationPolicy, member: &Member) -> bool {
    mfa_required(start, org, member)
        && !member.is_locked
        && member.mfa_phone_number_verified
        && org.allows(MfaMethod::SmsOtp, member.is_breakglass)
        && (member.default_mfa_method.as_deref() == Some("sms_otp")
            || member.totp_registration_id.is_none())
}

/// A device the application's cookie names, for a login.
struct PresentedDevice<'a> {
    token: &'a str,
    fingerprint: Option<&'a str>,
}

fn start(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    start: Start,
    locale: &str,
    device: Option<PresentedDevice>,
) -> MfaResult<Value> {
    let request = Request::new();
    let locale = Locale::from_tag(locale);
    // Read, not locked: a login that sends no SMS writes nothing of the member's (the new row's
    // foreign key keeps the member from going meanwhile). A send needs the member's lock, and is
    // decided again on the locked row.
    let (mut member, mut org) = members::load_with_policy(organization_id, member_id, Load::Read)?;
    // A remembered device stands in for the second factor (and rotates its token).
    let remembered = match (start, device) {
        (Start::Login(_), Some(device)) => remembered_devices::recognize(
            &request,
            &member,
            &org,
            device.token,
            device.fingerprint,
        )?,
        _ => None,
    };
    let mut sends_sms = remembered.is_none() && sms_first(start, &org, &member);
    if sends_sms {
        (member, org) = members::load_with_policy(organization_id, member_id, Load::Lock)?;
        sends_sms = sms_first(start, &org, &member);
    }
    let mfa_required = remembered.is_none() && mfa_required(start, &org, &member);
    // A send refused by the limits or the allowlist must not fail the login: the member can still
    // use another factor or ask for a code later.
    let secondary_auth_initiated = if sends_sms {
        match crate::api::sms::send_code(&request, &member, None, locale, false) {
            Ok(()) => Some("sms_otp"),
            Err(e)
                if matches!(
                    e.error_type,
                    ErrorType::TooManyRequests | ErrorType::InvalidPhoneNumberCountryCode
                ) =>
            {
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let token = new_token();
    let primary = match start {
        Start::Login(method) => Some((method.as_str(), Factor::Primary(method).to_json())),
        Start::StepUp => None,
    };
    let (event_type, details) = match &primary {
        Some((method, _)) => (
            "login.primary_authenticated",
            json!({ "primary_factor": method, "mfa_required": mfa_required,
                    "secondary_auth_initiated": secondary_auth_initiated,
                    "remembered_device_id": remembered.as_ref().map(|d| &d.device_id) }),
        ),
        None => (
            "step_up.started",
            json!({ "secondary_auth_initiated": secondary_auth_initiated }),
        ),
    };
    sessions::start(NewSession {
        organization_id: &member.organization_id,
        member_id: &member.member_id,
        token_hash: token_hash(&token),
        primary,
        locale: locale.as_str(),
        lifetime_minutes: settings::INTERMEDIATE_SESSION_MINUTES.get(),
        remembered_device: remembered.as_ref().map(|d| {
            Factor::RememberedDevice {
                device_id: d.device_id.clone(),
            }
            .to_json()
        }),
        event: request.event(
            &member.organization_id,
            Some(&member.member_id),
            event_type,
            details,
        ),
    })?;
    let mut answer = answer::about(
        &request,
        &member,
        json!({
            "member_authenticated": !mfa_required,
            "intermediate_session_token": token,
            "mfa_required": if mfa_required {
                json!({
                    "member_options": {
                        "mfa_phone_number": member.mfa_phone_number.as_deref().map(mask_e164),
                        "totp_registration_id": member.totp_registration_id,
                    },
                    "secondary_auth_initiated": secondary_auth_initiated,
                })
            } else {
                Value::Null
            },
            // Before any second factor of this login, whether or not one is required: masked.
            "member": answer::member_before_mfa(&member),
        }),
    );
    if let Some(device) = remembered {
        answer["device_token"] = json!(device.new_token);
    }
    Ok(answer)
}

/// Starts a login after the application's own primary check.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn primary_authenticate(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    method: default!(Option<&str>, "'password'"),
    locale: default!(Option<&str>, "'en'"),
    device_token: default!(Option<&str>, "NULL"),
    device_fingerprint: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    let method = PrimaryMethod::parse(method.unwrap_or("password"))?;
    Ok(Jsonb(start(
        organization_id,
        member_id,
        Start::Login(method),
        locale.unwrap_or("en"),
        device_token.map(|token| PresentedDevice {
            token,
            fingerprint: device_fingerprint,
        }),
    )?))
}

/// Starts a step-up of an existing session: a token that carries no primary factor, for the
/// factor functions; presented in a guarded sessions table's token column, it raises the
/// session's assurance.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn step_up_start(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    locale: default!(Option<&str>, "'en'"),
) -> SqlResult<Jsonb> {
    Ok(Jsonb(start(
        organization_id,
        member_id,
        Start::StepUp,
        locale.unwrap_or("en"),
        None,
    )?))
}
