//! The figures of `mfa.metrics()` that live in tables: the SMS outbox's undelivered messages and
//! the members locked now, in total or per organization.

use crate::error::MfaResult;
use crate::store::spi;
use pgrx::datum::TimestampWithTimeZone;

/// The outbox's messages not delivered yet, of one organization or of all (`organization_id`
/// None).
pub struct Outbox {
    pub organization_id: Option<String>,
    pub pending: i64,
    pub claimed: i64,
    pub dead: i64,
    /// The age of the oldest pending or claimed message, if there is one.
    pub oldest_pending_seconds: Option<f64>,
}

/// The outbox at `now`: one row per organization that has a pending, claimed or dead message,
/// or one row of them all (none for an empty outbox).
pub fn outbox(per_organization: bool, now: TimestampWithTimeZone) -> MfaResult<Vec<Outbox>> {
    spi::typed_rows(
        include_str!("sql/metrics_outbox.sql"),
        &[per_organization.into(), now.into()],
        |row| {
            Ok(Outbox {
                organization_id: row.get(1)?,
                pending: row.get(2)?.unwrap_or(0),
                claimed: row.get(3)?.unwrap_or(0),
                dead: row.get(4)?.unwrap_or(0),
                oldest_pending_seconds: row.get(5)?,
            })
        },
    )
}

/// The members locked at `now`, per organization that has any, or in total (none: nobody).
pub fn locked(
    per_organization: bool,
    now: TimestampWithTimeZone,
) -> MfaResult<Vec<(Option<String>, i64)>> {
    spi::typed_rows(
        include_str!("sql/metrics_locked.sql"),
        &[per_organization.into(), now.into()],
        |row| Ok((row.get(1)?, row.get(2)?.unwrap_or(0))),
    )
}
