//! The static background workers: the launcher and the writers, registered at server start, and
//! the slots through which a database's records find a writer.

use super::*;

impl Held {
    /// The slot tracking `database`, or a free one now given to it (Idle). `None` when all
    /// are taken by other databases.
    pub(super) fn slot_for(&mut self, database: pg_sys::Oid) -> Option<usize> {
        let header = self.header();
        if let Some(slot) = header.workers.iter().position(|w| {
            w.database == database && (w.state != WorkerState::Idle || w.coalesced_denials > 0)
        }) {
            return Some(slot);
        }
        let slot = header
            .workers
            .iter()
            .position(|w| w.state == WorkerState::Idle && w.coalesced_denials == 0)?;
        header.workers[slot] = WorkerSlot {
            database,
            state: WorkerState::Idle,
            pid: 0,
            latch: null_mut(),
            coalesced_denials: 0,
        };
        Some(slot)
    }

    /// Wakes the writer of the database, or marks it wanted and wakes the idle writers (one of
    /// them takes it). Only sets latches: safe on every path, an error's unwinding and a
    /// backend's exit included.
    pub(super) fn wake_worker(&mut self, database: pg_sys::Oid) {
        // Every slot taken by other databases: the launcher gives this one a slot once one is
        // free (it looks for queued records of databases without one).
        let Some(slot) = self.slot_for(database) else {
            Self::set_latch(self.header().launcher_latch);
            return;
        };
        let header = self.header();
        let w = &mut header.workers[slot];
        match w.state {
            WorkerState::Running => Self::set_latch(w.latch),
            WorkerState::Wanted | WorkerState::Idle => {
                w.state = WorkerState::Wanted;
                for writer in header.writers.iter().filter(|w| w.idle) {
                    Self::set_latch(writer.latch);
                }
            }
        }
    }

    pub(super) fn set_latch(latch: *mut pg_sys::Latch) {
        if !latch.is_null() {
            unsafe { pg_sys::SetLatch(latch) };
        }
    }
}

// ---- The static workers: the launcher and the writers, registered at server start.

/// Registers the launcher and `mfa.attempt_ledger_writers` writers with the postmaster (at
/// preload). A writer that is done exits with code 1 and is started again at once.
pub(super) fn register_workers() {
    pgrx::bgworkers::BackgroundWorkerBuilder::new("mfa attempt ledger launcher")
        .set_type("mfa attempt ledger launcher")
        .set_library("mfa")
        .set_function("mfa_ledger_launcher_main")
        .enable_shmem_access(None)
        .set_restart_time(Some(std::time::Duration::from_secs(1)))
        .load();
    let writers =
        (crate::server::settings::ATTEMPT_LEDGER_WRITERS.get() as usize).clamp(1, MAX_WRITERS);
    for i in 0..writers {
        pgrx::bgworkers::BackgroundWorkerBuilder::new(&format!("mfa attempt ledger writer {i}"))
            .set_type("mfa attempt ledger writer")
            .set_library("mfa")
            .set_function("mfa_ledger_writer_main")
            .set_argument(Some(pg_sys::Datum::from(i)))
            .enable_spi_access()
            .set_restart_time(Some(std::time::Duration::ZERO))
            .load();
    }
}

/// Makes this process the launcher.
pub fn attach_launcher() -> bool {
    let Ok(mut held) = Held::take(true) else {
        return false;
    };
    held.header().launcher_latch = unsafe { pg_sys::MyLatch };
    true
}

pub fn detach_launcher() {
    if let Ok(mut held) = Held::take(true) {
        held.header().launcher_latch = null_mut();
    }
}

/// One round of the launcher: a database with queued records (or coalesced denials) but no
/// writer is wanted again, so an idle writer takes it (its records were queued while every
/// database slot was taken, or its writer died).
pub fn launch_wanted() {
    let Ok(mut held) = Held::take(true) else {
        return;
    };
    let workers = held.header().workers;
    let mut orphans: Vec<pg_sys::Oid> = held
        .records()
        .iter()
        .filter(|r| r.status == RecordStatus::Queued)
        .map(|r| r.database)
        .chain(
            workers
                .iter()
                .filter(|w| w.coalesced_denials > 0)
                .map(|w| w.database),
        )
        .filter(|db| {
            !workers
                .iter()
                .any(|w| w.database == *db && w.state == WorkerState::Running)
        })
        .collect();
    orphans.sort_unstable_by_key(|db| db.to_u32());
    orphans.dedup();
    for db in orphans {
        held.wake_worker(db);
    }
}

/// Makes this process writer `index`, idle.
pub fn attach_writer(index: usize) -> bool {
    let Ok(mut held) = Held::take(true) else {
        return false;
    };
    let Some(writer) = held.header().writers.get_mut(index) else {
        return false;
    };
    *writer = WriterSlot {
        pid: unsafe { pg_sys::MyProcPid },
        latch: unsafe { pg_sys::MyLatch },
        idle: true,
    };
    true
}

pub fn detach_writer(index: usize) {
    if let Ok(mut held) = Held::take(true) {
        if let Some(writer) = held.header().writers.get_mut(index) {
            if writer.pid == unsafe { pg_sys::MyProcPid } {
                *writer = WriterSlot {
                    pid: 0,
                    latch: null_mut(),
                    idle: false,
                };
            }
        }
    }
}

/// A database whose records wait for a writer, now this writer's (`Running`); the one waiting
/// longest first (its oldest queued record). `None` when no database waits.
pub fn take_database(index: usize) -> Option<pg_sys::Oid> {
    let mut held = Held::take(true).ok()?;
    let pid = unsafe { pg_sys::MyProcPid };
    let latch = unsafe { pg_sys::MyLatch };
    let oldest = |held: &mut Held, db: pg_sys::Oid| {
        held.records()
            .iter()
            .filter(|r| r.database == db && r.status == RecordStatus::Queued)
            .map(|r| r.seq)
            .min()
            .unwrap_or(u64::MAX)
    };
    let wanted: Vec<(usize, pg_sys::Oid)> = held
        .header()
        .workers
        .iter()
        .enumerate()
        .filter(|(_, w)| w.state == WorkerState::Wanted)
        .map(|(i, w)| (i, w.database))
        .collect();
    let (slot, database) = wanted
        .into_iter()
        .min_by_key(|&(_, db)| oldest(&mut held, db))?;
    let w = &mut held.header().workers[slot];
    w.state = WorkerState::Running;
    w.pid = pid;
    w.latch = latch;
    if let Some(writer) = held.header().writers.get_mut(index) {
        writer.idle = false;
    }
    // Records a previous writer of this database was writing when it died are written again.
    for r in held.records().iter_mut() {
        if r.database == database && r.status == RecordStatus::Applying {
            r.status = RecordStatus::Queued;
            r.tries = r.tries.saturating_add(1);
        }
    }
    Some(database)
}

/// Whether another database waits for a writer while none is idle: the writer of `database`
/// then gives its turn up (fairness between databases).
pub fn others_wait(database: pg_sys::Oid) -> bool {
    let Ok(mut held) = Held::take(false) else {
        return false;
    };
    let header = held.header();
    header.writers.iter().all(|w| !w.idle || w.pid == 0)
        && header
            .workers
            .iter()
            .any(|w| w.database != database && w.state == WorkerState::Wanted)
}

/// The writer of `database` stops (done, its turn given up, or an error): the database goes
/// back to `Wanted` when records (or coalesced denials) still wait, else to `Idle`. A batch it
/// was writing goes back to the queue, one try spent. `connected`: false when the writer could
/// not connect to the database (dropped since): its records are discarded.
pub fn release_worker(database: pg_sys::Oid, connected: bool) {
    let pid = unsafe { pg_sys::MyProcPid };
    let Ok(mut held) = Held::take(true) else {
        return;
    };
    let Some(slot) = held
        .header()
        .workers
        .iter()
        .position(|w| w.database == database && w.pid == pid)
    else {
        return;
    };
    for i in 0..held.records().len() {
        let r = &mut held.records()[i];
        if r.database == database {
            if !connected && r.status != RecordStatus::Reserved {
                held.free_record(i);
            } else if r.status == RecordStatus::Applying {
                r.status = RecordStatus::Queued;
                r.tries = r.tries.saturating_add(1);
            }
        }
    }
    if !connected {
        held.header().workers[slot].coalesced_denials = 0;
    }
    let waiting = held
        .records()
        .iter()
        .any(|r| r.database == database && r.status == RecordStatus::Queued)
        || held.header().workers[slot].coalesced_denials > 0;
    let w = &mut held.header().workers[slot];
    w.pid = 0;
    w.latch = null_mut();
    w.state = if waiting {
        WorkerState::Wanted
    } else {
        WorkerState::Idle
    };
    if waiting {
        held.wake_worker(database);
    }
}
