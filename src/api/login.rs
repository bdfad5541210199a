//! `primary_authenticate` and `step_up_start` issue an intermediate session token (`flow::login`);
//! the factor functions find the login it stands for (`flow::token`); the session gate consumes it
//! (`api::gate`).

use crate::core::policy::PrimaryFactor;
use crate::error::SqlResult;
use crate::flow::login::{start, PresentedDevice, Start};
use crate::store::jsonb::Jsonb;
use pgrx::prelude::*;

/// Starts a login after the application's own primary check.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn primary_authenticate(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    method: default!(Option<&str>, "'password'"),
    locale: default!(Option<&str>, "'en'"),
    device_token: default!(Option<&str>, "NULL"),
    device_fingerprint: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    let method = PrimaryFactor::parse(method.unwrap_or("password"))?;
    Ok(Jsonb(start(
        organization_id,
        member_id,
        Start::Login(method),
        locale.unwrap_or("en"),
        device_token.map(|token| PresentedDevice {
            token,
            fingerprint: device_fingerprint,
        }),
    )?))
}

/// Starts a step-up of an existing session: a token that carries no primary factor, for the
/// factor functions; presented in a guarded sessions table's token column, it raises the
/// session's assurance.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn step_up_start(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    locale: default!(Option<&str>, "'en'"),
) -> SqlResult<Jsonb> {
    Ok(Jsonb(start(
        organization_id,
        member_id,
        Start::StepUp,
        locale.unwrap_or("en"),
        None,
    )?))
}
