//! Administration of members: `member_upsert`, `member_get`, `member_delete`, `member_unlock`,
//! `member_delete_mfa_phone_number`, `member_reset_mfa`, `members_import`.

use crate::error::{ErrorType, MfaError, SqlResult};
use crate::flow::{administration, import};
use crate::store::jsonb::{Jsonb, JsonbArgument};
use pgrx::prelude::*;

/// Creates a member or changes their MFA settings; NULL keeps a value (or its default).
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::too_many_arguments)] // the SQL function's arguments, named as Stytch names them
fn member_upsert(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    mfa_phone_number: default!(Option<&str>, "NULL"),
    mfa_enrolled: default!(Option<bool>, "NULL"),
    default_mfa_method: default!(Option<&str>, "NULL"),
    is_breakglass: default!(Option<bool>, "NULL"),
    replace_mfa_phone_number: default!(Option<bool>, false),
    mfa_phone_number_verified: default!(Option<bool>, "NULL"),
) -> SqlResult<Jsonb> {
    Ok(Jsonb(administration::member_upsert(
        organization_id,
        member_id,
        administration::MemberSettings {
            mfa_phone_number,
            mfa_enrolled,
            default_mfa_method,
            is_breakglass,
            replace_mfa_phone_number: replace_mfa_phone_number.unwrap_or(false),
            mfa_phone_number_verified,
        },
    )?))
}

#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_get(organization_id: Option<&str>, member_id: Option<&str>) -> SqlResult<Jsonb> {
    Ok(Jsonb(administration::member_get(
        organization_id,
        member_id,
    )?))
}

/// Deletes a member with their factors, codes, pending messages and logins in progress.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_delete(organization_id: Option<&str>, member_id: Option<&str>) -> SqlResult<()> {
    Ok(administration::member_delete(organization_id, member_id)?)
}

/// Lifts a member's lock and resets their failed-attempt count.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_unlock(organization_id: Option<&str>, member_id: Option<&str>) -> SqlResult<Jsonb> {
    Ok(Jsonb(administration::member_unlock(
        organization_id,
        member_id,
    )?))
}

/// Removes a member's phone number (and its live code); SMS stops being their default method.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_delete_mfa_phone_number(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    intermediate_session_token: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    Ok(Jsonb(administration::member_delete_mfa_phone_number(
        organization_id,
        member_id,
        intermediate_session_token,
    )?))
}

/// Removes every factor of a member (the support desk's "lost my phone").
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_reset_mfa(organization_id: Option<&str>, member_id: Option<&str>) -> SqlResult<Jsonb> {
    Ok(Jsonb(administration::member_reset_mfa(
        organization_id,
        member_id,
    )?))
}

/// Imports many members of one organization (a migration): each with their phone (verified or
/// not) and authenticator app; every member is reported, one that fails leaves nothing behind.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn members_import(
    organization_id: Option<&str>,
    members: Option<JsonbArgument>,
) -> SqlResult<Jsonb> {
    let members = match members {
        Some(JsonbArgument(Ok(value))) => Some(value),
        Some(JsonbArgument(Err(why))) => {
            return Err(MfaError::new(ErrorType::InvalidArgument, format!("members: {why}")).into())
        }
        None => None,
    };
    Ok(Jsonb(import::members_import(
        organization_id,
        members.as_ref(),
    )?))
}
