//! Remembered devices (adaptive MFA): `remembered_device_create` after a login's second factor,
//! their use by `primary_authenticate` (`recognize`: the token rotates on every use, and a rotated
//! token presented again revokes the member's devices), `remembered_devices_get` and
//! `remembered_device_revoke`.

use crate::error::SqlResult;
use crate::flow::devices;
use crate::store::jsonb::Jsonb;
use pgrx::prelude::*;

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
    Ok(Jsonb(devices::remembered_device_create(
        organization_id,
        member_id,
        intermediate_session_token,
        device_fingerprint,
        device_name,
    )?))
}

/// The member's remembered devices (never a token or its hash).
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn remembered_devices_get(
    organization_id: Option<&str>,
    member_id: Option<&str>,
) -> SqlResult<Jsonb> {
    Ok(Jsonb(devices::remembered_devices_get(
        organization_id,
        member_id,
    )?))
}

/// Revokes one of the member's remembered devices, or all of them when `device_id` is NULL.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn remembered_device_revoke(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    device_id: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    Ok(Jsonb(devices::remembered_device_revoke(
        organization_id,
        member_id,
        device_id,
    )?))
}
