//! Tenant-operated SMS workers: `sms_worker_grant` binds a worker role to an organization, after
//! which that role handles the messages of its organizations only.

use crate::error::{err, ErrorType, MfaResult, SqlResult};
use crate::store::audit::Request;
use crate::store::jsonb::Jsonb;
use crate::store::{organizations, sms_workers};
use pgrx::prelude::*;
use serde_json::{json, Value};

fn change(role_name: Option<&str>, organization_id: Option<&str>, grant: bool) -> MfaResult<Value> {
    let (Some(role_name), Some(organization_id)) = (role_name, organization_id) else {
        return err(
            ErrorType::InvalidArgument,
            "The role and the organization must not be NULL.",
        );
    };
    let request = Request::new();
    let role = match sms_workers::role(role_name)? {
        None => {
            return err(
                ErrorType::InvalidArgument,
                format!("There is no role {role_name}."),
            )
        }
        Some(role) if grant && role.superuser => {
            return err(
                ErrorType::InvalidArgument,
                "A superuser cannot be bound to organizations: use a role of its own for each tenant's worker.",
            )
        }
        Some(role) => role,
    };
    organizations::require_exists(organization_id)?;
    // Bound to nothing, a worker role serves every organization: the last binding goes only once
    // the role can no longer act as a worker.
    if !grant && sms_workers::is_last_binding_of_worker(&role, organization_id)? {
        return err(
            ErrorType::InvalidArgument,
            format!("This is {role_name}'s last organization: without a binding it would serve every organization. REVOKE mfa_sms_worker FROM {role_name} first."),
        );
    }
    sms_workers::change(role_name, &role, organization_id, grant, &request.id)?;
    Ok(json!({
        "request_id": request.id,
        "role": role_name,
        "organization_ids": sms_workers::bindings(role_name, &role)?,
    }))
}

/// Binds a worker role (or a group role of tenant workers) to an organization: from now on it
/// claims, completes and fails only the messages of the organizations it is bound to.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn sms_worker_grant(role_name: Option<&str>, organization_id: Option<&str>) -> SqlResult<Jsonb> {
    Ok(Jsonb(change(role_name, organization_id, true)?))
}

/// Takes an organization from a worker role's binding (bound to none, it serves every
/// organization again).
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn sms_worker_revoke(role_name: Option<&str>, organization_id: Option<&str>) -> SqlResult<Jsonb> {
    Ok(Jsonb(change(role_name, organization_id, false)?))
}
