//! The attempt ledger: shared memory that outlives every caller's transaction.
//!
//! Two arrays behind one LWLock, sized at server start:
//! - **members** (`mfa.attempt_ledger_members`): what `core::attempts` knows of each member who
//!   tried a code recently, keyed by a keyed digest of (database, organization, member). Open
//!   addressing; an entry is only ever overwritten, by another member, when it is *quiet* (see
//!   `MemberAttempts::is_quiet`) and the worker has written everything it holds. When no entry in
//!   a member's probe window can be taken, the attempt is refused (fail closed), never forgotten.
//! - **records** (`mfa.attempt_queue_records`): failures, resets and audit events on their way to
//!   `mfa.member_lockouts` and `mfa.events`, written by `api::ledger_worker` in transactions of its
//!   own. A record is reserved *before* a code is checked, so the failure always has room; a
//!   backend that dies with a reservation queues it as an interrupted failure on its way out
//!   (`before_shmem_exit`). Each database has a share of the records no other database can take
//!   (see `Held::reserve`), and denial events beyond it are coalesced into a count.
//! - **writers** (`mfa.attempt_ledger_writers`): static background workers, registered at server
//!   start, so their slots are theirs whatever user queries take (parallel workers share
//!   `max_worker_processes` with dynamic workers). An idle writer has no database; woken, it takes
//!   a database whose records wait, connects to it, writes, and exits to be started again
//!   (a process connects to one database in its life).
//!
//! By job: `members.rs` (the member table, a check's charge, an unlock), `records.rs` (the
//! record queue and its shares, the writers' batches), `workers.rs` (the launcher, the writers
//! and their slots); this file holds the layout, the shared-memory hooks and the lock (`Held`).
//!
//! A crash of any backend makes PostgreSQL reinitialize shared memory: what the worker had not yet
//! written is lost (the records still queued), and every member's state is reloaded from
//! `mfa.member_lockouts` as they next try.

use crate::core::attempts::{Admission, Limits, MemberAttempts};
use crate::error::{ErrorType, MfaError, MfaResult};
use hmac::{Hmac, Mac};
use pgrx::pg_sys;
use sha2::Sha256;
use std::ffi::CStr;
use std::ptr::null_mut;

mod members;
mod records;
mod retention;
mod workers;

pub use members::*;
pub use records::*;
pub use retention::*;
pub use workers::*;

/// Bytes kept of an organization or member id (128 characters of up to 4 bytes).
pub const ID_BYTES: usize = 512;
const EVENT_TYPE_BYTES: usize = 48;
const DETAILS_BYTES: usize = 512;
/// Databases whose workers the ledger tracks at once.
pub const MAX_DATABASES: usize = 16;
/// Entries looked at for one member, from the slot their digest names.
const PROBE_WINDOW: usize = 64;
/// Writers the ledger can hold (the setting's maximum).
pub const MAX_WRITERS: usize = 16;

/// The count of `database` in `counts`, if it has one.
fn count_of(counts: &[DatabaseCount], database: pg_sys::Oid) -> Option<usize> {
    counts
        .iter()
        .find(|c| c.entries > 0 && c.database == database)
        .map(|c| c.entries)
}

/// Adds `change` to the count of `database`, taking a free counter for it when it has none. A
/// database that finds every counter taken is not counted (only 32 databases at once are).
fn count_change(counts: &mut [DatabaseCount], database: pg_sys::Oid, change: isize) {
    let at = counts
        .iter()
        .position(|c| c.entries > 0 && c.database == database)
        .or_else(|| {
            (change > 0)
                .then(|| counts.iter().position(|c| c.entries == 0))
                .flatten()
        });
    if let Some(at) = at {
        counts[at].database = database;
        counts[at].entries = counts[at].entries.saturating_add_signed(change);
    }
}

/// The most member entries one database may hold: all but the shares of the others, each
/// `members / (2 × MAX_DATABASES)` (about 53 % of the table).
fn member_cap(members: usize) -> usize {
    let share = members / (2 * MAX_DATABASES);
    members - (MAX_DATABASES - 1) * share
}

const NAME: &CStr = c"mfa attempt ledger";

#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WorkerState {
    Idle,
    /// Records are queued for it: an idle writer is to take it.
    Wanted,
    /// A writer (`pid`) writes its records.
    Running,
}

/// A database whose records the ledger tracks.
#[repr(C)]
#[derive(Clone, Copy)]
struct WorkerSlot {
    database: pg_sys::Oid,
    state: WorkerState,
    pid: i32,
    latch: *mut pg_sys::Latch,
    /// Denial events that found no record within the database's share: counted here, written
    /// as one event's `coalesced_denials`.
    coalesced_denials: u64,
}

/// How many member entries a database holds.
#[repr(C)]
#[derive(Clone, Copy)]
struct DatabaseCount {
    database: pg_sys::Oid,
    entries: usize,
}

/// A writer process: its latch, and whether it waits for a database.
#[repr(C)]
#[derive(Clone, Copy)]
struct WriterSlot {
    pid: i32,
    latch: *mut pg_sys::Latch,
    idle: bool,
}

#[repr(C)]
struct Header {
    lock: *mut pg_sys::LWLock,
    digest_key: [u8; 32],
    members: usize,
    records: usize,
    next_seq: u64,
    /// Records dropped after repeated failures to write them, and events that found no room.
    dropped: u64,
    workers: [WorkerSlot; MAX_DATABASES],
    writers: [WriterSlot; MAX_WRITERS],
    /// Entries of the member table each database holds (quiet ones included), for its cap.
    member_counts: [DatabaseCount; 2 * MAX_DATABASES],
    /// Records not free, by database, and the free ones: kept at every change of a record's
    /// status to or from `Free`, so that a check never scans the queue to know its share.
    record_counts: [DatabaseCount; 2 * MAX_DATABASES],
    free_records: usize,
    /// The launcher's latch (null until it runs): it looks for queued records no database slot
    /// tracks.
    launcher_latch: *mut pg_sys::Latch,
    /// When each database's next prune of the audit trail is due (`retention.rs`).
    prunes: [retention::PruneSlot; MAX_DATABASES],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Entry {
    used: bool,
    database: pg_sys::Oid,
    digest: [u8; 16],
    attempts: MemberAttempts,
    /// Records of this member queued and not yet written.
    pending: u32,
    /// Whether the durable row may hold failures or a lock (a reset must then be written).
    durable_dirty: bool,
}

#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RecordStatus {
    Free,
    Reserved,
    Queued,
    Applying,
}

/// What a record asks the worker to write.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// The member's state (`attempts`) and an audit event.
    Failure,
    /// The member's state only (a success or an unlock cleared it).
    State,
    /// An audit event only (a denied session decision).
    Event,
}

/// What a record is taken for, which decides how much of the queue it may use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Purpose {
    /// A check of a code, an unlock, a suspected theft: never dropped; within the database's
    /// share, or beyond it while every other database's share stays free.
    Needed,
    /// A denial event: only where no share is touched; otherwise counted into the database's
    /// coalesced denials.
    Coalescible,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Record {
    pub status: RecordStatus,
    pub kind: RecordKind,
    pub tries: u8,
    pub owner_pid: i32,
    pub database: pg_sys::Oid,
    pub seq: u64,
    digest: [u8; 16],
    slot: usize,
    pub attempts: MemberAttempts,
    pub occurred_at: i64,
    pub request_id: [u8; 16],
    organization: Text<ID_BYTES>,
    member: Text<ID_BYTES>,
    actor: Text<64>,
    event_type: Text<EVENT_TYPE_BYTES>,
    details: Text<DETAILS_BYTES>,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Text<const N: usize> {
    len: u16,
    bytes: [u8; N],
}

impl<const N: usize> Text<N> {
    /// Up to N bytes, cut at a character boundary.
    fn set(&mut self, s: &str) {
        let mut end = s.len().min(N);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        self.len = end as u16;
    }

    fn get(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

static mut LEDGER: *mut Header = null_mut();
static mut PREVIOUS_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;
static mut PREVIOUS_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

fn layout(members: usize, records: usize) -> (usize, usize, usize) {
    let align = |n: usize| n.div_ceil(64) * 64;
    let entries_at = align(size_of::<Header>());
    let records_at = align(entries_at + members * size_of::<Entry>());
    (
        entries_at,
        records_at,
        records_at + records * size_of::<Record>(),
    )
}

fn configured_size() -> (usize, usize) {
    (
        crate::server::settings::ATTEMPT_LEDGER_MEMBERS.get() as usize,
        crate::server::settings::ATTEMPT_QUEUE_RECORDS.get() as usize,
    )
}

/// Asks for the ledger's shared memory; called from `_PG_init` while the postmaster preloads the
/// library (the only time shared memory can be asked for).
pub fn request_at_preload() {
    unsafe {
        #[cfg(any(feature = "pg13", feature = "pg14"))]
        request_shared_memory();
        #[cfg(not(any(feature = "pg13", feature = "pg14")))]
        {
            PREVIOUS_REQUEST_HOOK = pg_sys::shmem_request_hook;
            pg_sys::shmem_request_hook = Some(request_shared_memory);
        }
        PREVIOUS_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(attach_shared_memory);
    }
    register_workers();
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn request_shared_memory() {
    unsafe {
        if let Some(previous) = PREVIOUS_REQUEST_HOOK {
            previous();
        }
        let (members, records) = configured_size();
        pg_sys::RequestAddinShmemSpace(layout(members, records).2);
        pg_sys::RequestNamedLWLockTranche(NAME.as_ptr(), 1);
        crate::server::key_ring::request_shared_memory();
        crate::server::counters::request_shared_memory();
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn attach_shared_memory() {
    unsafe {
        if let Some(previous) = PREVIOUS_STARTUP_HOOK {
            previous();
        }
        let (members, records) = configured_size();
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let total = layout(members, records).2;
        let base = pg_sys::ShmemInitStruct(NAME.as_ptr(), total, &mut found).cast::<u8>();
        if !found {
            // Zero is a valid empty state for every entry and record.
            std::ptr::write_bytes(base, 0, total);
            let header = base.cast::<Header>();
            (*header).lock = &raw mut (*pg_sys::GetNamedLWLockTranche(NAME.as_ptr())).lock;
            // The digest key is new at each start: member ids cannot be chosen to collide.
            let digest_key = &mut (*header).digest_key;
            rand::Rng::fill(&mut rand::rngs::OsRng, &mut digest_key[..]);
            (*header).members = members;
            (*header).records = records;
            (*header).next_seq = 1;
            (*header).free_records = records;
        }
        LEDGER = base.cast::<Header>();
        crate::server::key_ring::attach_shared_memory();
        crate::server::counters::attach_shared_memory();
        pg_sys::LWLockRelease(init_lock);
    }
}

/// The refusal of every authentication when the library was not preloaded.
fn not_preloaded() -> MfaError {
    MfaError::new(
        ErrorType::NotPreloaded,
        "mfa counts failed attempts in shared memory: add mfa to shared_preload_libraries and restart the server.",
    )
}

pub fn is_available() -> bool {
    unsafe { !LEDGER.is_null() }
}

/// The ledger under its lock, exclusive or shared; released on drop (also when a panic unwinds).
struct Held {
    header: *mut Header,
}

impl Held {
    fn take(exclusive: bool) -> MfaResult<Held> {
        let header = unsafe { LEDGER };
        if header.is_null() {
            return Err(not_preloaded());
        }
        let mode = if exclusive {
            pg_sys::LWLockMode::LW_EXCLUSIVE
        } else {
            pg_sys::LWLockMode::LW_SHARED
        };
        unsafe { pg_sys::LWLockAcquire((*header).lock, mode) };
        Ok(Held { header })
    }

    fn header(&mut self) -> &mut Header {
        unsafe { &mut *self.header }
    }

    fn entries(&mut self) -> &mut [Entry] {
        unsafe {
            let (at, _, _) = layout((*self.header).members, (*self.header).records);
            std::slice::from_raw_parts_mut(
                self.header.cast::<u8>().add(at).cast::<Entry>(),
                (*self.header).members,
            )
        }
    }

    fn records(&mut self) -> &mut [Record] {
        unsafe {
            let (_, at, _) = layout((*self.header).members, (*self.header).records);
            std::slice::from_raw_parts_mut(
                self.header.cast::<u8>().add(at).cast::<Record>(),
                (*self.header).records,
            )
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // An aborting transaction may have released every LWLock already.
        unsafe {
            let lock = (*self.header).lock;
            if pg_sys::LWLockHeldByMe(lock) {
                pg_sys::LWLockRelease(lock);
            }
        }
    }
}

/// Counters for `mfa.attempt_ledger_stats()`.
pub struct Stats {
    pub members: usize,
    pub members_in_use: usize,
    pub records: usize,
    pub records_queued: usize,
    pub records_dropped: u64,
}

pub fn stats() -> MfaResult<Stats> {
    let mut held = Held::take(false)?;
    let members = held.entries().len();
    let members_in_use = held.entries().iter().filter(|e| e.used).count();
    let records = held.records().len();
    let records_queued = held
        .records()
        .iter()
        .filter(|r| r.status != RecordStatus::Free)
        .count();
    Ok(Stats {
        members,
        members_in_use,
        records,
        records_queued,
        records_dropped: held.header().dropped,
    })
}
