//! The organizations tenant-operated SMS workers are bound to (`mfa.sms_worker_grants`).

use crate::error::MfaResult;
use crate::store::spi;

/// Whether role `role_name` is a superuser; `None` when there is no such role.
pub fn role_is_superuser(role_name: &str) -> MfaResult<Option<bool>> {
    Ok(spi::typed_row(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1",
        &[role_name.into()],
        |row| row.get::<bool>(1),
    )?
    .map(|superuser| superuser.unwrap_or(false)))
}

/// Whether `organization_id` is the only organization of a role that is still a worker.
pub fn is_last_binding_of_worker(role_name: &str, organization_id: &str) -> MfaResult<bool> {
    Ok(spi::typed_row(
        "SELECT count(*) = 1 AND bool_and(organization_id = $2)
                AND pg_catalog.pg_has_role($1::name, 'mfa_sms_worker', 'MEMBER')
           FROM mfa.sms_worker_grants WHERE role_name = $1",
        &[role_name.into(), organization_id.into()],
        |row| row.get::<bool>(1),
    )?
    .flatten()
    .unwrap_or(false))
}

/// Binds (`grant`) or unbinds the role and the organization, with an audit event when that
/// changed anything.
pub fn change(
    role_name: &str,
    organization_id: &str,
    grant: bool,
    request_id: &str,
) -> MfaResult<()> {
    let statement = if grant {
        "WITH granted AS (
             INSERT INTO mfa.sms_worker_grants (organization_id, role_name) VALUES ($1, $2)
             ON CONFLICT DO NOTHING RETURNING organization_id)
         INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
         SELECT $1, $3::uuid, 'sms_worker.granted', NULL, jsonb_build_object('role', $2::text)
           FROM granted"
    } else {
        "WITH revoked AS (
             DELETE FROM mfa.sms_worker_grants WHERE organization_id = $1 AND role_name = $2
             RETURNING organization_id)
         INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
         SELECT $1, $3::uuid, 'sms_worker.revoked', NULL, jsonb_build_object('role', $2::text)
           FROM revoked"
    };
    spi::execute(
        statement,
        &[organization_id.into(), role_name.into(), request_id.into()],
    )?;
    Ok(())
}

/// The organizations the role is bound to.
pub fn bindings(role_name: &str) -> MfaResult<Vec<String>> {
    Ok(spi::typed_row(
        "SELECT coalesce(array_agg(organization_id ORDER BY organization_id), '{}')
           FROM mfa.sms_worker_grants WHERE role_name = $1",
        &[role_name.into()],
        |row| row.get::<Vec<String>>(1),
    )?
    .flatten()
    .unwrap_or_default())
}
