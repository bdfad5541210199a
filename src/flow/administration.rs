//! Administration of organizations and members: their settings, reading them, a member's unlock
//! and the removal of a member's phone.

use crate::core::phone::{mask_e164, parse_phone_number};
use crate::core::policy::{parse_default_method, validate_id, IdKind, MfaMethod};
use crate::error::MfaResult;
use crate::error::{err, ErrorType, MfaError};
use crate::flow::attempt::ledger_event;
use crate::flow::member::{self, Load};
use crate::flow::removal::{self, Removing};
use crate::flow::{answer, devices};
use crate::server::ledger;
use crate::server::settings;
use crate::store::audit::Request;
use crate::store::cluster;
use crate::store::members::{self, SettingsChange};
use crate::store::remembered_devices::{self, Revocation};
use crate::store::{organizations, sessions, sms_workers};
use serde_json::json;
use serde_json::Value;

/// What `member_upsert` is asked to set (NULL keeps a value).
pub struct MemberSettings<'a> {
    pub mfa_phone_number: Option<&'a str>,
    pub mfa_enrolled: Option<bool>,
    pub default_mfa_method: Option<&'a str>,
    pub is_breakglass: Option<bool>,
    /// A verified number is replaced only when asked to.
    pub replace_mfa_phone_number: bool,
    /// An imported number's verification (migrations): set as given.
    pub mfa_phone_number_verified: Option<bool>,
}

/// Creates a member or changes their MFA settings; NULL keeps a value (or its default). A new
/// phone number revokes the member's remembered devices; a verified one is replaced only with
/// `replace_mfa_phone_number`.
pub fn member_upsert(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    settings: MemberSettings,
) -> MfaResult<Value> {
    let MemberSettings {
        mfa_phone_number,
        mfa_enrolled,
        default_mfa_method,
        is_breakglass,
        replace_mfa_phone_number,
        mfa_phone_number_verified,
    } = settings;
    let request = Request::new();
    let org = validate_id(organization_id, IdKind::Organization)?;
    let mem = validate_id(member_id, IdKind::Member)?;
    let phone = mfa_phone_number.map(parse_phone_number).transpose()?;
    let default_method = default_mfa_method.map(parse_default_method).transpose()?;
    let Some(created) = members::create_if_missing(org, mem)? else {
        return Err(organizations::not_found(org));
    };
    // A member this transaction created is locked by the insert already.
    let before = member::load(
        Some(org),
        Some(mem),
        if created { Load::Read } else { Load::Lock },
    )?;
    if let Some(method) = default_method {
        let has_factor = match (method, &phone) {
            (MfaMethod::SmsOtp, Some(_)) => true,
            _ => before.has_factor_for(method),
        };
        if !has_factor {
            return err(
                ErrorType::DefaultMfaMemberMissingFactor,
                format!("The member has no {method} factor to make their default."),
            );
        }
    }
    let new_phone = phone
        .as_ref()
        .filter(|p| before.mfa_phone_number.as_deref() != Some(&p.e164));
    if new_phone.is_some() && before.mfa_phone_number_verified && !replace_mfa_phone_number {
        return err(
            ErrorType::ActiveMfaPhoneNumberExists,
            "The member's phone number is verified: replacing it needs replace_mfa_phone_number => true.",
        );
    }
    if mfa_phone_number_verified.is_some() && phone.is_none() && before.mfa_phone_number.is_none() {
        return err(
            ErrorType::MemberPhoneNumberNotFound,
            "mfa_phone_number_verified needs a phone number (given here, or the member's).",
        );
    }
    let event = request.event(
        org,
        Some(mem),
        if created {
            "member.created"
        } else {
            "member.updated"
        },
        json!({
            "mfa_phone_number": new_phone.map(|p| p.masked()),
            "mfa_enrolled": mfa_enrolled,
            "default_mfa_method": default_method.map(|m| m.as_str()),
            "is_breakglass": is_breakglass,
            "mfa_phone_number_verified": mfa_phone_number_verified,
            // A new number replaces a proven one, which stops being a factor.
            "factor_removed": (new_phone.is_some() && before.mfa_phone_number_verified)
                .then_some("sms_otp"),
        }),
    );
    members::update_settings(
        &event,
        &SettingsChange {
            new_phone,
            mfa_enrolled,
            is_breakglass,
            default_mfa_method: default_method.map(|m| m.as_str()),
            mfa_phone_number_verified,
        },
    )?;
    // Whatever a device proved was proven with the old number.
    if new_phone.is_some() && !created {
        removal::factor_gone(&request, &before, "phone_number_changed")?;
    }
    answer::member_with_organization_now(org, mem)
}

pub fn member_get(organization_id: Option<&str>, member_id: Option<&str>) -> MfaResult<Value> {
    let (member, org) = member::load_with_policy(organization_id, member_id, Load::Read)?;
    Ok(answer::with_organization(
        answer::member(&member),
        &member,
        &org,
    ))
}

/// Lifts a member's lock and resets their failed-attempt count.
pub fn member_unlock(organization_id: Option<&str>, member_id: Option<&str>) -> MfaResult<Value> {
    let request = Request::new();
    let m = member::load(organization_id, member_id, Load::Lock)?;
    cluster::require_organization_here(&m.organization_id)?;
    // At once, in the ledger and (by its worker) in the durable row, whatever this transaction
    // does next.
    ledger::unlock(
        member::ledger_key(&m)?,
        &m.attempts,
        &settings::attempt_limits(),
        &ledger_event(
            &request,
            &m.organization_id,
            &m.member_id,
            "member.unlocked",
        ),
    )?;
    request.audit(
        &m.organization_id,
        Some(&m.member_id),
        "member.unlocked",
        json!({ "was_locked": m.is_locked }),
    )?;
    answer::member_now(&m.organization_id, &m.member_id)
}

/// Removes a member's phone number (and its live code); SMS stops being their default method:
/// `mfa_admin`'s to do, or the member's with a fresh second factor (`flow::removal`).
pub fn member_delete_mfa_phone_number(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    intermediate_session_token: Option<&str>,
) -> MfaResult<Value> {
    let request = Request::new();
    let (m, org) = member::load_with_policy(organization_id, member_id, Load::Lock)?;
    let Some(phone) = &m.mfa_phone_number else {
        return err(
            ErrorType::MemberPhoneNumberNotFound,
            "The member has no phone number.",
        );
    };
    let remover = removal::authorize(&m, intermediate_session_token)?;
    removal::refuse_last_factor(remover, &m, &org, Removing::Phone)?;
    members::remove_phone(&m)?;
    removal::factor_gone(&request, &m, "phone_number_deleted")?;
    request.audit(
        &m.organization_id,
        Some(&m.member_id),
        "member.phone_number_deleted",
        json!({ "mfa_phone_number": mask_e164(phone), "by": removal::by(remover),
                "factor_removed": m.mfa_phone_number_verified.then_some("sms_otp") }),
    )?;
    answer::member_with_organization_now(&m.organization_id, &m.member_id)
}

/// The support desk's "lost my phone": every factor of the member goes (authenticator app,
/// recovery codes, phone, passkeys), with their logins in progress and remembered devices; they
/// are no longer enrolled, and enroll again at their next login where MFA is required.
pub fn member_reset_mfa(
    organization_id: Option<&str>,
    member_id: Option<&str>,
) -> MfaResult<Value> {
    let request = Request::new();
    let m = member::load(organization_id, member_id, Load::Lock)?;
    let removed = members::reset_mfa(&m)?;
    let logins = sessions::end_logins(&m.organization_id, &m.member_id, None)?;
    devices::revoke_all(&request, &m, "mfa_reset")?;
    request.audit(
        &m.organization_id,
        Some(&m.member_id),
        "member.mfa_reset",
        json!({
            "totp_registration_id": m.totp.as_ref().map(|t| &t.totp_registration_id),
            "mfa_phone_number": m.mfa_phone_number.as_deref().map(mask_e164),
            "webauthn_registrations": m.webauthn_registrations,
            "recovery_codes": removed.recovery_codes,
            "logins_in_progress": logins,
            "factor_removed": "all",
        }),
    )?;
    answer::member_now(&m.organization_id, &m.member_id)
}

/// Creates an organization or changes its MFA settings; NULL keeps a value (or its default).
pub fn organization_upsert(
    organization_id: Option<&str>,
    mfa_policy: Option<&str>,
    mfa_methods: Option<&str>,
    allowed_mfa_methods: Option<Vec<Option<String>>>,
    remember_device_days: Option<i32>,
) -> MfaResult<Value> {
    let request = Request::new();
    let organization_id = validate_id(organization_id, IdKind::Organization)?;
    let current = organizations::lock_policy(organization_id)?;
    let next = current.clone().unwrap_or_default().updated(
        mfa_policy,
        mfa_methods,
        allowed_mfa_methods,
        remember_device_days,
    )?;
    organizations::write_policy(organization_id, &next)?;
    let revoked = match &current {
        // Turned off: no device is honoured any more, and none comes back if it is turned on again.
        Some(was) if was.remembers_devices() && !next.remembers_devices() => {
            remembered_devices::revoke(Revocation {
                organization_id,
                member_id: None,
                device_id: None,
                request_id: &request.id,
                reason: "organization_stopped_remembering_devices",
            })?
        }
        _ => 0,
    };
    request.audit(
        organization_id,
        None,
        if current.is_some() {
            "organization.updated"
        } else {
            "organization.created"
        },
        json!({
            "mfa_policy": next.mfa_policy.as_str(),
            "mfa_methods": next.mfa_methods.as_str(),
            "allowed_mfa_methods": next.allowed_names(),
            "remember_device_days": next.remember_device_days,
            "remembered_devices_revoked": (revoked > 0).then_some(revoked),
        }),
    )?;
    organizations::object(organization_id)
}

pub fn member_delete(organization_id: Option<&str>, member_id: Option<&str>) -> MfaResult<()> {
    let request = Request::new();
    let m = member::load(organization_id, member_id, Load::Lock)?;
    // Their logins in progress are recorded before they go with the member (a password that was
    // right stays in the trail).
    let logins = sessions::end_logins(&m.organization_id, &m.member_id, None)?;
    members::delete(&m)?;
    request.audit(
        &m.organization_id,
        Some(&m.member_id),
        "member.deleted",
        json!({ "logins_in_progress": (logins > 0).then_some(logins) }),
    )?;
    Ok(())
}

pub fn organization_delete(organization_id: Option<&str>) -> MfaResult<()> {
    let request = Request::new();
    let organization_id = validate_id(organization_id, IdKind::Organization)?;
    let orphaned = sms_workers::workers_bound_only_to(organization_id)?;
    if !orphaned.is_empty() {
        return Err(MfaError::new(
            ErrorType::InvalidArgument,
            format!(
                "This is the last organization of SMS worker role(s) {}: without a binding they would serve every organization. REVOKE mfa_sms_worker FROM them (or bind them to another organization) first.",
                orphaned.join(", ")
            ),
        ));
    }
    let Some(members) = organizations::delete(organization_id)? else {
        return Err(organizations::not_found(organization_id));
    };
    request.audit(
        organization_id,
        None,
        "organization.deleted",
        json!({ "members_deleted": members }),
    )?;
    Ok(())
}
