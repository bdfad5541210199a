//! Remembered devices (adaptive MFA): `remembered_device_create` after a login's second factor,
//! their use by `primary_authenticate` (`recognize`: the token rotates on every use, and a rotated
//! token presented again revokes the member's devices), `remembered_devices_get` and
//! `remembered_device_revoke`.

use crate::core::crypto::{new_token, token_hash};
use crate::core::factor::second_factors;
use crate::core::policy::{validate_id, IdKind};
use crate::error::{err, ErrorType, SqlResult};
use crate::flow::answer;
use crate::flow::devices::{device_id, optional_text};
use crate::flow::member::{self, Load};
use crate::flow::token::{token_not_found, token_unknown_here};
use crate::store::audit::Request;
use crate::store::jsonb::Jsonb;
use crate::store::remembered_devices::{self, NewDevice, Revocation};
use crate::store::sessions;
use pgrx::prelude::*;
use serde_json::json;

/// Remembers the device of a login that proved a second factor, so that the member's next logins
/// from it skip MFA for the organization's `remember_device_days`.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn remembered_device_create(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    intermediate_session_token: Option<&str>,
    device_fingerprint: default!(Option<&str>, "NULL"),
    device_name: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
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
    let login = match sessions::find(
        &member.organization_id,
        &member.member_id,
        token_hash(token),
    )? {
        Some(l) if l.unexpired => l,
        Some(_) => return Err(token_not_found().into()),
        None => return Err(token_unknown_here(&member.organization_id, token)?.into()),
    };
    if !second_factors(&login.factors)
        .iter()
        .any(|f| org.allows(f.method(), member.is_breakglass))
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
    Ok(Jsonb(answer::about(&request, &member, fields)))
}

/// The member's remembered devices (never a token or its hash).
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn remembered_devices_get(
    organization_id: Option<&str>,
    member_id: Option<&str>,
) -> SqlResult<Jsonb> {
    let request = Request::new();
    let member = member::load(organization_id, member_id, Load::Read)?;
    let devices = remembered_devices::list(&member.organization_id, &member.member_id)?;
    Ok(Jsonb(answer::about(
        &request,
        &member,
        json!({ "remembered_devices": devices }),
    )))
}

/// Revokes one of the member's remembered devices, or all of them when `device_id` is NULL.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn remembered_device_revoke(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    device_id: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
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
    Ok(Jsonb(answer::about(
        &request,
        &member,
        json!({ "remembered_devices_revoked": revoked }),
    )))
}
