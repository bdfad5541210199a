//! When each database's next upkeep (`flow::retention`: expired logins recorded as abandoned, the
//! audit trail's retention) is due. The ledger's writers do it for a database they serve once its
//! queue is empty; a backend that checks a code in a database whose upkeep is due wakes a writer
//! for it, so that a database whose attempts all succeed (and queue nothing) is kept too.

use super::*;

/// How long after a complete upkeep of a database the next one is due: a login given up is
/// recorded about this long after its token expires.
pub const PRUNE_INTERVAL_US: i64 = 600_000_000;
/// How long after a prune started the next may start when this one does not end (a writer that
/// gave its turn up, or died): its progress is committed, the rest waits this long.
pub const PRUNE_RETRY_US: i64 = 600_000_000;
/// How often a backend may wake a writer for a database's due prune.
const PRUNE_WAKE_US: i64 = 60_000_000;

/// A database's prune times (all 0: due now).
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct PruneSlot {
    database: pg_sys::Oid,
    /// The next prune is not due before this time.
    next_at: i64,
    /// When a backend last woke a writer for it.
    woken_at: i64,
}

impl Held {
    /// The prune slot of `database`: its own, or the one whose database was pruned longest ago,
    /// given to it (due now).
    fn prune_slot(&mut self, database: pg_sys::Oid) -> usize {
        let slots = &mut self.header().prunes;
        if let Some(at) = slots.iter().position(|s| s.database == database) {
            return at;
        }
        let at = (0..slots.len())
            .min_by_key(|&i| (slots[i].database != pg_sys::InvalidOid, slots[i].next_at))
            .expect("slots");
        slots[at] = PruneSlot {
            database,
            next_at: 0,
            woken_at: 0,
        };
        at
    }

    /// From a backend checking a code (with the ledger held): wakes a writer for `database` when
    /// its prune is due and none was woken for it in the last minute.
    pub(super) fn wake_for_due_prune(&mut self, database: pg_sys::Oid, now: i64) {
        let at = self.prune_slot(database);
        let slot = self.header().prunes[at];
        if now < slot.next_at || now < slot.woken_at + PRUNE_WAKE_US {
            return;
        }
        self.header().prunes[at].woken_at = now;
        self.wake_worker(database);
    }
}

/// Whether a prune of `database` is due at `now`; when it is, the next one is put off by
/// `PRUNE_RETRY_US` (`prune_finished` sets the real next time), so that a prune that fails or
/// is cut short is not retried at once.
pub fn prune_starts(database: pg_sys::Oid, now: i64) -> bool {
    let Ok(mut held) = Held::take(true) else {
        return false;
    };
    let at = held.prune_slot(database);
    let slot = &mut held.header().prunes[at];
    if now < slot.next_at {
        return false;
    }
    slot.next_at = now + PRUNE_RETRY_US;
    true
}

/// The prune of `database` is complete: the next is due `PRUNE_INTERVAL_US` after `now`.
pub fn prune_finished(database: pg_sys::Oid, now: i64) {
    if let Ok(mut held) = Held::take(true) {
        let at = held.prune_slot(database);
        held.header().prunes[at].next_at = now + PRUNE_INTERVAL_US;
    }
}
