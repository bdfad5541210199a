//! The administrators' reports: `members_search` and `events_search`.

use crate::error::SqlResult;
use crate::flow::reports;
use crate::store::jsonb::{Jsonb, JsonbArgument};
use pgrx::prelude::*;

/// A page of an organization's members that pass `filter` (mfa_enrolled, has_totp, has_phone,
/// locked, breakglass, no_factor, last_mfa_before, last_mfa_after), in member_id order.
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn members_search(
    organization_id: Option<&str>,
    filter: default!(Option<JsonbArgument>, "'{}'"),
    cursor: default!(Option<&str>, "NULL"),
    page_size: default!(Option<i32>, 100),
) -> SqlResult<Jsonb> {
    Ok(Jsonb(reports::members_search(
        organization_id,
        filter.map(|f| f.0),
        cursor,
        page_size,
    )?))
}

/// A page of an organization's audit events that pass `filter` (member_id, event_type, after,
/// before), newest first.
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn events_search(
    organization_id: Option<&str>,
    filter: default!(Option<JsonbArgument>, "'{}'"),
    cursor: default!(Option<&str>, "NULL"),
    page_size: default!(Option<i32>, 100),
) -> SqlResult<Jsonb> {
    Ok(Jsonb(reports::events_search(
        organization_id,
        filter.map(|f| f.0),
        cursor,
        page_size,
    )?))
}
