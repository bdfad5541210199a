//! The attempt ledger's background workers, all registered at server start (so user queries
//! cannot take their slots): the launcher, which rereads the key file at a reload and wakes the
//! writers for records nobody tracks, and `mfa.attempt_ledger_writers` writers. An idle writer
//! has no database; woken, it takes the database whose records have waited longest, connects to
//! it, writes its failures, resets and audit events into `mfa.member_lockouts` and `mfa.events` in
//! transactions of its own, and exits when the queue has stayed empty for a moment (an idle
//! connection would hold up `DROP DATABASE`) or another database waits for its turn; the
//! postmaster starts it again at once. While its queue is empty, a writer also deletes the audit
//! events older than `mfa.events_retention_days` (`flow::retention`), a batch at a time.

use crate::flow::ledger_flush;
use crate::flow::retention::Prune;
use crate::server::ledger;
use crate::store::lockouts;
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

/// Records written in one transaction.
const BATCH: usize = 1024;
/// Attempts to write a record before it is dropped (so that one bad record cannot stall the rest).
const MAX_TRIES: u8 = 3;
/// How long an idle writer waits for more before it exits.
const LINGER: Duration = Duration::from_millis(500);
/// How long a writer serves one database before it gives its turn to another that waits.
const TURN: Duration = Duration::from_secs(1);

/// The pause between two batches of the audit trail's retention (records that arrive end it).
const PRUNE_PAUSE: Duration = Duration::from_millis(100);

/// How often the launcher looks for records nobody tracks without being woken.
const LAUNCHER_TICK: Duration = Duration::from_secs(1);

#[pg_guard]
unsafe extern "C-unwind" fn detach_launcher(_code: i32, _arg: pg_sys::Datum) {
    ledger::detach_launcher();
}

/// The launcher: a static worker without a database. Backends only set latches (safe even while
/// an error unwinds or a backend exits).
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn mfa_ledger_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    if !ledger::attach_launcher() {
        return;
    }
    unsafe { pg_sys::before_shmem_exit(Some(detach_launcher), pg_sys::Datum::from(0)) };
    loop {
        // The launcher is the one process that rereads the key file at a reload: every backend
        // then reads the new keys from shared memory.
        if BackgroundWorker::sighup_received() {
            crate::server::key_ring::reload();
        }
        ledger::launch_wanted();
        if !BackgroundWorker::wait_latch(Some(LAUNCHER_TICK)) {
            return;
        }
    }
}

thread_local! {
    /// The database this writer serves, and whether it got connected to it.
    static SERVING: Cell<(u32, bool)> = const { Cell::new((0, false)) };
}

#[pg_guard]
unsafe extern "C-unwind" fn writer_exits(_code: i32, arg: pg_sys::Datum) {
    let (database, connected) = SERVING.get();
    if database != 0 {
        ledger::release_worker(pg_sys::Oid::from(database), connected);
    }
    ledger::detach_writer(arg.value());
}

/// Exits so that the postmaster starts this writer again (code 0 would unregister it).
fn exit_to_restart() -> ! {
    exit_process(1)
}

// PostgreSQL 18's bindings declare proc_exit as returning (); it never does.
#[allow(unreachable_code)]
fn exit_process(code: i32) -> ! {
    unsafe { pg_sys::proc_exit(code) };
    unreachable!("proc_exit does not return")
}

/// Waits for records once the queue is empty: the next batch and the coalesced denials taken
/// with it, or `None` once the queue has stayed empty for `LINGER`, the database then given back
/// (in the same critical section as the last look, unless a denial was counted meanwhile, so a
/// record queued from then on wakes a writer). A wake that brings no record (a signal, a record
/// another look already took) waits on for the rest of `LINGER`. At shutdown (SIGTERM) the queue
/// is drained without waiting.
fn linger(database: pg_sys::Oid) -> Option<(Vec<(usize, ledger::Record)>, u64)> {
    let deadline = Instant::now() + LINGER;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // SIGTERM (or the postmaster's death) ends the wait for good.
        let mut stop = BackgroundWorker::sigterm_received();
        if !left.is_zero() && !stop {
            // Whole milliseconds (WaitLatch's unit), at least one: no busy loop before the end.
            stop = !BackgroundWorker::wait_latch(Some(left.max(Duration::from_millis(1))));
        }
        let coalesced = ledger::take_coalesced_denials(database);
        let done = stop || Instant::now() >= deadline;
        match ledger::take_batch(database, BATCH, MAX_TRIES, done && coalesced == 0) {
            Some(batch) => return Some((batch, coalesced)),
            None if coalesced > 0 => return Some((Vec::new(), coalesced)),
            None if done => return None,
            None => {}
        }
    }
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn mfa_ledger_writer_main(arg: pg_sys::Datum) {
    let index = arg.value();
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    if !ledger::attach_writer(index) {
        exit_to_restart();
    }
    unsafe { pg_sys::before_shmem_exit(Some(writer_exits), arg) };
    let database = loop {
        if let Some(database) = ledger::take_database(index) {
            break database;
        }
        if !BackgroundWorker::wait_latch(Some(LAUNCHER_TICK)) {
            // SIGTERM: the server shuts down.
            exit_process(0);
        }
    };
    SERVING.set((database.to_u32(), false));
    // A database dropped since its records were queued ends this process here (FATAL); the
    // exit callback then discards them.
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    SERVING.set((database.to_u32(), true));
    if !BackgroundWorker::transaction(lockouts::tables_exist) {
        // The extension was dropped since the records were queued: nothing to write them to.
        ledger::discard_database(database);
        exit_to_restart();
    }
    let turn_started = Instant::now();
    let mut retention = Retention::default();
    loop {
        // A wake that came while the last batch was written is for records this look finds: the
        // latch is reset first, so that only a wake after the look cuts the linger's wait short.
        // (Left set, it ended the next linger at once on an empty queue: under a steady stream
        // of records the writer exited after nearly every batch, and each new one connected and
        // mapped the whole queue again.)
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
        let mut coalesced = ledger::take_coalesced_denials(database);
        let batch = match ledger::take_batch(database, BATCH, MAX_TRIES, false) {
            Some(batch) => batch,
            None if coalesced > 0 => Vec::new(),
            None if retention.step(database) => {
                if turn_started.elapsed() >= TURN && ledger::others_wait(database) {
                    exit_to_restart();
                }
                continue;
            }
            None => match linger(database) {
                Some((batch, denials)) => {
                    coalesced = denials;
                    batch
                }
                None => exit_to_restart(),
            },
        };
        let mut batch = batch;
        if coalesced > 0 {
            let summary = ledger::Record::coalesced_denials(database, coalesced);
            batch.push((ledger::NOT_QUEUED, summary));
        }
        let parts = BackgroundWorker::transaction(|| match ledger_flush::parts(batch) {
            Ok(parts) => parts,
            Err(e) => pgrx::error!("mfa: attempt ledger writer: {}", e.message),
        });
        // A part that fails is tried again later, and this process ends once the others are
        // written (its restart is the pause before the next try).
        let mut failed = None;
        for part in &parts {
            let written = BackgroundWorker::transaction(AssertUnwindSafe(|| {
                crate::store::spi::in_subtransaction(|| ledger_flush::write_part(part))
            }));
            match written {
                Ok(()) => ledger::finish_batch(&part.records),
                Err(e) => {
                    ledger::try_again_later(&part.records);
                    failed = Some(e.message);
                }
            }
        }
        if let Some(message) = failed {
            pgrx::error!("mfa: attempt ledger writer: {message}");
        }
        if turn_started.elapsed() >= TURN && ledger::others_wait(database) {
            // Another database waits and no writer is idle: this one gives its turn up.
            exit_to_restart();
        }
    }
}

/// The audit trail's retention in a writer's turn: started once, when the queue is first empty.
#[derive(Default)]
struct Retention {
    looked: bool,
    prune: Option<Prune>,
}

impl Retention {
    /// One batch of the retention, if one is due and the server is not shutting down; whether a
    /// batch ran (the writer then looks at its queue again before the next). A failure is logged
    /// and ends this prune; the next is due in ten minutes (`ledger::prune_starts`).
    fn step(&mut self, database: pg_sys::Oid) -> bool {
        if BackgroundWorker::sigterm_received() {
            return false;
        }
        if !self.looked {
            self.looked = true;
            self.prune = BackgroundWorker::transaction(|| match Prune::start(database) {
                Ok(prune) => prune,
                Err(e) => {
                    pgrx::warning!(
                        "mfa: upkeep (expired logins, audit trail retention): {}",
                        e.message
                    );
                    None
                }
            });
        }
        let Some(prune) = self.prune.as_mut() else {
            return false;
        };
        // In a subtransaction: an error is this step's, reported as a warning below, not the
        // writer's end (its records wait behind it).
        let step = BackgroundWorker::transaction(AssertUnwindSafe(|| {
            crate::store::spi::in_subtransaction(|| prune.step())
        }));
        let more = match step {
            Ok(more) => more,
            Err(e) => {
                pgrx::warning!(
                    "mfa: upkeep (expired logins, audit trail retention): {}",
                    e.message
                );
                self.prune = None;
                return false;
            }
        };
        pgrx::debug1!(
            "mfa: upkeep: {} expired logins and {} old events deleted in {} transactions so far",
            prune.logins_reaped,
            prune.deleted,
            prune.transactions
        );
        if more {
            // A short pause between batches; records that arrive end it.
            BackgroundWorker::wait_latch(Some(PRUNE_PAUSE));
            return true;
        }
        prune.finish();
        if prune.deleted > 0 {
            pgrx::log!(
                "mfa: audit trail retention: deleted {} events older than {} days in {} transactions (database {})",
                prune.deleted,
                prune.days,
                prune.transactions,
                database.to_u32()
            );
        }
        self.prune = None;
        true
    }
}

/// On Citus, the coordinator's attempt ledger writer hands the records of one organization to the
/// node holding it through this function, which Citus delegates there: they are written in the
/// transaction of the call, on that node alone. For the writers only (no role is granted it).
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn _attempt_ledger_write(
    organization_id: &str,
    records: pgrx::JsonB,
) -> crate::error::SqlResult<()> {
    // A writer connects as the bootstrap superuser; nobody else writes the ledger's records.
    if !unsafe { pg_sys::superuser_arg(pg_sys::GetSessionUserId()) } {
        pgrx::ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "mfa._attempt_ledger_write is the attempt ledger writers' own"
        );
    }
    Ok(ledger_flush::write_handed(organization_id, records.0)?)
}

/// The attempt ledger's occupancy, for monitoring: entries and queued records in use of those
/// configured, and records dropped (written and failed repeatedly, or events without room).
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn attempt_ledger_stats() -> crate::error::SqlResult<crate::store::jsonb::Jsonb> {
    let stats = ledger::stats()?;
    Ok(crate::store::jsonb::Jsonb(serde_json::json!({
        "members": stats.members,
        "members_in_use": stats.members_in_use,
        "records": stats.records,
        "records_queued": stats.records_queued,
        "records_dropped": stats.records_dropped,
    })))
}
