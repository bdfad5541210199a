//! Organizations as stored: their MFA policy and every write to `mfa.organizations`.

use crate::core::policy::{truncate_for_message, OrganizationPolicy};
use crate::error::{ErrorType, MfaError, MfaResult};
use crate::store::members::read_policy;
use crate::store::spi;
use serde_json::Value;

pub fn not_found(organization_id: &str) -> MfaError {
    MfaError::new(
        ErrorType::OrganizationNotFound,
        format!(
            "No organization {:?}.",
            truncate_for_message(organization_id)
        ),
    )
}

/// The organization's policy, locked until the end of the transaction (`organization_upsert`
/// serializes on it); `None` when there is no such organization.
pub fn lock_policy(organization_id: &str) -> MfaResult<Option<OrganizationPolicy>> {
    spi::typed_row(
        "SELECT mfa_policy, mfa_methods, allowed_mfa_methods, remember_device_days FROM mfa.organizations
          WHERE organization_id = $1 FOR UPDATE",
        &[organization_id.into()],
        read_policy,
    )
}

/// Raises `organization_not_found` unless the organization exists.
pub fn require_exists(organization_id: &str) -> MfaResult<()> {
    let found = spi::execute(
        "SELECT FROM mfa.organizations WHERE organization_id = $1",
        &[organization_id.into()],
    )?;
    match found {
        0 => Err(not_found(organization_id)),
        _ => Ok(()),
    }
}

/// The organization object the API answers with.
pub fn object(organization_id: &str) -> MfaResult<Value> {
    spi::json_row(
        "SELECT jsonb_build_object(
                    'organization_id', organization_id, 'mfa_policy', mfa_policy, 'mfa_methods', mfa_methods,
                    'allowed_mfa_methods', to_jsonb(allowed_mfa_methods),
                    'remember_device_days', remember_device_days,
                    'created_at', created_at, 'updated_at', updated_at)
           FROM mfa.organizations WHERE organization_id = $1",
        &[organization_id.into()],
    )?
    .ok_or_else(|| not_found(organization_id))
}

/// Creates the organization or replaces its policy.
pub fn write_policy(organization_id: &str, policy: &OrganizationPolicy) -> MfaResult<()> {
    spi::execute(
        "INSERT INTO mfa.organizations
                (organization_id, mfa_policy, mfa_methods, allowed_mfa_methods, remember_device_days)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (organization_id) DO UPDATE
            SET mfa_policy = EXCLUDED.mfa_policy,
                mfa_methods = EXCLUDED.mfa_methods,
                allowed_mfa_methods = EXCLUDED.allowed_mfa_methods,
                remember_device_days = EXCLUDED.remember_device_days,
                -- The row's default (now()): Citus takes only immutable functions in DO UPDATE SET.
                updated_at = EXCLUDED.updated_at",
        &[
            organization_id.into(),
            policy.mfa_policy.as_str().into(),
            policy.mfa_methods.as_str().into(),
            policy.allowed_names().into(),
            policy.remember_device_days.into(),
        ],
    )?;
    Ok(())
}

/// Deletes the organization with everything of its members (foreign keys ON DELETE CASCADE; the
/// audit trail stays). Returns how many members it had, `None` when there was no organization.
pub fn delete(organization_id: &str) -> MfaResult<Option<i64>> {
    Ok(spi::typed_row(
        "WITH gone AS (DELETE FROM mfa.organizations WHERE organization_id = $1 RETURNING organization_id)
         SELECT (SELECT count(*) FROM mfa.members WHERE organization_id = $1) FROM gone",
        &[organization_id.into()],
        |row| row.get::<i64>(1),
    )?
    .flatten())
}

/// Every organization's id (`organizations_all.sql`).
pub fn all_ids() -> MfaResult<Vec<String>> {
    spi::text_column(include_str!("sql/organizations_all.sql"), &[])
}
