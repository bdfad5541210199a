//! Administration of organizations: `organization_upsert`, `organization_get`,
//! `organization_delete`, and loading an organization's policy for the other modules.

use crate::store::spi::{self, Request};
use crate::error::{err, ErrorType, MfaResult, OrRaise};
use crate::store::jsonb::Jsonb;
use crate::core::policy::{validate_id, IdKind, MfaMethod, MfaMethods, MfaPolicy, OrganizationPolicy};
use pgrx::prelude::*;
use pgrx::spi::SpiHeapTupleData;
use serde::Deserialize;
use serde_json::{json, Value};

/// An organization's row, as `to_jsonb` prints it.
#[derive(Deserialize)]
struct OrganizationRow {
    mfa_policy: String,
    mfa_methods: String,
    allowed_mfa_methods: Vec<String>,
}

/// The policy from a row's `mfa_policy`, `mfa_methods` and `allowed_mfa_methods` columns, at
/// ordinals `first`, `first + 1` and `first + 2`.
pub fn read_policy(
    row: &SpiHeapTupleData,
    first: usize,
) -> Result<OrganizationPolicy, pgrx::spi::Error> {
    Ok(OrganizationRow {
        mfa_policy: row.get::<String>(first)?.unwrap_or_default(),
        mfa_methods: row.get::<String>(first + 1)?.unwrap_or_default(),
        allowed_mfa_methods: row.get::<Vec<String>>(first + 2)?.unwrap_or_default(),
    }
    .policy())
}

impl OrganizationRow {
    fn policy(&self) -> OrganizationPolicy {
        // The table's CHECK constraints guarantee the values parse.
        OrganizationPolicy {
            mfa_policy: MfaPolicy::parse(&self.mfa_policy).expect("checked by the table"),
            mfa_methods: MfaMethods::parse(&self.mfa_methods).expect("checked by the table"),
            allowed_mfa_methods: self
                .allowed_mfa_methods
                .iter()
                .map(|m| MfaMethod::parse(m).expect("checked by the table"))
                .collect(),
        }
    }
}

fn find(organization_id: &str, lock: bool) -> MfaResult<Option<OrganizationPolicy>> {
    let sql = if lock {
        "SELECT to_jsonb(o) FROM mfa.organizations o WHERE organization_id = $1 FOR UPDATE"
    } else {
        "SELECT to_jsonb(o) FROM mfa.organizations o WHERE organization_id = $1"
    };
    Ok(spi::row::<OrganizationRow>(sql, &[organization_id.into()])?.map(|r| r.policy()))
}

pub fn not_found(organization_id: &str) -> crate::error::MfaError {
    crate::error::MfaError::new(
        ErrorType::OrganizationNotFound,
        format!(
            "No organization {:?}.",
            crate::core::policy::truncate_for_message(organization_id)
        ),
    )
}

/// Raises `organization_not_found` unless the organization exists.
pub fn require_exists(organization_id: &str) -> MfaResult<()> {
    let found = spi::typed_row(
        "SELECT true FROM mfa.organizations WHERE organization_id = $1",
        &[organization_id.into()],
        |row| row.get::<bool>(1),
    )?;
    match found {
        Some(_) => Ok(()),
        None => Err(not_found(organization_id)),
    }
}

pub fn object(organization_id: &str) -> MfaResult<Value> {
    spi::json_row(
        "SELECT jsonb_build_object(
                    'organization_id', organization_id, 'mfa_policy', mfa_policy, 'mfa_methods', mfa_methods,
                    'allowed_mfa_methods', to_jsonb(allowed_mfa_methods),
                    'created_at', created_at, 'updated_at', updated_at)
           FROM mfa.organizations WHERE organization_id = $1",
        &[organization_id.into()],
    )?
    .ok_or_else(|| not_found(organization_id))
}

fn upsert(
    organization_id: Option<&str>,
    mfa_policy: Option<&str>,
    mfa_methods: Option<&str>,
    allowed_mfa_methods: Option<Vec<Option<String>>>,
) -> MfaResult<Value> {
    let request = Request::new();
    let organization_id = validate_id(organization_id, IdKind::Organization)?;
    let current = find(organization_id, true)?;
    let next = current.clone().unwrap_or_default().updated(
        mfa_policy,
        mfa_methods,
        allowed_mfa_methods,
    )?;
    let allowed: Vec<&str> = next.allowed_names();
    spi::execute(
        "INSERT INTO mfa.organizations (organization_id, mfa_policy, mfa_methods, allowed_mfa_methods)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (organization_id) DO UPDATE
            SET mfa_policy = EXCLUDED.mfa_policy,
                mfa_methods = EXCLUDED.mfa_methods,
                allowed_mfa_methods = EXCLUDED.allowed_mfa_methods,
                updated_at = now()",
        &[
            organization_id.into(),
            next.mfa_policy.as_str().into(),
            next.mfa_methods.as_str().into(),
            allowed.clone().into(),
        ],
    )?;
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
            "allowed_mfa_methods": allowed,
        }),
    )?;
    object(organization_id)
}

/// Creates an organization or changes its MFA settings; NULL keeps a value (or its default).
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn organization_upsert(
    organization_id: Option<&str>,
    mfa_policy: default!(Option<&str>, "NULL"),
    mfa_methods: default!(Option<&str>, "NULL"),
    allowed_mfa_methods: default!(Option<Vec<Option<String>>>, "NULL"),
) -> Jsonb {
    Jsonb(
        upsert(
            organization_id,
            mfa_policy,
            mfa_methods,
            allowed_mfa_methods,
        )
        .or_raise(),
    )
}

#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn organization_get(organization_id: Option<&str>) -> Jsonb {
    let get =
        || -> MfaResult<Value> { object(validate_id(organization_id, IdKind::Organization)?) };
    Jsonb(get().or_raise())
}

/// Deletes an organization with its members, their factors, codes, pending messages and logins.
/// The audit trail stays.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn organization_delete(organization_id: Option<&str>) {
    let delete = || -> MfaResult<()> {
        let request = Request::new();
        let organization_id = validate_id(organization_id, IdKind::Organization)?;
        let members: Option<i64> = spi::row(
            "WITH gone AS (DELETE FROM mfa.organizations WHERE organization_id = $1 RETURNING organization_id)
             SELECT to_jsonb((SELECT count(*) FROM mfa.members WHERE organization_id = $1))
               FROM gone",
            &[organization_id.into()],
        )?;
        let Some(members) = members else {
            return err(
                ErrorType::OrganizationNotFound,
                not_found(organization_id).message,
            );
        };
        request.audit(
            organization_id,
            None,
            "organization.deleted",
            json!({ "members_deleted": members }),
        )
    };
    delete().or_raise()
}
