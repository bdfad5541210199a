//! Starting a login or a step-up: the member's policy decides whether a second factor is needed,
//! an SMS code goes out first when SMS is how the member proves themselves, a remembered device
//! can stand in for the second factor, and an intermediate session token is issued.

use crate::core::crypto::token_hash;
use crate::core::factor::Factor;
use crate::core::metrics::Counter;
use crate::core::phone::mask_e164;
use crate::core::policy::{self, MfaMethod, OrganizationPolicy, PrimaryFactor};
use crate::core::sms::Locale;
use crate::error::{ErrorType, MfaResult};
use crate::flow::member::{self, Load};
use crate::flow::sms;
use crate::flow::{answer, devices, token};
use crate::server::{counters, settings};
use crate::store::audit::Request;
use crate::store::members::Member;
use crate::store::sessions::{self, NewSession};
use serde_json::{json, Value};

/// What a new intermediate session token is for.
#[derive(Clone, Copy, PartialEq)]
pub enum Start {
    /// A login: the application checked this primary factor.
    Login(PrimaryFactor),
    /// A step-up of an existing session: no primary factor, so it can never create a session;
    /// the factors proven with it raise a session's assurance (see `flow::gate`).
    StepUp,
}

pub fn mfa_required(start: Start, org: &OrganizationPolicy, member: &Member) -> bool {
    // A step-up always asks for a second factor: that is what it is for.
    start == Start::StepUp || policy::mfa_required(org, member.mfa_enrolled, member.is_breakglass)
}

/// When SMS is how this member proves themselves, the code goes out as the login starts.
pub fn sms_first(start: Start, org: &OrganizationPolicy, member: &Member) -> bool {
    mfa_required(start, org, member)
        && !member.is_locked
        && member.mfa_phone_number_verified
        && org.allows(MfaMethod::SmsOtp, member.is_breakglass)
        && (member.default_mfa_method.as_deref() == Some("sms_otp")
            || (member.totp_registration_id.is_none() && member.webauthn_registrations == 0))
}

/// A device the application's cookie names, for a login.
pub struct PresentedDevice<'a> {
    pub token: &'a str,
    pub fingerprint: Option<&'a str>,
}

pub fn start(
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
    let (mut member, mut org) = member::load_with_policy(organization_id, member_id, Load::Read)?;
    // A remembered device stands in for the second factor (and rotates its token).
    let remembered = match (start, device) {
        (Start::Login(_), Some(device)) => {
            devices::recognize(&request, &member, &org, device.token, device.fingerprint)?
        }
        _ => None,
    };
    let mut sends_sms = remembered.is_none() && sms_first(start, &org, &member);
    if sends_sms {
        (member, org) = member::load_with_policy(organization_id, member_id, Load::Lock)?;
        sends_sms = sms_first(start, &org, &member);
    }
    let mfa_required = remembered.is_none() && mfa_required(start, &org, &member);
    // A send refused by the limits or the allowlist must not fail the login: the member can still
    // use another factor or ask for a code later.
    let secondary_auth_initiated = if sends_sms {
        match sms::send_code(&request, &member, None, locale, false) {
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
    let token = token::new_login_token(&member.organization_id)?;
    let primary = match start {
        Start::Login(primary) => {
            Some((primary.method.as_str(), Factor::Primary(primary).to_json()))
        }
        Start::StepUp => None,
    };
    // A login's story is told by its one event, when it ends (see `sessions::start`); a step-up's
    // start is an event of its own.
    let event = match start {
        Start::Login(_) => None,
        Start::StepUp => Some(request.event(
            &member.organization_id,
            Some(&member.member_id),
            "step_up.started",
            json!({ "secondary_auth_initiated": secondary_auth_initiated }),
        )),
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
        request_id: &request.id,
        event,
    })?;
    counters::add(match start {
        Start::Login(_) => Counter::LoginStarted,
        Start::StepUp => Counter::StepUpStarted,
    });
    if remembered.is_some() {
        counters::add(Counter::RememberedDevice);
    }
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
                        "webauthn_registrations": member.webauthn_registrations,
                    },
                    "secondary_auth_initiated": secondary_auth_initiated,
                })
            } else {
                Value::Null
            },
            // Before any second factor of this login, whether or not one is required: masked.
            "member": answer::member_before_mfa(&member),
            "organization": answer::organization(&member, &org),
        }),
    );
    if let Some(device) = remembered {
        answer["device_token"] = json!(device.new_token);
    }
    Ok(answer)
}
