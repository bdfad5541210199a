//! What a batch of the attempt ledger's records writes: the latest lockout state of each member in
//! it, the remembered devices a lock or a suspected theft revokes (a rule: a member locked now
//! loses every device made until now; a suspected theft, the devices made until then, for good),
//! and the audit events. Run by the ledger's writer (`api::ledger_worker`) in its own transactions,
//! and on Citus by the node that holds the organization of the records a coordinator hands over.

use crate::error::{ErrorType, MfaError, MfaResult};
use crate::server::ledger::{HandedRecord, Record, RecordKind};
use crate::store::lockouts::{self, time, EventRow, LockoutState};
use crate::store::{cluster, grouped_by, spi};
use pgrx::datum::TimestampWithTimeZone;
use std::collections::HashMap;

/// A part of a batch (`parts`), written in a transaction of its own.
pub struct Part {
    /// The part's records (queue order kept), with their places in the queue.
    pub records: Vec<(usize, Record)>,
    /// On Citus, the one organization of a part whose shards another node holds.
    elsewhere: Option<String>,
}

/// The parts of a batch (queue order kept) that are each written in a transaction of their own:
/// the whole batch on one node. On Citus, the records of the organizations this node holds in one
/// part, and each other organization's records in a part of its own, handed to its node: a
/// transaction that reaches another node commits in two phases, and a node where the events'
/// trigger queued a NOTIFY cannot prepare it. Runs in a transaction.
pub fn parts(batch: Vec<(usize, Record)>) -> MfaResult<Vec<Part>> {
    if !cluster::on_citus() {
        return Ok(vec![Part {
            records: batch,
            elsewhere: None,
        }]);
    }
    let by_organization = grouped_by(batch, |(_, r)| r.organization_id());
    let organizations = by_organization.iter().map(|(o, _)| o.clone()).collect();
    let here = cluster::held_here(organizations)?;
    let mut local = Part {
        records: Vec::new(),
        elsewhere: None,
    };
    let mut parts = Vec::new();
    for (organization, records) in by_organization {
        if here.contains(&organization) {
            local.records.extend(records);
        } else {
            parts.push(Part {
                records,
                elsewhere: Some(organization),
            });
        }
    }
    if !local.records.is_empty() {
        parts.insert(0, local);
    }
    Ok(parts)
}

/// Writes one part of a batch (`parts`) in the caller's transaction, durably whatever the
/// server's default (the transaction commits with `synchronous_commit = on`): the latest state of
/// each member in it, and its events. On Citus, organization by organization (each statement
/// then reaches one shard group); a part of an organization another node holds is handed there
/// (`mfa._attempt_ledger_write`, delegated to that node, which writes it in one local
/// transaction), once `mfa.distribute()` has delegated that function (Citus delegates a call from
/// the coordinator only: a worker writes such a part itself).
pub fn write_part(part: &Part) -> MfaResult<()> {
    lockouts::commit_synchronously()?;
    let records: Vec<&Record> = part.records.iter().map(|(_, r)| r).collect();
    if !cluster::on_citus() {
        return write_records(None, records);
    }
    if let Some(organization) = &part.elsewhere {
        if cluster::delegated(HAND_OVER)? {
            let handed: Vec<HandedRecord> = records.iter().map(|r| r.handed()).collect();
            let handed = serde_json::to_value(handed).map_err(|e| {
                MfaError::new(
                    ErrorType::InternalServerError,
                    format!("attempt records as JSON: {e}"),
                )
            })?;
            return lockouts::hand_over(organization, handed);
        }
    }
    for (organization, group) in grouped_by(records, |r| r.organization_id()) {
        write_records(Some(&organization), group)?;
    }
    Ok(())
}

/// The function through which a Citus coordinator's writer hands records over.
const HAND_OVER: &str = "mfa._attempt_ledger_write(text,jsonb)";

/// Writes the records of `organization` that another node's attempt ledger writer handed over
/// (`write_part`), here on the node holding the organization, in the caller's transaction.
pub fn write_handed(organization: &str, handed: serde_json::Value) -> MfaResult<()> {
    let handed: Vec<HandedRecord> = serde_json::from_value(handed).map_err(|e| {
        MfaError::new(
            ErrorType::InvalidArgument,
            format!("attempt records handed over: {e}"),
        )
    })?;
    let records: Vec<Record> = handed.iter().map(Record::from_handed).collect();
    if records.iter().any(|r| r.organization_id() != organization) {
        return Err(MfaError::new(
            ErrorType::InvalidArgument,
            format!("attempt records handed over for {organization} name another organization"),
        ));
    }
    lockouts::commit_synchronously()?;
    write_records(Some(organization), records.iter().collect())
}

/// An audit event of the queue as `event_write.sql` takes it.
fn event_row(record: &Record) -> EventRow {
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
            events.push(event_row(record));
            if record.event_type() == "remembered_device.theft_suspected" {
                thefts.push(record);
            }
        }
    }
    if !states.is_empty() {
        let rows: Vec<LockoutState> = states
            .iter()
            .map(|r| LockoutState {
                organization_id: r.organization_id(),
                member_id: r.member_id(),
                attempts: &r.attempts,
            })
            .collect();
        lockouts::write_states(organization, &rows, now)?;
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
        lockouts::write_theft_watermark(organization, member, until, now)?;
        let members = vec![member.to_string()];
        let revocation = (now, "theft_suspected", request_id.as_str());
        revoke_devices(organization, members, until, revocation, &mut events)?;
    }
    if !events.is_empty() {
        lockouts::write_events(&events)?;
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
    let revoked = lockouts::revoke_devices(organization, members, until)?;
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
