//! Administration of organizations: `organization_upsert`, `organization_get`,
//! `organization_delete`.

use crate::core::policy::{validate_id, IdKind};
use crate::error::SqlResult;
use crate::flow::administration;
use crate::store::jsonb::Jsonb;
use crate::store::organizations;
use pgrx::prelude::*;

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
    Ok(Jsonb(administration::organization_upsert(
        organization_id,
        mfa_policy,
        mfa_methods,
        allowed_mfa_methods,
        remember_device_days,
    )?))
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
    Ok(administration::organization_delete(organization_id)?)
}
