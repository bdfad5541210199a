//! The organizations tenant-operated SMS workers are bound to (`mfa.sms_worker_grants`).

use crate::error::MfaResult;
use crate::store::spi;

/// A role as a binding sees it.
pub struct Role {
    pub oid: u32,
    pub superuser: bool,
}

/// The role named `role_name`; `None` when there is no such role.
pub fn role(role_name: &str) -> MfaResult<Option<Role>> {
    spi::typed_row(
        "SELECT oid, rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1",
        &[role_name.into()],
        |row| {
            Ok(Role {
                oid: row
                    .get::<pgrx::pg_sys::Oid>(1)?
                    .map_or(0, |oid| oid.to_u32()),
                superuser: row.get::<bool>(2)?.unwrap_or(false),
            })
        },
    )
}

/// Whether `organization_id` is the only organization of a role that is still a worker.
pub fn is_last_binding_of_worker(role: &Role, organization_id: &str) -> MfaResult<bool> {
    Ok(spi::typed_row(
        "SELECT count(*) = 1 AND bool_and(organization_id = $2)
                AND pg_catalog.pg_has_role($1, 'mfa_sms_worker', 'MEMBER')
           FROM mfa.sms_worker_grants WHERE role_oid = $1",
        &[
            pgrx::pg_sys::Oid::from(role.oid).into(),
            organization_id.into(),
        ],
        |row| row.get::<bool>(1),
    )?
    .flatten()
    .unwrap_or(false))
}

/// Binds (`grant`) or unbinds the role and the organization, with an audit event when that
/// changed anything. A grant names the role by its oid and its current name (a row of an earlier
/// name of the role, or of a dropped role of this name, is replaced); a revoke takes the
/// organization's rows of either.
pub fn change(
    role_name: &str,
    role: &Role,
    organization_id: &str,
    grant: bool,
    request_id: &str,
) -> MfaResult<()> {
    let statement = if grant {
        "WITH stale AS (
             DELETE FROM mfa.sms_worker_grants
              WHERE organization_id = $1 AND role_oid = $4 AND role_name <> $2),
         granted AS (
             INSERT INTO mfa.sms_worker_grants AS g (organization_id, role_name, role_oid) VALUES ($1, $2, $4)
             ON CONFLICT (organization_id, role_name) DO UPDATE SET role_oid = EXCLUDED.role_oid
              WHERE g.role_oid IS DISTINCT FROM EXCLUDED.role_oid
             RETURNING organization_id)
         INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
         SELECT $1, $3::uuid, 'sms_worker.granted', NULL, jsonb_build_object('role', $2::text)
           FROM granted"
    } else {
        "WITH revoked AS (
             DELETE FROM mfa.sms_worker_grants WHERE organization_id = $1 AND (role_name = $2 OR role_oid = $4)
             RETURNING organization_id)
         INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
         SELECT $1, $3::uuid, 'sms_worker.revoked', NULL, jsonb_build_object('role', $2::text)
           FROM (SELECT FROM revoked LIMIT 1) r"
    };
    spi::execute(
        statement,
        &[
            organization_id.into(),
            role_name.into(),
            request_id.into(),
            pgrx::pg_sys::Oid::from(role.oid).into(),
        ],
    )?;
    Ok(())
}

/// The organizations the role is bound to.
pub fn bindings(role_name: &str, role: &Role) -> MfaResult<Vec<String>> {
    Ok(spi::typed_row(
        "SELECT coalesce(array_agg(organization_id ORDER BY organization_id), '{}')
           FROM mfa.sms_worker_grants WHERE role_oid = $2 AND role_name = $1",
        &[role_name.into(), pgrx::pg_sys::Oid::from(role.oid).into()],
        |row| row.get::<Vec<String>>(1),
    )?
    .flatten()
    .unwrap_or_default())
}

/// The worker roles bound to `organization_id` and to no other organization: deleting it would
/// leave them bound to nothing, serving every organization.
pub fn workers_bound_only_to(organization_id: &str) -> MfaResult<Vec<String>> {
    Ok(spi::typed_row(
        "SELECT coalesce(array_agg(r.rolname::text ORDER BY r.rolname), '{}')
           FROM pg_catalog.pg_roles r
          WHERE NOT r.rolsuper AND pg_catalog.pg_has_role(r.oid, 'mfa_sms_worker', 'MEMBER')
            AND EXISTS (SELECT FROM mfa.sms_worker_grants g
                         WHERE g.organization_id = $1 AND (g.role_oid = r.oid OR g.role_name = r.rolname))
            AND NOT EXISTS (SELECT FROM mfa.sms_worker_grants g
                             WHERE g.organization_id <> $1 AND (g.role_oid = r.oid OR g.role_name = r.rolname))",
        &[organization_id.into()],
        |row| row.get::<Vec<String>>(1),
    )?
    .flatten()
    .unwrap_or_default())
}
