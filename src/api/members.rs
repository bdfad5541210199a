//! Administration of members: `member_upsert`, `member_get`, `member_delete`, `member_unlock`,
//! `member_delete_mfa_phone_number`.

use crate::core::phone::{mask_e164, parse_phone_number};
use crate::core::policy::{parse_default_method, validate_id, IdKind, MfaMethod};
use crate::error::{err, ErrorType, SqlResult};
use crate::flow::answer;
use crate::flow::attempt::ledger_event;
use crate::flow::member::{self, Load};
use crate::server::ledger;
use crate::server::settings;
use crate::store::audit::Request;
use crate::store::cluster;
use crate::store::jsonb::Jsonb;
use crate::store::members::{self, SettingsChange};
use crate::store::organizations;
use pgrx::prelude::*;
use serde_json::json;

/// Creates a member or changes their MFA settings; NULL keeps a value (or its default).
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_upsert(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    mfa_phone_number: default!(Option<&str>, "NULL"),
    mfa_enrolled: default!(Option<bool>, "NULL"),
    default_mfa_method: default!(Option<&str>, "NULL"),
    is_breakglass: default!(Option<bool>, "NULL"),
) -> SqlResult<Jsonb> {
    let request = Request::new();
    let org = validate_id(organization_id, IdKind::Organization)?;
    let mem = validate_id(member_id, IdKind::Member)?;
    let phone = mfa_phone_number.map(parse_phone_number).transpose()?;
    let default_method = default_mfa_method.map(parse_default_method).transpose()?;
    let Some(created) = members::create_if_missing(org, mem)? else {
        return Err(organizations::not_found(org).into());
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
        }),
    );
    members::update_settings(
        &event,
        &SettingsChange {
            new_phone,
            mfa_enrolled,
            is_breakglass,
            default_mfa_method: default_method.map(|m| m.as_str()),
        },
    )?;
    Ok(Jsonb(answer::member_now(org, mem)?))
}

#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_get(organization_id: Option<&str>, member_id: Option<&str>) -> SqlResult<Jsonb> {
    let member = member::load(organization_id, member_id, Load::Read)?;
    Ok(Jsonb(answer::member(&member)))
}

/// Deletes a member with their factors, codes, pending messages and logins in progress.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_delete(organization_id: Option<&str>, member_id: Option<&str>) -> SqlResult<()> {
    let request = Request::new();
    let m = member::load(organization_id, member_id, Load::Lock)?;
    members::delete(&m)?;
    request.audit(
        &m.organization_id,
        Some(&m.member_id),
        "member.deleted",
        json!({}),
    )?;
    Ok(())
}

/// Lifts a member's lock and resets their failed-attempt count.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_unlock(organization_id: Option<&str>, member_id: Option<&str>) -> SqlResult<Jsonb> {
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
    Ok(Jsonb(answer::member_now(&m.organization_id, &m.member_id)?))
}

/// Removes a member's phone number (and its live code); SMS stops being their default method.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_delete_mfa_phone_number(
    organization_id: Option<&str>,
    member_id: Option<&str>,
) -> SqlResult<Jsonb> {
    let request = Request::new();
    let m = member::load(organization_id, member_id, Load::Lock)?;
    let Some(phone) = &m.mfa_phone_number else {
        return err(
            ErrorType::MemberPhoneNumberNotFound,
            "The member has no phone number.",
        );
    };
    members::remove_phone(&m)?;
    crate::flow::devices::revoke_all(&request, &m, "phone_number_deleted")?;
    request.audit(
        &m.organization_id,
        Some(&m.member_id),
        "member.phone_number_deleted",
        json!({ "mfa_phone_number": mask_e164(phone) }),
    )?;
    Ok(Jsonb(answer::member_now(&m.organization_id, &m.member_id)?))
}
