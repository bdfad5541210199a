//! Statements of the attempt ledger's worker: a member's lockout state and the audit events that
//! must outlive their caller's transaction.

use crate::core::attempts::MemberAttempts;
use crate::error::MfaResult;
use crate::store::ledger::{Record, RecordKind};
use crate::store::{cluster, grouped_by, spi};
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
    for (organization, group) in grouped_by(records, |r| r.organization_id()) {
        write_records(Some(&organization), group)?;
    }
    Ok(())
}

/// `lockout_write.sql`, and for one organization (Citus).
static LOCKOUT_STATEMENTS: LazyLock<[String; 2]> = LazyLock::new(|| {
    let lockouts = include_str!("sql/lockout_write.sql");
    [
        lockouts.to_string(),
        cluster::for_one_organization(lockouts, 9),
    ]
});

/// An audit event as `event_write.sql` takes it.
struct EventRow {
    organization_id: String,
    request_id: String,
    event_type: String,
    member_id: String,
    actor: String,
    details: String,
    occurred_at: Option<TimestampWithTimeZone>,
}

impl EventRow {
    fn of(record: &Record) -> EventRow {
        EventRow {
            organization_id: record.organization_id().to_string(),
            request_id: uuid::Uuid::from_bytes(record.request_id).to_string(),
            event_type: record.event_type().to_string(),
            member_id: record.member_id().to_string(),
            actor: record.actor().to_string(),
            details: record.details().to_string(),
            occurred_at: time(record.occurred_at),
        }
    }
}

/// The records of one organization (`Some`, on Citus) or of all, in queue order: the members'
/// states, then the remembered devices a lock or a suspected theft takes, then the events.
fn write_records(organization: Option<&str>, records: Vec<&Record>) -> MfaResult<()> {
    let now = spi::clock();
    let mut states: Vec<&Record> = Vec::new();
    let mut latest: HashMap<(&str, &str), usize> = HashMap::new();
    let mut events: Vec<EventRow> = Vec::new();
    let mut thefts: Vec<&Record> = Vec::new();
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
            events.push(EventRow::of(record));
            if record.event_type() == "remembered_device.theft_suspected" {
                thefts.push(record);
            }
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
        let [lockouts, lockouts_scoped] = &*LOCKOUT_STATEMENTS;
        let statement = match organization {
            Some(organization) => {
                args.push(organization.into());
                lockouts_scoped
            }
            None => lockouts,
        };
        spi::execute(statement, &args)?;
    }
    // A member locked now loses every device made until now.
    let locked: Vec<&Record> = states
        .iter()
        .copied()
        .filter(|r| r.attempts.lock_expires_at > now.into_inner())
        .collect();
    let request_id = crate::core::ids::new_request_id();
    for (organization, members) in grouped_by(locked, |r| r.organization_id()) {
        let members: Vec<String> = members.iter().map(|r| r.member_id().to_string()).collect();
        let revocation = (now, "member_locked", request_id.as_str());
        revoke_devices(&organization, members, now, revocation, &mut events)?;
    }
    // A suspected theft: the devices made until then, for good.
    for theft in thefts {
        let (organization, member) = (theft.organization_id(), theft.member_id());
        let until = time(theft.occurred_at).unwrap_or(now);
        spi::execute(
            include_str!("sql/theft_watermark.sql"),
            &[organization.into(), member.into(), until.into(), now.into()],
        )?;
        let members = vec![member.to_string()];
        let revocation = (now, "theft_suspected", request_id.as_str());
        revoke_devices(organization, members, until, revocation, &mut events)?;
    }
    if !events.is_empty() {
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
    }
    Ok(())
}

/// Deletes the devices of `members` (of `organization`) made at or before `until`, and adds a
/// `remembered_device.revoked` event per member who had any: at `now`, for `reason`, under
/// `request_id`.
fn revoke_devices(
    organization: &str,
    members: Vec<String>,
    until: TimestampWithTimeZone,
    (now, reason, request_id): (TimestampWithTimeZone, &str, &str),
    events: &mut Vec<EventRow>,
) -> MfaResult<()> {
    let revoked = spi::typed_rows(
        include_str!("sql/device_revocation.sql"),
        &[organization.into(), members.into(), until.into()],
        |row| {
            Ok((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<String>(2)?.unwrap_or_default(),
            ))
        },
    )?;
    for (member, devices) in grouped_by(revoked, |(member, _)| member) {
        let mut device_ids: Vec<String> = devices.into_iter().map(|(_, d)| d).collect();
        device_ids.sort();
        events.push(EventRow {
            organization_id: organization.to_string(),
            request_id: request_id.to_string(),
            event_type: "remembered_device.revoked".to_string(),
            member_id: member,
            actor: spi::session_user(),
            details: serde_json::json!({ "reason": reason, "device_ids": device_ids }).to_string(),
            occurred_at: Some(now),
        });
    }
    Ok(())
}

fn strings(records: &[&Record], field: fn(&Record) -> &str) -> Vec<String> {
    records.iter().map(|r| field(r).to_string()).collect()
}
