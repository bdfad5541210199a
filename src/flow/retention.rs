//! The upkeep of a database by the attempt ledger's writer, between the batches of records it
//! writes (which always come first: `api::ledger_worker` runs a step only when its queue is
//! empty, and pauses between steps), about every ten minutes per database, organization by
//! organization (on Citus, each node's writer keeps the organizations whose shards it holds):
//! - the expired intermediate sessions go, and each login among them that no session consumed
//!   is recorded as `login.abandoned` (a login that succeeds writes its one event when its
//!   session is made);
//! - the retention of the audit trail (`mfa.events_retention_days`): the events older than the
//!   setting are deleted, organization by organization, oldest first.
//!
//! At most `BATCH` rows in a transaction.

use crate::error::MfaResult;
use crate::server::{ledger, settings};
use crate::store::{cluster, events, organizations, sessions, spi};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys;

/// Events deleted in one transaction at most.
pub const BATCH: i64 = 10_000;
/// Organizations visited in one transaction at most (on Citus, a node's every organization is
/// visited for the retention, most with nothing to delete): the queue's records wait for a step.
const ORGANIZATIONS_PER_STEP: usize = 100;

/// An upkeep of one database in progress.
pub struct Prune {
    database: pg_sys::Oid,
    /// The organizations with expired logins, and the next of them to reap.
    expired: Vec<String>,
    next_expired: usize,
    /// Events older than this go (`None`: the retention is off).
    cutoff: Option<TimestampWithTimeZone>,
    /// The organizations whose oldest event may be older than the cutoff, and where the next
    /// step starts: the organization's index and the event id to start after.
    organizations: Vec<String>,
    next: usize,
    after_id: i64,
    pub deleted: i64,
    pub logins_reaped: i64,
    pub transactions: u32,
    pub days: i32,
}

impl Prune {
    /// An upkeep of this database, when one is due (the next is then put off until this one
    /// ends); `None` otherwise. Runs in a transaction.
    pub fn start(database: pg_sys::Oid) -> MfaResult<Option<Prune>> {
        let now = spi::clock();
        if !ledger::prune_starts(database, now.into_inner()) {
            return Ok(None);
        }
        let days = settings::EVENTS_RETENTION_DAYS.get();
        let cutoff = (days > 0).then(|| {
            TimestampWithTimeZone::try_from(now.into_inner() - i64::from(days) * 86_400_000_000)
                .unwrap_or(now)
        });
        let expired = cluster::held_here(sessions::organizations_with_expired_logins(now)?)?;
        let organizations = match cutoff {
            None => Vec::new(),
            Some(cutoff) if !cluster::on_citus() => events::organizations_to_prune(cutoff)?,
            // Every organization of this node's, and the project-wide events ('').
            Some(_) => {
                let mut all = organizations::all_ids()?;
                all.push(String::new());
                cluster::held_here(all)?
            }
        };
        Ok(Some(Prune {
            database,
            expired,
            next_expired: 0,
            cutoff,
            organizations,
            next: 0,
            after_id: 0,
            deleted: 0,
            logins_reaped: 0,
            transactions: 0,
            days,
        }))
    }

    /// One transaction's worth: up to `BATCH` expired logins, then old events, organization
    /// after organization. Returns whether more may remain (another step is wanted).
    pub fn step(&mut self) -> MfaResult<bool> {
        let mut budget = BATCH;
        let mut visits = 0;
        while budget > 0
            && visits < ORGANIZATIONS_PER_STEP
            && self.next_expired < self.expired.len()
        {
            visits += 1;
            let gone = sessions::reap_expired(&self.expired[self.next_expired], budget)?;
            self.logins_reaped += gone;
            if gone < budget {
                self.next_expired += 1;
            }
            budget -= gone;
        }
        while let (true, Some(cutoff)) = (budget > 0, self.cutoff) {
            if self.next >= self.organizations.len() || visits >= ORGANIZATIONS_PER_STEP {
                break;
            }
            visits += 1;
            let step = events::prune_step(
                &self.organizations[self.next],
                cutoff,
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
        Ok(self.next_expired < self.expired.len() || self.next < self.organizations.len())
    }

    /// The prune is complete: the next is due in an hour.
    pub fn finish(&self) {
        ledger::prune_finished(self.database, spi::clock().into_inner());
    }
}
