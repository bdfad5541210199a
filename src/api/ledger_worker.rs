//! The attempt ledger's workers: one background worker per database, started on demand (by the
//! launcher, when a record is queued for it) that writes queued failures, resets and audit events into
//! `mfa.member_lockouts` and `mfa.events` in transactions of its own, then exits when the queue
//! has stayed empty for a moment (an idle worker would hold up `DROP DATABASE`).

use crate::store::{ledger, lockouts};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use std::time::Duration;

/// Records written in one transaction.
const BATCH: usize = 1024;
/// Attempts to write a record before it is dropped (so that one bad record cannot stall the rest).
const MAX_TRIES: u8 = 3;
/// How long an idle worker waits for more before it exits.
const LINGER: Duration = Duration::from_millis(500);

/// How often the launcher looks for wanted workers without being woken.
const LAUNCHER_TICK: Duration = Duration::from_secs(1);

#[pg_guard]
unsafe extern "C-unwind" fn detach_launcher(_code: i32, _arg: pg_sys::Datum) {
    ledger::detach_launcher();
}

/// The launcher: a static worker without a database. Backends only set its latch (safe even
/// while an error unwinds or a backend exits); it asks the postmaster for the workers wanted.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn mfa_ledger_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    if !ledger::attach_launcher() {
        return;
    }
    unsafe { pg_sys::before_shmem_exit(Some(detach_launcher), pg_sys::Datum::from(0)) };
    let mut warned = false;
    loop {
        // The launcher is the one process that rereads the key file at a reload: every backend
        // then reads the new keys from shared memory.
        if BackgroundWorker::sighup_received() {
            crate::store::key_ring::reload();
        }
        let failed = ledger::launch_wanted();
        if failed.is_empty() {
            warned = false;
        } else if !warned {
            pgrx::warning!(
                "mfa: could not start the attempt ledger's worker of {} database(s) (max_worker_processes?); their failures stay queued",
                failed.len()
            );
            warned = true;
        }
        if !BackgroundWorker::wait_latch(Some(LAUNCHER_TICK)) {
            return;
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn give_back_slot(_code: i32, arg: pg_sys::Datum) {
    ledger::release_worker(pg_sys::Oid::from(arg.value() as u32));
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn mfa_ledger_worker_main(arg: pg_sys::Datum) {
    let database = pg_sys::Oid::from(arg.value() as u32);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    if !ledger::claim_worker(database) {
        return;
    }
    unsafe { pg_sys::before_shmem_exit(Some(give_back_slot), arg) };
    if !BackgroundWorker::transaction(lockouts::tables_exist) {
        // The extension was dropped since the records were queued: nothing to write them to.
        ledger::discard_database(database);
        return;
    }
    loop {
        let batch = match ledger::take_batch(database, BATCH, MAX_TRIES, false) {
            Some(batch) => batch,
            None => {
                // At shutdown (SIGTERM) the queue is drained without waiting.
                if !BackgroundWorker::sigterm_received() {
                    BackgroundWorker::wait_latch(Some(LINGER));
                }
                // Empty again: the slot is given back in the same critical section, so a record
                // queued from now on starts a new worker.
                match ledger::take_batch(database, BATCH, MAX_TRIES, true) {
                    Some(batch) => batch,
                    None => return,
                }
            }
        };
        BackgroundWorker::transaction(|| {
            if let Err(e) = lockouts::write_batch(batch.iter().map(|(_, record)| record)) {
                pgrx::error!("mfa: attempt ledger worker: {}", e.message);
            }
        });
        ledger::finish_batch(&batch);
    }
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
