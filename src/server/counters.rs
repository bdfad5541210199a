//! The server's counters for `mfa.metrics()`: logins started and second-factor attempts by method
//! and outcome, since the server (or its shared memory, after a crash) started.
//!
//! A small shared-memory segment of its own, asked for at preload through the ledger's hooks: one
//! `AtomicU64` per counter (`core::metrics::Counter::index`), each on a cache line of its own so
//! that backends counting different things never contend. Counting is one relaxed `fetch_add` (a
//! `lock xadd` on x86-64): no lock, no SPI, nothing that can wait or fail; a backend without the
//! preload counts nothing (it refuses every authentication anyway). Relaxed is enough: each
//! counter is read on its own, and a reader may see one count a moment late.
//!
//! The counts are the server's: every database of the cluster together, reset when shared memory
//! is set up again (a restart, or the reinitialisation after a backend crashed), and per node
//! (a standby or another Citus node counts its own). An attempt is counted when it is decided,
//! whatever the caller's transaction does next.

use crate::core::metrics::{Counter, COUNTERS};
use pgrx::pg_sys;
use std::ffi::CStr;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicU64, Ordering};

const NAME: &CStr = c"mfa counters";

/// A counter alone on its cache line.
#[repr(C, align(64))]
struct Slot(AtomicU64);

#[repr(C)]
struct Counters {
    /// When the counters started, in microseconds since the Unix epoch.
    since_micros: AtomicU64,
    slots: [Slot; COUNTERS],
}

static mut COUNTERS_AT: *mut Counters = null_mut();

/// Asks for the counters' shared memory: called by the ledger's request hook.
///
/// # Safety
/// Only from a shmem request hook.
pub unsafe fn request_shared_memory() {
    unsafe { pg_sys::RequestAddinShmemSpace(size_of::<Counters>()) };
}

/// Finds or creates the counters, at zero: called by the ledger's startup hook.
///
/// # Safety
/// Only from a shmem startup hook, under `AddinShmemInitLock`.
pub unsafe fn attach_shared_memory() {
    unsafe {
        let mut found = false;
        let counters = pg_sys::ShmemInitStruct(NAME.as_ptr(), size_of::<Counters>(), &mut found)
            .cast::<Counters>();
        if !found {
            std::ptr::write_bytes(counters.cast::<u8>(), 0, size_of::<Counters>());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            (*counters).since_micros.store(now, Ordering::Relaxed);
        }
        COUNTERS_AT = counters;
    }
}

/// Counts one of `counter`: a relaxed atomic increment, nothing else.
#[inline]
pub fn add(counter: Counter) {
    // SAFETY: set once by the startup hook before any backend exists; shared memory lives as long
    // as the process.
    if let Some(counters) = unsafe { COUNTERS_AT.as_ref() } {
        counters.slots[counter.index()]
            .0
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// The counters as read now (each on its own), and when they started.
pub struct Snapshot {
    pub since_unix_seconds: f64,
    pub values: [u64; COUNTERS],
}

/// The counters, or None without the preload.
pub fn snapshot() -> Option<Snapshot> {
    let counters = unsafe { COUNTERS_AT.as_ref() }?;
    let mut values = [0; COUNTERS];
    for (value, slot) in values.iter_mut().zip(&counters.slots) {
        *value = slot.0.load(Ordering::Relaxed);
    }
    Some(Snapshot {
        since_unix_seconds: counters.since_micros.load(Ordering::Relaxed) as f64 / 1e6,
        values,
    })
}
