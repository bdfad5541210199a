//! The administrators' reports: `members_search` (an organization's members by MFA state, a page at
//! a time) and `events_search` (its audit trail, newest first). Both page with a keyset cursor, so
//! a walk through the pages never returns a row twice; what concurrent writes can do to a walk is
//! said on each.

use crate::core::policy::{validate_id, IdKind};
use crate::core::reports::{
    event_cursor, member_cursor, page_size, parse_event_cursor, parse_member_cursor, EventFilter,
    MemberFilter,
};
use crate::error::{ErrorType, MfaError, MfaResult};
use crate::flow::{answer, member};
use crate::store::audit::Request;
use crate::store::events::{self, AuditEvent};
use crate::store::members::{self, MemberSearch};
use crate::store::{organizations, spi};
use pgrx::datum::ToIsoString;
use serde_json::{json, Value};

/// A page of an organization's members that pass `filter`, in member_id order, after the member
/// `cursor` names; `results_metadata.total` counts the members that passed when the walk's first
/// page was read (its cursors carry it: counting an organization's every member is the costly
/// part), `next_cursor` is NULL on the last page.
///
/// Under concurrent writes a walk returns every member that exists from its first page to its last
/// exactly once (a member created during the walk appears when its id sorts after the page being
/// read, a deleted one when it was read before it went). The filters read the state each page
/// sees; `locked` reads the lockout row the attempt ledger's worker writes (milliseconds after a
/// lock), the members' `is_locked` the ledger itself, as `member_get` does.
pub fn members_search(
    organization_id: Option<&str>,
    filter: Option<Result<Value, String>>,
    cursor: Option<&str>,
    page_size: Option<i32>,
) -> MfaResult<Value> {
    let request = Request::new();
    let organization_id = validate_id(organization_id, IdKind::Organization)?;
    let filter = MemberFilter::parse(readable(filter)?.as_ref())?;
    let walk = cursor.map(parse_member_cursor).transpose()?;
    let limit = self::page_size(page_size)?;
    organizations::require_exists(organization_id)?;
    let mut question = MemberSearch {
        organization_id,
        after: "",
        limit,
        now: spi::clock(),
        filter: &filter,
    };
    let total = match &walk {
        Some((total, _)) => *total,
        None => members::search_total(&question)?,
    };
    question.after = walk.as_ref().map_or("", |(_, after)| after.as_str());
    // One more than the page: whether another page follows.
    question.limit = limit + 1;
    let mut found = members::search(&question)?;
    let next_cursor = if found.len() as i64 > limit {
        found.truncate(limit as usize);
        found.last().map(|m| member_cursor(total, &m.member_id))
    } else {
        None
    };
    let objects: Vec<Value> = found
        .into_iter()
        .map(|m| answer::member(&member::with_live_attempts(m)))
        .collect();
    Ok(json!({
        "status_code": 200,
        "request_id": request.id,
        "members": objects,
        "results_metadata": { "total": total, "next_cursor": next_cursor },
    }))
}

/// A page of an organization's audit events that pass `filter`, newest first (by event id), older
/// than the event `cursor` names; `next_cursor` is NULL on the last page. No event holds a secret.
///
/// A walk never returns an event twice, and returns every event committed before its first page
/// was read (events written since are newer: they are not in it). An event whose transaction was
/// still open while the page covering its id was read (its id was drawn before, its commit came
/// after) is not in the walk: a walk started after that commit has it.
pub fn events_search(
    organization_id: Option<&str>,
    filter: Option<Result<Value, String>>,
    cursor: Option<&str>,
    page_size: Option<i32>,
) -> MfaResult<Value> {
    let request = Request::new();
    let organization_id = validate_id(organization_id, IdKind::Organization)?;
    let filter = EventFilter::parse(readable(filter)?.as_ref())?;
    let before_id = cursor
        .map(parse_event_cursor)
        .transpose()?
        .unwrap_or(i64::MAX);
    let limit = self::page_size(page_size)?;
    let mut found = events::search(organization_id, before_id, limit + 1, &filter)?;
    let next_cursor = if found.len() as i64 > limit {
        found.truncate(limit as usize);
        found.last().map(|e| event_cursor(e.event_id))
    } else {
        None
    };
    let objects: Vec<Value> = found
        .into_iter()
        .map(|e| event_object(organization_id, e))
        .collect();
    Ok(json!({
        "status_code": 200,
        "request_id": request.id,
        "events": objects,
        "results_metadata": { "next_cursor": next_cursor },
    }))
}

/// A filter argument that could be read (one nested too deeply to read is refused).
fn readable(filter: Option<Result<Value, String>>) -> MfaResult<Option<Value>> {
    filter.transpose().map_err(|e| {
        MfaError::new(
            ErrorType::InvalidSearchQuery,
            format!("filter cannot be read: {e}."),
        )
    })
}

/// The event object (timestamps as jsonb formats them).
fn event_object(organization_id: &str, e: AuditEvent) -> Value {
    json!({
        "event_id": e.event_id,
        "organization_id": organization_id,
        "member_id": e.member_id,
        "event_type": e.event_type,
        "occurred_at": e.occurred_at.to_iso_string(),
        "request_id": e.request_id,
        "actor": e.actor,
        "details": e.details,
    })
}
