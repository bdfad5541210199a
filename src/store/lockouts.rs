//! Statements of the attempt ledger's worker: a member's lockout state, the remembered devices a
//! lock or a suspected theft revokes, and the audit events that must outlive their caller's
//! transaction. Which records write what is `flow::ledger_flush`'s.

use crate::core::attempts::MemberAttempts;
use crate::error::MfaResult;
use crate::store::spi;
use pgrx::datum::DatumWithOid;
use pgrx::datum::TimestampWithTimeZone;

/// A ledger time (microseconds since 2000, 0 for none) as a column value.
pub fn time(micros: i64) -> Option<TimestampWithTimeZone> {
    (micros != 0)
        .then(|| TimestampWithTimeZone::try_from(micros).ok())
        .flatten()
}

/// The durable state of a member as `MemberAttempts` (times as ledger times). The row keeps the
/// count of failures in the window and the earliest of them: they come back as charged then.
pub fn attempts_from_row(
    failed_attempts: Option<i32>,
    failure_window_started_at: Option<TimestampWithTimeZone>,
    lock_created_at: Option<TimestampWithTimeZone>,
    lock_expires_at: Option<TimestampWithTimeZone>,
    lock_count: Option<i32>,
) -> MemberAttempts {
    let micros = |t: Option<TimestampWithTimeZone>| t.map(i64::from).unwrap_or(0);
    MemberAttempts::from_durable(
        failed_attempts.unwrap_or(0).max(0) as u32,
        micros(failure_window_started_at),
        micros(lock_created_at),
        micros(lock_expires_at),
        lock_count.unwrap_or(0).max(0) as u32,
    )
}

/// Whether the tables the worker writes exist (the extension may have been dropped since the
/// records were queued).
pub fn tables_exist() -> bool {
    matches!(
        pgrx::Spi::get_one::<bool>(
            "SELECT to_regclass('mfa.member_lockouts') IS NOT NULL AND to_regclass('mfa.events') IS NOT NULL",
        ),
        Ok(Some(true))
    )
}

/// Makes the worker's transaction commit durably whatever the server's default.
pub fn commit_synchronously() -> MfaResult<()> {
    pgrx::Spi::run("SET LOCAL synchronous_commit = on")?;
    Ok(())
}

/// `lockout_write`: its head and tail, and for one organization (Citus) the filter between them.
const LOCKOUT_STATEMENTS: [&str; 2] = [
    concat!(
        include_str!("sql/lockout_write.head.sql"),
        include_str!("sql/lockout_write.tail.sql")
    ),
    concat!(
        include_str!("sql/lockout_write.head.sql"),
        "                      AND m.organization_id = $9::text\n",
        include_str!("sql/lockout_write.tail.sql")
    ),
];

/// A member's latest lockout state, as `lockout_write.*.sql` takes it.
pub struct LockoutState<'a> {
    pub organization_id: &'a str,
    pub member_id: &'a str,
    pub attempts: &'a MemberAttempts,
}

/// Writes the members' latest states (`lockout_write.head.sql`, `lockout_write.tail.sql`): of one organization (`Some`, on
/// Citus) or of all.
pub fn write_states(
    organization: Option<&str>,
    states: &[LockoutState],
    now: TimestampWithTimeZone,
) -> MfaResult<()> {
    let column = |f: &dyn Fn(&MemberAttempts) -> i64| -> Vec<Option<TimestampWithTimeZone>> {
        states.iter().map(|r| time(f(r.attempts))).collect()
    };
    let strings = |f: for<'r> fn(&'r LockoutState<'r>) -> &'r str| -> Vec<String> {
        states.iter().map(|r| f(r).to_string()).collect()
    };
    let mut args: Vec<DatumWithOid> = vec![
        strings(|r| r.organization_id).into(),
        strings(|r| r.member_id).into(),
        states
            .iter()
            .map(|r| r.attempts.failure_count() as i32)
            .collect::<Vec<_>>()
            .into(),
        column(&|a| a.window_started_at()).into(),
        column(&|a| a.lock_created_at).into(),
        column(&|a| a.lock_expires_at).into(),
        states
            .iter()
            .map(|r| r.attempts.lock_count as i32)
            .collect::<Vec<_>>()
            .into(),
        now.into(),
    ];
    let [lockouts, lockouts_scoped] = LOCKOUT_STATEMENTS;
    let statement = match organization {
        Some(organization) => {
            args.push(organization.into());
            lockouts_scoped
        }
        None => lockouts,
    };
    spi::execute(statement, &args)?;
    Ok(())
}

/// Hands the records of `organization` (a JSON array) to the node holding it
/// (`attempt_ledger_hand_over.sql`).
pub fn hand_over(organization: &str, records: serde_json::Value) -> MfaResult<()> {
    spi::execute(
        include_str!("sql/attempt_ledger_hand_over.sql"),
        &[organization.into(), pgrx::JsonB(records).into()],
    )?;
    Ok(())
}

/// Raises the member's theft watermark to `until` (`theft_watermark.sql`).
pub fn write_theft_watermark(
    organization: &str,
    member: &str,
    until: TimestampWithTimeZone,
    now: TimestampWithTimeZone,
) -> MfaResult<()> {
    spi::execute(
        include_str!("sql/theft_watermark.sql"),
        &[organization.into(), member.into(), until.into(), now.into()],
    )?;
    Ok(())
}

/// Deletes the devices of `members` (of `organization`) made at or before `until`
/// (`device_revocation.sql`): (member, device id) of each.
pub fn revoke_devices(
    organization: &str,
    members: Vec<String>,
    until: TimestampWithTimeZone,
) -> MfaResult<Vec<(String, String)>> {
    spi::typed_rows(
        include_str!("sql/device_revocation.sql"),
        &[organization.into(), members.into(), until.into()],
        |row| {
            Ok((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<String>(2)?.unwrap_or_default(),
            ))
        },
    )
}

/// An audit event as `event_write.sql` takes it.
pub struct EventRow {
    pub organization_id: String,
    pub request_id: String,
    pub event_type: String,
    pub member_id: String,
    pub actor: String,
    pub details: String,
    pub occurred_at: Option<TimestampWithTimeZone>,
}

/// Writes `events` in one statement (`event_write.sql`).
pub fn write_events(events: &[EventRow]) -> MfaResult<()> {
    let field = |f: fn(&EventRow) -> &str| -> Vec<String> {
        events.iter().map(|e| f(e).to_string()).collect()
    };
    spi::execute(
        include_str!("sql/event_write.sql"),
        &[
            field(|e| &e.organization_id).into(),
            field(|e| &e.request_id).into(),
            field(|e| &e.event_type).into(),
            field(|e| &e.member_id).into(),
            field(|e| &e.actor).into(),
            field(|e| &e.details).into(),
            events
                .iter()
                .map(|e| e.occurred_at)
                .collect::<Vec<_>>()
                .into(),
        ],
    )?;
    Ok(())
}
