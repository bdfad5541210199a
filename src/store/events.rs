//! Reading and pruning the audit trail (`mfa.events`): the pages of `events_search` and the
//! retention's steps. Writing events is `audit`'s (and the attempt ledger's worker's, `lockouts`).

use crate::core::reports::EventFilter;
use crate::error::{ErrorType, MfaError, MfaResult};
use crate::store::spi;
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::JsonB;
use serde_json::Value;

/// An audit event as `events_search` answers it.
pub struct AuditEvent {
    pub event_id: i64,
    pub member_id: Option<String>,
    pub event_type: String,
    pub occurred_at: TimestampWithTimeZone,
    pub request_id: String,
    pub actor: String,
    pub details: Value,
}

/// `events_search`'s statements: without and with the member filter between head and tail.
const SEARCH: [&str; 2] = [
    concat!(
        include_str!("sql/events_search.head.sql"),
        include_str!("sql/events_search.tail.sql")
    ),
    concat!(
        include_str!("sql/events_search.head.sql"),
        "   AND e.member_id = $4\n",
        include_str!("sql/events_search.tail.sql")
    ),
];

/// A filter's time (microseconds since 2000) as a statement's argument.
pub fn filter_time(micros: Option<i64>) -> MfaResult<Option<TimestampWithTimeZone>> {
    micros
        .map(|m| {
            TimestampWithTimeZone::try_from(m)
                .map_err(|_| MfaError::new(ErrorType::InvalidSearchQuery, "a time out of range."))
        })
        .transpose()
}

/// Up to `limit` events of `organization_id` older (by id) than `before_id`, newest first, that
/// pass `filter` (`events_search.head.sql`, the member filter, `events_search.tail.sql`).
pub fn search(
    organization_id: &str,
    before_id: i64,
    limit: i64,
    filter: &EventFilter,
) -> MfaResult<Vec<AuditEvent>> {
    let [all_members, one_member] = SEARCH;
    let statement = match filter.member_id {
        Some(_) => one_member,
        None => all_members,
    };
    let args: Vec<DatumWithOid> = vec![
        organization_id.into(),
        before_id.into(),
        limit.into(),
        filter.member_id.as_deref().into(),
        filter.event_types.clone().into(),
        filter_time(filter.after)?.into(),
        filter_time(filter.before)?.into(),
    ];
    spi::typed_rows_planned_per_call(statement, &args, |row| {
        Ok(AuditEvent {
            event_id: row.get_by_name::<i64, _>("event_id")?.unwrap_or_default(),
            member_id: row.get_by_name::<String, _>("member_id")?,
            event_type: row
                .get_by_name::<String, _>("event_type")?
                .unwrap_or_default(),
            occurred_at: row
                .get_by_name::<TimestampWithTimeZone, _>("occurred_at")?
                .expect("NOT NULL"),
            request_id: row
                .get_by_name::<String, _>("request_id")?
                .unwrap_or_default(),
            actor: row.get_by_name::<String, _>("actor")?.unwrap_or_default(),
            details: row
                .get_by_name::<JsonB, _>("details")?
                .map(|JsonB(v)| v)
                .unwrap_or(Value::Null),
        })
    })
}

/// The organizations (`''` for project-wide events) whose oldest event happened before `cutoff`
/// (`events_prune_organizations.sql`).
pub fn organizations_to_prune(cutoff: TimestampWithTimeZone) -> MfaResult<Vec<String>> {
    spi::text_column(
        include_str!("sql/events_prune_organizations.sql"),
        &[cutoff.into()],
    )
}

/// What one step of the retention did.
pub struct PruneStep {
    pub deleted: i64,
    pub read: i64,
    /// The largest event id the step read: the next step starts after it.
    pub last_read: i64,
}

/// Deletes those of the `limit` oldest events of `organization_id` after `after_id` that happened
/// before `cutoff` (`events_prune.sql`).
pub fn prune_step(
    organization_id: &str,
    cutoff: TimestampWithTimeZone,
    after_id: i64,
    limit: i64,
) -> MfaResult<PruneStep> {
    let step = spi::typed_row(
        include_str!("sql/events_prune.sql"),
        &[
            cutoff.into(),
            after_id.into(),
            limit.into(),
            organization_id.into(),
        ],
        |row| {
            Ok(PruneStep {
                deleted: row.get::<i64>(1)?.unwrap_or(0),
                read: row.get::<i64>(2)?.unwrap_or(0),
                last_read: row.get::<i64>(3)?.unwrap_or(after_id),
            })
        },
    )?;
    Ok(step.unwrap_or(PruneStep {
        deleted: 0,
        read: 0,
        last_read: after_id,
    }))
}
