//! Remembered devices: recognizing one at a login (the token rotates on every use, a rotated token
//! presented again revokes the member's devices) and revoking all of a member's.

use crate::core::crypto::{constant_time_eq, new_token, token_hash};
use crate::core::factor::second_factors;
use crate::core::policy::OrganizationPolicy;
use crate::core::policy::{validate_id, IdKind};
use crate::error::{err, ErrorType, MfaError, MfaResult};
use crate::flow::answer;
use crate::flow::attempt::ledger_event;
use crate::flow::member::{self, Load};
use crate::flow::token::{refuse_unless_of, token_not_found};
use crate::server::ledger;
use crate::store::audit::Request;
use crate::store::members::Member;
use crate::store::remembered_devices::{self, NewDevice, Revocation};
use crate::store::sessions;
use serde_json::{json, Value};

/// A device a login presented and that was honoured.
pub struct Honoured {
    pub device_id: String,
    /// Its new token (the presented one died), for the answer.
    pub new_token: String,
}

pub fn fingerprint_matches(bound: Option<&[u8]>, presented: Option<&str>) -> bool {
    match (bound, presented) {
        (None, _) => true,
        (Some(hash), Some(fingerprint)) => constant_time_eq(hash, &token_hash(fingerprint)),
        (Some(_), None) => false,
    }
}

/// The device token a login presented: honoured (rotated) when it is this member's current,
/// unexpired token, its fingerprint matches and the organization remembers devices; a token that
/// was rotated away revokes every device of its member (suspected theft); anything else is
/// ignored, so that a stale cookie never breaks a login.
pub fn recognize(
    request: &Request,
    member: &Member,
    org: &OrganizationPolicy,
    token: &str,
    fingerprint: Option<&str>,
) -> MfaResult<Option<Honoured>> {
    let presented = token_hash(token);
    let organization_id = member.organization_id.as_str();
    if let Some(device) = remembered_devices::find_current(organization_id, &presented)? {
        let honoured = device.member_id == member.member_id
            && device.live
            && org.remembers_devices()
            && !member.is_locked
            && fingerprint_matches(device.fingerprint_hash.as_deref(), fingerprint);
        if !honoured {
            return Ok(None);
        }
        let new_token = new_token();
        let rotated = remembered_devices::rotate(
            organization_id,
            &member.member_id,
            &device.device_id,
            &presented,
            &token_hash(&new_token),
            &request.id,
        )?;
        return Ok(rotated.then_some(Honoured {
            device_id: device.device_id,
            new_token,
        }));
    }
    if let Some(owner) = remembered_devices::owner_of_retired(organization_id, &presented)? {
        // The signal goes through the attempt ledger's writer, so that it is recorded even when
        // the caller rolls this transaction (and the revocation) back. It is never dropped: when
        // it cannot be queued, this login fails (and with it the caller's transaction).
        let queued = ledger::queue_event(
            &ledger_event(
                request,
                organization_id,
                &owner,
                "remembered_device.theft_suspected",
            ),
            &json!({ "reason": "a rotated device token was presented again" }),
            ledger::Purpose::Needed,
        );
        if !queued {
            return Err(MfaError::new(
                ErrorType::AttemptLedgerFull,
                "A suspected theft of a remembered device could not be recorded; try again later.",
            ));
        }
        remembered_devices::revoke(Revocation {
            organization_id,
            member_id: Some(&owner),
            device_id: None,
            request_id: &request.id,
            reason: "theft_suspected",
        })?;
    }
    Ok(None)
}

/// Revokes every remembered device of `member`, for `reason` (a factor or the member going).
pub fn revoke_all(request: &Request, member: &Member, reason: &str) -> MfaResult<i64> {
    remembered_devices::revoke(Revocation {
        organization_id: &member.organization_id,
        member_id: Some(&member.member_id),
        device_id: None,
        request_id: &request.id,
        reason,
    })
}

pub fn optional_text<'a>(
    value: Option<&'a str>,
    field: &str,
    max_chars: usize,
) -> MfaResult<Option<&'a str>> {
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() || v.chars().count() > max_chars => err(
            ErrorType::InvalidArgument,
            format!("{field} must be 1 to {max_chars} characters long."),
        ),
        Some(v) if v.chars().any(char::is_control) => err(
            ErrorType::InvalidArgument,
            format!("{field} cannot contain control characters."),
        ),
        Some(v) => Ok(Some(v)),
    }
}

/// A device id argument: the UUID `remembered_device_create` answered with.
pub fn device_id(value: Option<&str>) -> MfaResult<Option<String>> {
    value
        .map(|v| {
            uuid::Uuid::parse_str(v)
                .map(|id| id.to_string())
                .map_err(|_| {
                    crate::error::MfaError::new(
                        ErrorType::InvalidArgument,
                        "device_id must be a device_id that remembered_device_create returned.",
                    )
                })
        })
        .transpose()
}

/// Remembers the device of a login that proved a second factor, so that the member's next logins
/// from it skip MFA for the organization's `remember_device_days`.
pub fn remembered_device_create(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    intermediate_session_token: Option<&str>,
    device_fingerprint: Option<&str>,
    device_name: Option<&str>,
) -> MfaResult<Value> {
    let request = Request::new();
    let device_name = optional_text(device_name, "device_name", 200)?;
    let device_fingerprint = optional_text(device_fingerprint, "device_fingerprint", 1024)?;
    // Locked: a factor deleted or the member locked meanwhile revokes what this creates.
    let (member, org) = member::load_with_policy(organization_id, member_id, Load::Lock)?;
    if !org.remembers_devices() {
        return err(
            ErrorType::RememberedDevicesNotAllowed,
            "The organization does not remember devices (remember_device_days is 0).",
        );
    }
    if member.is_locked {
        return err(
            ErrorType::UserLockLimitReached,
            "The member is locked: no device can be remembered.",
        );
    }
    let Some(token) = intermediate_session_token else {
        return err(
            ErrorType::InsufficientFactors,
            "Remembering a device needs the login's intermediate session token.",
        );
    };
    // The login may have created its session already (its token is consumed then), but not expired.
    refuse_unless_of(&member.organization_id, token)?;
    let login = match sessions::find(
        &member.organization_id,
        &member.member_id,
        token_hash(token),
    )? {
        Some(l) if l.unexpired => l,
        _ => return Err(token_not_found()),
    };
    if !second_factors(&login.factors)
        .iter()
        .any(|f| f.allowed_by(&org, member.is_breakglass))
    {
        return err(
            ErrorType::InsufficientFactors,
            "Remembering a device needs a second factor proven in this login (a remembered device does not count).",
        );
    }
    let device_token = new_token();
    let Some(created) = remembered_devices::create(NewDevice {
        organization_id: &member.organization_id,
        member_id: &member.member_id,
        login_token_hash: login.token_hash.clone(),
        token_hash: token_hash(&device_token),
        fingerprint_hash: device_fingerprint.map(token_hash),
        device_name,
        days: org.remember_device_days,
        request_id: &request.id,
    })?
    else {
        return err(
            ErrorType::InsufficientFactors,
            "This login already remembered a device.",
        );
    };
    let mut fields = created;
    fields["device_token"] = json!(device_token);
    Ok(answer::about(&request, &member, fields))
}

/// The member's remembered devices (never a token or its hash).
pub fn remembered_devices_get(
    organization_id: Option<&str>,
    member_id: Option<&str>,
) -> MfaResult<Value> {
    let request = Request::new();
    let member = member::load(organization_id, member_id, Load::Read)?;
    let devices = remembered_devices::list(&member.organization_id, &member.member_id)?;
    Ok(answer::about(
        &request,
        &member,
        json!({ "remembered_devices": devices }),
    ))
}

/// Revokes one of the member's remembered devices, or all of them when `device_id` is NULL.
pub fn remembered_device_revoke(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    device_id: Option<&str>,
) -> MfaResult<Value> {
    let request = Request::new();
    let organization_id = validate_id(organization_id, IdKind::Organization)?;
    let member_id = validate_id(member_id, IdKind::Member)?;
    let device_id = self::device_id(device_id)?;
    let member = member::load(Some(organization_id), Some(member_id), Load::Lock)?;
    let revoked = remembered_devices::revoke(Revocation {
        organization_id: &member.organization_id,
        member_id: Some(&member.member_id),
        device_id: device_id.as_deref(),
        request_id: &request.id,
        reason: "revoked",
    })?;
    Ok(answer::about(
        &request,
        &member,
        json!({ "remembered_devices_revoked": revoked }),
    ))
}
