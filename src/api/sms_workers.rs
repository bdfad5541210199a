//! Tenant-operated SMS workers: `sms_worker_grant` binds a worker role to an organization, after
//! which that role handles the messages of its organizations only.

use crate::store::spi::{self, Request};
use crate::error::{err, ErrorType, MfaResult, OrRaise};
use crate::store::jsonb::Jsonb;
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
    let role = spi::typed_row(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1",
        &[role_name.into()],
        |row| row.get::<bool>(1),
    )?;
    match role {
        None => {
            return err(
                ErrorType::InvalidArgument,
                format!("There is no role {role_name}."),
            )
        }
        Some(Some(true)) if grant => {
            return err(
                ErrorType::InvalidArgument,
                "A superuser cannot be bound to organizations: use a role of its own for each tenant's worker.",
            )
        }
        _ => {}
    }
    crate::api::organizations::require_exists(organization_id)?;
    // Bound to nothing, a worker role serves every organization: the last binding goes only once
    // the role can no longer act as a worker.
    let last_while_worker = !grant
        && spi::typed_row(
            "SELECT count(*) = 1 AND bool_and(organization_id = $2)
                    AND pg_catalog.pg_has_role($1::name, 'mfa_sms_worker', 'MEMBER')
               FROM mfa.sms_worker_grants WHERE role_name = $1",
            &[role_name.into(), organization_id.into()],
            |row| row.get::<bool>(1),
        )?
        .flatten()
        .unwrap_or(false);
    if last_while_worker {
        return err(
            ErrorType::InvalidArgument,
            format!("This is {role_name}'s last organization: without a binding it would serve every organization. REVOKE mfa_sms_worker FROM {role_name} first."),
        );
    }
    let statement = if grant {
        "WITH granted AS (
             INSERT INTO mfa.sms_worker_grants (organization_id, role_name) VALUES ($1, $2)
             ON CONFLICT DO NOTHING RETURNING organization_id)
         INSERT INTO mfa.events (organization_id, request_id, event_type, details)
         SELECT $1, $3::uuid, 'sms_worker.granted', jsonb_build_object('role', $2::text) FROM granted"
    } else {
        "WITH revoked AS (
             DELETE FROM mfa.sms_worker_grants WHERE organization_id = $1 AND role_name = $2
             RETURNING organization_id)
         INSERT INTO mfa.events (organization_id, request_id, event_type, details)
         SELECT $1, $3::uuid, 'sms_worker.revoked', jsonb_build_object('role', $2::text) FROM revoked"
    };
    spi::execute(
        statement,
        &[
            organization_id.into(),
            role_name.into(),
            request.id.as_str().into(),
        ],
    )?;
    let organizations = spi::typed_row(
        "SELECT coalesce(array_agg(organization_id ORDER BY organization_id), '{}')
           FROM mfa.sms_worker_grants WHERE role_name = $1",
        &[role_name.into()],
        |row| row.get::<Vec<String>>(1),
    )?
    .flatten()
    .unwrap_or_default();
    Ok(json!({
        "request_id": request.id,
        "role": role_name,
        "organization_ids": organizations,
    }))
}

/// Binds a worker role (or a group role of tenant workers) to an organization: from now on it
/// claims, completes and fails only the messages of the organizations it is bound to.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn sms_worker_grant(role_name: Option<&str>, organization_id: Option<&str>) -> Jsonb {
    Jsonb(change(role_name, organization_id, true).or_raise())
}

/// Takes an organization from a worker role's binding (bound to none, it serves every
/// organization again).
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn sms_worker_revoke(role_name: Option<&str>, organization_id: Option<&str>) -> Jsonb {
    Jsonb(change(role_name, organization_id, false).or_raise())
}
