//! Remembered devices: recognizing one at a login (the token rotates on every use, a rotated token
//! presented again revokes the member's devices) and revoking all of a member's.

use crate::core::crypto::{constant_time_eq, new_token, token_hash};
use crate::core::policy::OrganizationPolicy;
use crate::error::{err, ErrorType, MfaError, MfaResult};
use crate::flow::attempt::ledger_event;
use crate::server::ledger;
use crate::store::audit::Request;
use crate::store::members::Member;
use crate::store::remembered_devices::{self, Revocation};
use serde_json::json;

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
