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
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
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

impl Record {
    fn key(&self) -> MemberKey {
        MemberKey {
            database: self.database,
            digest: self.digest,
            slot: self.slot,
        }
    }
    pub fn organization_id(&self) -> &str {
        self.organization.get()
    }
    pub fn member_id(&self) -> &str {
        self.member.get()
    }
    pub fn actor(&self) -> &str {
        self.actor.get()
    }
    pub fn event_type(&self) -> &str {
        self.event_type.get()
    }
    pub fn details(&self) -> &str {
        self.details.get()
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

    /// The entry of `key`, if the ledger has one.
    fn find(&mut self, key: &MemberKey) -> Option<usize> {
        let n = self.entries().len();
        let entries = self.entries();
        (0..PROBE_WINDOW.min(n))
            .map(|i| (key.slot + i) % n)
            .take_while(|&i| entries[i].used)
            .find(|&i| entries[i].database == key.database && entries[i].digest == key.digest)
    }

    /// The entry of `key`, made from `durable` (the member's row) when the ledger has none: in a
    /// never-used slot or over a quiet, written one.
    fn find_or_insert(
        &mut self,
        key: &MemberKey,
        durable: &MemberAttempts,
        now: i64,
        limits: &Limits,
    ) -> MfaResult<usize> {
        if let Some(i) = self.find(key) {
            return Ok(i);
        }
        let n = self.entries().len();
        // A database beyond its cap reuses only its own quiet entries: the rest of the table is
        // the other databases' (one database's failing members cannot refuse everyone else's).
        let at_cap = self.member_count(key.database) >= member_cap(n);
        let entries = self.entries();
        let free = (0..PROBE_WINDOW.min(n))
            .map(|i| (key.slot + i) % n)
            .find(|&i| {
                let e = &entries[i];
                let reusable = !e.used || (e.pending == 0 && e.attempts.is_quiet(now, limits));
                reusable && (!at_cap || (e.used && e.database == key.database))
            });
        let Some(i) = free else {
            return Err(MfaError::new(
                ErrorType::AttemptLedgerFull,
                "Too many members are being checked at once; try again later.",
            ));
        };
        let replaced = entries[i];
        if !(replaced.used && replaced.database == key.database) {
            if replaced.used {
                self.count_members(replaced.database, -1);
            }
            self.count_members(key.database, 1);
        }
        let entries = self.entries();
        entries[i] = Entry {
            used: true,
            database: key.database,
            digest: key.digest,
            attempts: *durable,
            pending: 0,
            durable_dirty: !durable.is_clean(),
        };
        Ok(i)
    }

    /// The member entries `database` holds (0 for a database not counted).
    fn member_count(&mut self, database: pg_sys::Oid) -> usize {
        count_of(&self.header().member_counts, database).unwrap_or(0)
    }

    /// Counts an entry taken (`1`) or given up (`-1`) by `database`.
    fn count_members(&mut self, database: pg_sys::Oid, change: isize) {
        count_change(&mut self.header().member_counts, database, change);
    }

    /// Record `i` becomes free (written, dropped, or not needed).
    fn free_record(&mut self, i: usize) {
        let database = {
            let r = &mut self.records()[i];
            if r.status == RecordStatus::Free {
                return;
            }
            r.status = RecordStatus::Free;
            r.database
        };
        let header = self.header();
        header.free_records += 1;
        count_change(&mut header.record_counts, database, -1);
    }

    /// Whether `database` may take a record for `purpose` now. Every database has a share of the
    /// queue (`records / (2 × MAX_DATABASES)`) that no other database may take: a record beyond
    /// its own share is taken only while as many records stay free as the other databases' unused
    /// shares add up to (those of databases holding none counted too). A coalescible record (a
    /// denial event) comes only from beyond both: a flood of denials leaves every share, its own
    /// database's included, to the checks of codes.
    fn may_take(&mut self, database: pg_sys::Oid, purpose: Purpose) -> bool {
        let header = self.header();
        let share = (header.records / (2 * MAX_DATABASES)).max(1);
        let free = header.free_records;
        let counts = &header.record_counts;
        // A database that finds every counter taken (more than 32 at once) has no share of its own.
        let mine = match count_of(counts, database) {
            Some(n) => n,
            None if counts.iter().any(|c| c.entries == 0) => 0,
            None => usize::MAX,
        };
        let others_taken: usize = counts
            .iter()
            .filter(|c| c.entries > 0 && c.database != database)
            .map(|c| c.entries.min(share))
            .sum();
        let others_unused = ((MAX_DATABASES - 1) * share).saturating_sub(others_taken);
        match purpose {
            Purpose::Needed => free > 0 && (mine < share || free > others_unused),
            Purpose::Coalescible => free > others_unused + share.saturating_sub(mine),
        }
    }

    /// A free record, reserved for this backend with the member's ids and the event's context,
    /// if the database may take one for `purpose` (see `may_take`).
    fn reserve(
        &mut self,
        key: &MemberKey,
        context: &EventContext,
        purpose: Purpose,
    ) -> Option<usize> {
        if !self.may_take(key.database, purpose) {
            return None;
        }
        let pid = unsafe { pg_sys::MyProcPid };
        let i = self
            .records()
            .iter()
            .position(|r| r.status == RecordStatus::Free)?;
        {
            let header = self.header();
            header.free_records -= 1;
            count_change(&mut header.record_counts, key.database, 1);
        }
        let record = &mut self.records()[i];
        record.status = RecordStatus::Reserved;
        record.owner_pid = pid;
        record.tries = 0;
        record.database = key.database;
        record.digest = key.digest;
        record.slot = key.slot;
        record.occurred_at = 0;
        record.request_id = context.request_id;
        record.organization.set(&context.organization_id);
        record.member.set(&context.member_id);
        record.actor.set(&context.actor);
        record.event_type.set(context.event_type);
        record.details.set("{}");
        Some(i)
    }

    /// Queues record `i`; the member's entry (if any) waits for it before it may be evicted.
    fn queue(&mut self, i: usize, kind: RecordKind, attempts: MemberAttempts, details: &str) {
        let seq = {
            let header = self.header();
            header.next_seq += 1;
            header.next_seq
        };
        let record = &mut self.records()[i];
        record.kind = kind;
        record.attempts = attempts;
        // Cut JSON is no JSON: details that do not fit are replaced by a note saying so.
        if details.len() <= DETAILS_BYTES {
            record.details.set(details);
        } else {
            record.details.set(r#"{"details_truncated":true}"#);
        }
        record.occurred_at = unsafe { pg_sys::GetCurrentTimestamp() };
        record.seq = seq;
        record.status = RecordStatus::Queued;
        let key = record.key();
        if kind != RecordKind::Event {
            if let Some(e) = self.find(&key) {
                self.entries()[e].pending += 1;
            }
        }
    }

    /// The slot tracking `database`, or a free one now given to it (Idle). `None` when all
    /// are taken by other databases.
    fn slot_for(&mut self, database: pg_sys::Oid) -> Option<usize> {
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
    fn wake_worker(&mut self, database: pg_sys::Oid) {
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

    fn set_latch(latch: *mut pg_sys::Latch) {
        if !latch.is_null() {
            unsafe { pg_sys::SetLatch(latch) };
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

/// A member in the ledger: their database and a keyed digest of their ids.
#[derive(Clone, Copy)]
pub struct MemberKey {
    database: pg_sys::Oid,
    digest: [u8; 16],
    slot: usize,
}

impl MemberKey {
    /// `incarnation` tells apart a member deleted and created again under the same id (their
    /// creation time): the new one has new factors, so nothing an attacker learnt carries over,
    /// and an old lock does not fall on them.
    pub fn new(organization_id: &str, member_id: &str, incarnation: i64) -> MfaResult<MemberKey> {
        let header = unsafe { LEDGER };
        if header.is_null() {
            return Err(not_preloaded());
        }
        let database = unsafe { pg_sys::MyDatabaseId };
        let mut mac = Hmac::<Sha256>::new_from_slice(unsafe { &(*header).digest_key })
            .expect("any key length");
        mac.update(&database.to_u32().to_le_bytes());
        mac.update(organization_id.as_bytes());
        mac.update(&[0]);
        mac.update(member_id.as_bytes());
        mac.update(&[0]);
        mac.update(&incarnation.to_le_bytes());
        let out = mac.finalize().into_bytes();
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&out[..16]);
        let slot = u64::from_le_bytes(out[16..24].try_into().expect("8 bytes")) as usize
            % unsafe { (*header).members };
        Ok(MemberKey {
            database,
            digest,
            slot,
        })
    }
}

/// Who an audit event is about and in which request.
pub struct EventContext {
    pub organization_id: String,
    pub member_id: String,
    pub actor: String,
    pub event_type: &'static str,
    pub request_id: [u8; 16],
}

/// A charged check: settle it with `fail` or `succeed`. Dropped unsettled (an error while the code
/// was checked), it is queued as an interrupted failure.
pub struct Charge {
    key: MemberKey,
    record: usize,
    /// When the check was charged: a success gives that place in the throttle back.
    charged_at: i64,
    settled: bool,
}

/// How long a check waits for room in a full queue before it is refused.
const QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Backpressure, only once a check found the queue full: while it has no free record, wait for
/// the worker (up to `QUEUE_WAIT`), so that a flood of failures goes at the pace the worker writes
/// them instead of being refused.
fn wait_for_room(database: pg_sys::Oid) -> MfaResult<()> {
    let deadline = std::time::Instant::now() + QUEUE_WAIT;
    loop {
        let full = {
            let mut held = Held::take(false)?;
            !held.may_take(database, Purpose::Needed)
        };
        if !full || std::time::Instant::now() >= deadline {
            return Ok(());
        }
        Held::take(true)?.wake_worker(database);
        // Not shorter: waiters that look too often take the CPU the worker needs.
        unsafe { pg_sys::pg_usleep(5_000) };
        pgrx::check_for_interrupts!();
    }
}

/// A charged check, or the refusal and the member's state.
pub type Admitted = Result<Charge, (Admission, MemberAttempts)>;

/// Admits one check of a code for a member whose durable state is `durable`.
pub fn admit(
    key: MemberKey,
    durable: &MemberAttempts,
    limits: &Limits,
    sms_code_tag: Option<u64>,
    context: &EventContext,
) -> MfaResult<Admitted> {
    register_exit_callback();
    let mut waited = false;
    loop {
        match try_admit(key, durable, limits, sms_code_tag, context)? {
            Err(Full) if !waited => {
                wait_for_room(key.database)?;
                waited = true;
            }
            Err(Full) => {
                pgrx::warning!(
                    "mfa: the attempt queue stayed full for {} s (its worker is behind); raise mfa.attempt_queue_records",
                    QUEUE_WAIT.as_secs()
                );
                return Err(MfaError::new(
                    ErrorType::AttemptLedgerFull,
                    "Too many attempts are waiting to be recorded; try again later.",
                ));
            }
            Ok(admitted) => return Ok(admitted),
        }
    }
}

/// The queue had no free record for the check (nothing was charged).
struct Full;

fn try_admit(
    key: MemberKey,
    durable: &MemberAttempts,
    limits: &Limits,
    sms_code_tag: Option<u64>,
    context: &EventContext,
) -> MfaResult<Result<Admitted, Full>> {
    let mut held = Held::take(true)?;
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let i = match held.find_or_insert(&key, durable, now, limits) {
        Ok(i) => i,
        Err(full) => {
            // Logged once the lock is released: a client slow to read could stall everyone.
            drop(held);
            pgrx::warning!(
                "mfa: the attempt ledger has no room for another member; raise mfa.attempt_ledger_members"
            );
            return Err(full);
        }
    };
    let before = held.entries()[i].attempts;
    let admission = held.entries()[i].attempts.admit(now, limits, sms_code_tag);
    if admission != Admission::Check {
        let attempts = held.entries()[i].attempts;
        // The first refusal of a second is audited (at most one a second per member; the rest
        // are counted into the next failure's details).
        if admission == (Admission::Throttled { audit: true }) {
            if let Some(record) = held.reserve(&key, context, Purpose::Coalescible) {
                held.queue(
                    record,
                    RecordKind::Event,
                    attempts,
                    r#"{"outcome":"throttled","error_type":"too_many_requests"}"#,
                );
                held.wake_worker(key.database);
            }
        }
        return Ok(Ok(Err((admission, attempts))));
    }
    let Some(record) = held.reserve(&key, context, Purpose::Needed) else {
        held.entries()[i].attempts = before;
        return Ok(Err(Full));
    };
    Ok(Ok(Ok(Charge {
        key,
        record,
        charged_at: now,
        settled: false,
    })))
}

impl Charge {
    /// The check failed: counted, maybe locked, queued with its audit details (a JSON object).
    /// Returns the member's state after it.
    pub fn fail(mut self, limits: &Limits, details: &serde_json::Value) -> MemberAttempts {
        self.settled = true;
        let mut details = details.clone();
        let mut held = Held::take(true).expect("admitted");
        {
            let now = unsafe { pg_sys::GetCurrentTimestamp() };
            let attempts = match held.find(&self.key) {
                Some(i) => {
                    let e = &mut held.entries()[i];
                    e.attempts.fail(now, limits);
                    if e.attempts.throttled > 0 {
                        details["throttled_since_last_failure"] = e.attempts.throttled.into();
                        e.attempts.throttled = 0;
                    }
                    e.durable_dirty = true;
                    e.attempts
                }
                None => MemberAttempts::default(),
            };
            details["locked"] = attempts.is_locked(now).into();
            held.queue(
                self.record,
                RecordKind::Failure,
                attempts,
                &details.to_string(),
            );
            held.wake_worker(self.key.database);
            attempts
        }
    }

    /// The check succeeded: the member's failures are reset, and written when the durable row
    /// held any.
    pub fn succeed(mut self) {
        self.settled = true;
        let mut held = Held::take(true).expect("admitted");
        {
            let (attempts, write) = match held.find(&self.key) {
                Some(i) => {
                    let e = &mut held.entries()[i];
                    e.attempts.succeed(self.charged_at);
                    let write = std::mem::replace(&mut e.durable_dirty, false);
                    (e.attempts, write)
                }
                None => (MemberAttempts::default(), true),
            };
            if write {
                held.queue(self.record, RecordKind::State, attempts, "{}");
                held.wake_worker(self.key.database);
            } else {
                held.free_record(self.record);
            }
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // An error interrupted the check: it stays counted, and is recorded as such.
        if let Ok(mut held) = Held::take(true) {
            let attempts = held
                .find(&self.key)
                .map(|i| held.entries()[i].attempts)
                .unwrap_or_default();
            held.queue(
                self.record,
                RecordKind::Failure,
                attempts,
                r#"{"outcome":"failure","error_type":"interrupted"}"#,
            );
            held.wake_worker(self.key.database);
        }
    }
}

thread_local! {
    static EXIT_CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// On exit, this backend's reservations (a FATAL error mid-check skips `Drop`) are queued as
/// interrupted failures. Registered once per backend, before its first reservation.
fn register_exit_callback() {
    if !EXIT_CALLBACK.with(|c| c.replace(true)) {
        unsafe {
            pg_sys::before_shmem_exit(Some(queue_reservations_on_exit), pg_sys::Datum::from(0))
        };
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn queue_reservations_on_exit(_code: i32, _arg: pg_sys::Datum) {
    if !is_available() {
        return;
    }
    let pid = unsafe { pg_sys::MyProcPid };
    let Ok(mut held) = Held::take(true) else {
        return;
    };
    let mine: Vec<usize> = held
        .records()
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == RecordStatus::Reserved && r.owner_pid == pid)
        .map(|(i, _)| i)
        .collect();
    for i in mine {
        let record = held.records()[i];
        let attempts = held
            .find(&record.key())
            .map(|e| held.entries()[e].attempts)
            .unwrap_or_default();
        held.queue(
            i,
            RecordKind::Failure,
            attempts,
            r#"{"outcome":"failure","error_type":"interrupted"}"#,
        );
        held.wake_worker(record.database);
    }
}

/// The member's state as the ledger knows it, or `durable` when it knows nothing of them.
pub fn current(key: &MemberKey, durable: &MemberAttempts) -> MfaResult<MemberAttempts> {
    let mut held = Held::take(false)?;
    Ok(held
        .find(key)
        .map(|i| held.entries()[i].attempts)
        .unwrap_or(*durable))
}

/// Lifts a member's lock at once (`member_unlock`), whatever the caller's transaction does, and
/// queues the reset for the durable row. During a flood it waits for room within its database's
/// share like a check of a code (`QUEUE_WAIT` at most).
pub fn unlock(
    key: MemberKey,
    durable: &MemberAttempts,
    limits: &Limits,
    context: &EventContext,
) -> MfaResult<()> {
    register_exit_callback();
    let mut waited = false;
    loop {
        {
            let mut held = Held::take(true)?;
            let now = unsafe { pg_sys::GetCurrentTimestamp() };
            // An entry even for a member the ledger did not know: it outranks the durable row
            // (locked until the worker writes the reset).
            let i = held.find_or_insert(&key, durable, now, limits)?;
            if let Some(record) = held.reserve(&key, context, Purpose::Needed) {
                held.entries()[i].attempts.unlock();
                held.entries()[i].durable_dirty = false;
                let attempts = held.entries()[i].attempts;
                held.queue(record, RecordKind::State, attempts, "{}");
                held.wake_worker(key.database);
                return Ok(());
            }
        }
        if waited {
            return Err(MfaError::new(
                ErrorType::AttemptLedgerFull,
                "Too many attempts are waiting to be recorded; try again later.",
            ));
        }
        wait_for_room(key.database)?;
        waited = true;
    }
}

/// Queues an audit event that must outlive the caller's transaction. A denial
/// (`Purpose::Coalescible`) that finds no room is counted into its database's coalesced
/// denials, which the writer records as one event; `Purpose::Needed` (a suspected theft) waits
/// for room like a check, and `false` means it could not be queued: the caller must fail closed.
pub fn queue_event(context: &EventContext, details: &serde_json::Value, purpose: Purpose) -> bool {
    // An event changes no member's entry: its key only names the database.
    let Ok(key) = MemberKey::new(&context.organization_id, &context.member_id, 0) else {
        return false;
    };
    register_exit_callback();
    let mut waited = false;
    loop {
        {
            let Ok(mut held) = Held::take(true) else {
                return false;
            };
            if let Some(record) = held.reserve(&key, context, purpose) {
                held.queue(
                    record,
                    RecordKind::Event,
                    MemberAttempts::default(),
                    &details.to_string(),
                );
                held.wake_worker(key.database);
                return true;
            }
            if purpose == Purpose::Coalescible {
                if let Some(slot) = held.slot_for(key.database) {
                    let w = &mut held.header().workers[slot];
                    w.coalesced_denials += 1;
                    held.wake_worker(key.database);
                    return true;
                }
                held.header().dropped += 1;
                return false;
            }
        }
        if waited || wait_for_room(key.database).is_err() {
            return false;
        }
        waited = true;
    }
}

// ---- The static workers: the launcher and the writers, registered at server start.

/// Registers the launcher and `mfa.attempt_ledger_writers` writers with the postmaster (at
/// preload). A writer that is done exits with code 1 and is started again at once.
fn register_workers() {
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

/// The denials of `database` that found no room since the last call, now this writer's to record.
pub fn take_coalesced_denials(database: pg_sys::Oid) -> u64 {
    let Ok(mut held) = Held::take(true) else {
        return 0;
    };
    let pid = unsafe { pg_sys::MyProcPid };
    held.header()
        .workers
        .iter_mut()
        .find(|w| w.database == database && w.pid == pid)
        .map(|w| std::mem::take(&mut w.coalesced_denials))
        .unwrap_or(0)
}

/// Up to `max` queued records of `database`, oldest first, marked as being written. When there
/// are none, `None`, and with `release` the worker's slot is given back in the same critical
/// section, so that a record queued after this starts a new worker.
pub fn take_batch(
    database: pg_sys::Oid,
    max: usize,
    max_tries: u8,
    release: bool,
) -> Option<Vec<(usize, Record)>> {
    let mut held = Held::take(true).ok()?;
    let mut dropped = 0;
    let mut batch: Vec<(usize, u64)> = Vec::new();
    for i in 0..held.records().len() {
        let r = &held.records()[i];
        if r.database != database || r.status != RecordStatus::Queued {
            continue;
        }
        if r.tries >= max_tries {
            // Written and failed `max_tries` times: a record that cannot be written is dropped
            // so that the others are not stuck behind it.
            held.free_record(i);
            dropped += 1;
            continue;
        }
        batch.push((i, r.seq));
    }
    held.header().dropped += dropped;
    if dropped > 0 {
        pgrx::log!("mfa: dropped {dropped} attempt records that could not be written");
    }
    if batch.is_empty() {
        if !release {
            return None;
        }
        let pid = unsafe { pg_sys::MyProcPid };
        for w in held.header().workers.iter_mut() {
            if w.database == database && w.pid == pid && w.coalesced_denials == 0 {
                w.state = WorkerState::Idle;
                w.pid = 0;
                w.latch = null_mut();
            }
        }
        return None;
    }
    batch.sort_by_key(|&(_, seq)| seq);
    batch.truncate(max);
    let records = held.records();
    Some(
        batch
            .into_iter()
            .map(|(i, _)| {
                records[i].status = RecordStatus::Applying;
                (i, records[i])
            })
            .collect(),
    )
}

/// The records of a committed batch are done: freed, and their members' entries may be evicted.
pub fn finish_batch(batch: &[(usize, Record)]) {
    let Ok(mut held) = Held::take(true) else {
        return;
    };
    for (i, done) in batch {
        let r = &held.records()[*i];
        if r.status == RecordStatus::Applying && r.seq == done.seq {
            held.free_record(*i);
        }
        if done.kind != RecordKind::Event {
            if let Some(e) = held.find(&done.key()) {
                let e = &mut held.entries()[e];
                e.pending = e.pending.saturating_sub(1);
            }
        }
    }
}

/// Drops every record of a database without the extension (dropped since they were queued).
pub fn discard_database(database: pg_sys::Oid) {
    if let Ok(mut held) = Held::take(true) {
        for i in 0..held.records().len() {
            let r = &held.records()[i];
            if r.database == database && r.status != RecordStatus::Reserved {
                held.free_record(i);
            }
        }
        for w in held.header().workers.iter_mut() {
            if w.database == database {
                w.coalesced_denials = 0;
            }
        }
    }
}

impl Record {
    /// The event that stands for `denials` session denials of this database that found no room
    /// in the queue (written by its writer, never queued).
    pub fn coalesced_denials(database: pg_sys::Oid, denials: u64) -> Record {
        let mut record: Record = unsafe { std::mem::zeroed() };
        record.kind = RecordKind::Event;
        record.database = database;
        record.occurred_at = unsafe { pg_sys::GetCurrentTimestamp() };
        record.request_id = *uuid::Uuid::now_v7().as_bytes();
        record.actor.set("mfa attempt ledger");
        record.event_type.set("session.denied");
        record.details.set(
            &serde_json::json!({
                "outcome": "denied",
                "coalesced_denials": denials,
                "reason": "session denials that found no room in the attempt ledger's queue, counted as one event",
            })
            .to_string(),
        );
        record
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
