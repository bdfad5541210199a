//! Statements of the attempt ledger's worker: a member's lockout state and the audit events that
//! must outlive their caller's transaction.

use crate::core::attempts::MemberAttempts;
use crate::db;
use crate::errors::MfaResult;
use crate::store::ledger::{Record, RecordKind};
use pgrx::datum::TimestampWithTimeZone;

/// A ledger time (microseconds since 2000, 0 for none) as a column value.
fn time(micros: i64) -> Option<TimestampWithTimeZone> {
    (micros != 0)
        .then(|| TimestampWithTimeZone::try_from(micros).ok())
        .flatten()
}

/// The durable state of a member as `MemberAttempts` (times as ledger times).
pub fn attempts_from_row(
    failed_attempts: Option<i32>,
    failure_window_started_at: Option<TimestampWithTimeZone>,
    lock_created_at: Option<TimestampWithTimeZone>,
    lock_expires_at: Option<TimestampWithTimeZone>,
    lock_count: Option<i32>,
) -> MemberAttempts {
    let micros = |t: Option<TimestampWithTimeZone>| t.map(i64::from).unwrap_or(0);
    MemberAttempts {
        failures: failed_attempts.unwrap_or(0).max(0) as u32,
        window_started_at: micros(failure_window_started_at),
        lock_created_at: micros(lock_created_at),
        lock_expires_at: micros(lock_expires_at),
        lock_count: lock_count.unwrap_or(0).max(0) as u32,
        ..MemberAttempts::default()
    }
}

/// Writes one queued record: the member's state, its event, or both.
pub fn write(record: &Record) -> MfaResult<()> {
    if record.kind != RecordKind::Event {
        let a = &record.attempts;
        db::execute(
            include_str!("sql/lockout_write.sql"),
            &[
                record.organization_id().into(),
                record.member_id().into(),
                (a.failures as i32).into(),
                time(a.window_started_at).into(),
                time(a.lock_created_at).into(),
                time(a.lock_expires_at).into(),
                (a.lock_count as i32).into(),
            ],
        )?;
    }
    if record.kind != RecordKind::State {
        db::execute(
            include_str!("sql/event_write.sql"),
            &[
                record.organization_id().into(),
                uuid::Uuid::from_bytes(record.request_id).to_string().into(),
                record.event_type().into(),
                record.member_id().into(),
                record.actor().into(),
                record.details().into(),
                time(record.occurred_at).into(),
            ],
        )?;
    }
    Ok(())
}
