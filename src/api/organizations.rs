//! Administration of organizations: `organization_upsert`, `organization_get`,
//! `organization_delete`.

use crate::core::policy::{validate_id, IdKind};
use crate::error::{ErrorType, MfaError, SqlResult};
use crate::store::audit::Request;
use crate::store::jsonb::Jsonb;
use crate::store::remembered_devices::{self, Revocation};
use crate::store::{organizations, sms_workers};
use pgrx::prelude::*;
use serde_json::json;

pub use crate::store::organizations::not_found;

/// Creates an organization or changes its MFA settings; NULL keeps a value (or its default).
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn organization_upsert(
    organization_id: Option<&str>,
    mfa_policy: default!(Option<&str>, "NULL"),
    mfa_methods: default!(Option<&str>, "NULL"),
    allowed_mfa_methods: default!(Option<Vec<Option<String>>>, "NULL"),
    remember_device_days: default!(Option<i32>, "NULL"),
) -> SqlResult<Jsonb> {
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
    Ok(Jsonb(organizations::object(organization_id)?))
}

#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn organization_get(organization_id: Option<&str>) -> SqlResult<Jsonb> {
    let organization_id = validate_id(organization_id, IdKind::Organization)?;
    Ok(Jsonb(organizations::object(organization_id)?))
}

/// Deletes an organization with its members, their factors, codes, pending messages and logins.
/// The audit trail stays.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn organization_delete(organization_id: Option<&str>) -> SqlResult<()> {
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
        )
        .into());
    }
    let Some(members) = organizations::delete(organization_id)? else {
        return Err(not_found(organization_id).into());
    };
    request.audit(
        organization_id,
        None,
        "organization.deleted",
        json!({ "members_deleted": members }),
    )?;
    Ok(())
}
