//! The retention of the audit trail (`mfa.events_retention_days`): the attempt ledger's writer of
//! a database deletes the events older than the setting, organization by organization, oldest
//! first, at most `BATCH` in a transaction, between the batches of records it writes (which
//! always come first: `api::ledger_worker` runs a step only when its queue is empty, and pauses
//! between steps). About once an hour per database; not on Citus (each node's trail is its own
//! shards, which this does not reach).

use crate::error::MfaResult;
use crate::server::{ledger, settings};
use crate::store::{cluster, events, spi};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys;

/// Events deleted in one transaction at most.
pub const BATCH: i64 = 10_000;

/// A prune of one database in progress.
pub struct Prune {
    database: pg_sys::Oid,
    cutoff: TimestampWithTimeZone,
    /// The organizations whose oldest event is older than the cutoff, and where the next step
    /// starts: the organization's index and the event id to start after.
    organizations: Vec<String>,
    next: usize,
    after_id: i64,
    pub deleted: i64,
    pub transactions: u32,
    pub days: i32,
}

impl Prune {
    /// A prune of this database, when its retention is on and a prune is due (the next is then
    /// put off until this one ends); `None` otherwise. Runs in a transaction.
    pub fn start(database: pg_sys::Oid) -> MfaResult<Option<Prune>> {
        let days = settings::EVENTS_RETENTION_DAYS.get();
        if days <= 0 || cluster::on_citus() {
            return Ok(None);
        }
        let now = spi::clock();
        if !ledger::prune_starts(database, now.into_inner()) {
            return Ok(None);
        }
        let cutoff =
            TimestampWithTimeZone::try_from(now.into_inner() - i64::from(days) * 86_400_000_000)
                .unwrap_or(now);
        Ok(Some(Prune {
            database,
            cutoff,
            organizations: events::organizations_to_prune(cutoff)?,
            next: 0,
            after_id: 0,
            deleted: 0,
            transactions: 0,
            days,
        }))
    }

    /// One transaction's worth: deletes up to `BATCH` old events, organization after organization.
    /// Returns whether old events may remain (another step is wanted).
    pub fn step(&mut self) -> MfaResult<bool> {
        let mut budget = BATCH;
        while budget > 0 && self.next < self.organizations.len() {
            let step = events::prune_step(
                &self.organizations[self.next],
                self.cutoff,
                self.after_id,
                budget,
            )?;
            budget -= step.deleted;
            self.deleted += step.deleted;
            if step.read > 0 && step.deleted == step.read {
                // Everything read was old: the organization may have more.
                self.after_id = step.last_read;
            } else {
                // An event to keep was reached, or none was left: the organization is done.
                self.next += 1;
                self.after_id = 0;
            }
        }
        self.transactions += 1;
        Ok(self.next < self.organizations.len())
    }

    /// The prune is complete: the next is due in an hour.
    pub fn finish(&self) {
        ledger::prune_finished(self.database, spi::clock().into_inner());
    }
}
