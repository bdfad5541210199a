//! Statements of the attempt ledger's worker: a member's lockout state and the audit events that
//! must outlive their caller's transaction.

use crate::core::attempts::MemberAttempts;
use crate::error::MfaResult;
use crate::store::ledger::{Record, RecordKind};
use crate::store::{cluster, spi};
use pgrx::datum::DatumWithOid;
use pgrx::datum::TimestampWithTimeZone;
use std::collections::HashMap;
use std::sync::LazyLock;

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

/// Writes a batch of queued records (in queue order) in two statements, durably whatever the
/// server's default (the worker's transaction commits with `synchronous_commit = on`): the latest
/// state of each member in it, and its events.
/// On Citus, organization by organization (each statement then reaches one shard group).
pub fn write_batch<'a>(records: impl IntoIterator<Item = &'a Record>) -> MfaResult<()> {
    pgrx::Spi::run("SET LOCAL synchronous_commit = on")?;
    let records: Vec<&Record> = records.into_iter().collect();
    if !cluster::on_citus() {
        return write_records(None, records);
    }
    for (organization, group) in cluster::by_organization(records, |r| r.organization_id()) {
        write_records(Some(&organization), group)?;
    }
    Ok(())
}

/// `lockout_write.sql` and `event_write.sql`, and each for one organization (Citus).
static STATEMENTS: LazyLock<[String; 4]> = LazyLock::new(|| {
    let lockouts = include_str!("sql/lockout_write.sql");
    let events = include_str!("sql/event_write.sql");
    [
        lockouts.to_string(),
        cluster::for_one_organization(lockouts, 10),
        events.to_string(),
        cluster::for_one_organization(events, 9),
    ]
});

/// The records of one organization (`Some`, on Citus) or of all, in queue order.
fn write_records(organization: Option<&str>, records: Vec<&Record>) -> MfaResult<()> {
    let [lockouts, lockouts_scoped, events_statement, events_scoped] = &*STATEMENTS;
    let mut states: Vec<&Record> = Vec::new();
    let mut latest: HashMap<(&str, &str), usize> = HashMap::new();
    let mut events: Vec<&Record> = Vec::new();
    for &record in &records {
        if record.kind != RecordKind::Event {
            let member = (record.organization_id(), record.member_id());
            match latest.get(&member) {
                Some(&at) => states[at] = record,
                None => {
                    latest.insert(member, states.len());
                    states.push(record);
                }
            }
        }
        if record.kind != RecordKind::State {
            events.push(record);
        }
    }
    if !states.is_empty() {
        let column = |f: &dyn Fn(&MemberAttempts) -> i64| -> Vec<Option<TimestampWithTimeZone>> {
            states.iter().map(|r| time(f(&r.attempts))).collect()
        };
        let mut args: Vec<DatumWithOid> = vec![
            strings(&states, Record::organization_id).into(),
            strings(&states, Record::member_id).into(),
            states
                .iter()
                .map(|r| r.attempts.failures as i32)
                .collect::<Vec<_>>()
                .into(),
            column(&|a| a.window_started_at).into(),
            column(&|a| a.lock_created_at).into(),
            column(&|a| a.lock_expires_at).into(),
            states
                .iter()
                .map(|r| r.attempts.lock_count as i32)
                .collect::<Vec<_>>()
                .into(),
            crate::core::ids::new_request_id().into(),
            spi::clock().into(),
        ];
        let statement = match organization {
            Some(organization) => {
                args.push(organization.into());
                lockouts_scoped
            }
            None => lockouts,
        };
        spi::execute(statement, &args)?;
    }
    if !events.is_empty() {
        let mut args: Vec<DatumWithOid> = vec![
            strings(&events, Record::organization_id).into(),
            events
                .iter()
                .map(|r| uuid::Uuid::from_bytes(r.request_id).to_string())
                .collect::<Vec<_>>()
                .into(),
            strings(&events, Record::event_type).into(),
            strings(&events, Record::member_id).into(),
            strings(&events, Record::actor).into(),
            strings(&events, Record::details).into(),
            events
                .iter()
                .map(|r| time(r.occurred_at))
                .collect::<Vec<_>>()
                .into(),
            spi::clock().into(),
        ];
        let statement = match organization {
            Some(organization) => {
                args.push(organization.into());
                events_scoped
            }
            None => events_statement,
        };
        spi::execute(statement, &args)?;
    }
    Ok(())
}

fn strings(records: &[&Record], field: fn(&Record) -> &str) -> Vec<String> {
    records.iter().map(|r| field(r).to_string()).collect()
}
