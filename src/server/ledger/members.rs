//! The member table: each member's attempts, keyed by a keyed digest of (database, organization,
//! member), the charge of a check (settled as a failure or a success, queued as an interrupted
//! failure when its backend dies), and a member's unlock.

use super::*;

impl Held {
    /// The entry of `key`, if the ledger has one.
    pub(super) fn find(&mut self, key: &MemberKey) -> Option<usize> {
        let n = self.entries().len();
        let entries = self.entries();
        (0..PROBE_WINDOW.min(n))
            .map(|i| (key.slot + i) % n)
            .take_while(|&i| entries[i].used)
            .find(|&i| entries[i].database == key.database && entries[i].digest == key.digest)
    }

    /// The entry of `key`, made from `durable` (the member's row) when the ledger has none: in a
    /// never-used slot or over a quiet, written one.
    pub(super) fn find_or_insert(
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
    pub(super) fn member_count(&mut self, database: pg_sys::Oid) -> usize {
        count_of(&self.header().member_counts, database).unwrap_or(0)
    }

    /// Counts an entry taken (`1`) or given up (`-1`) by `database`.
    pub(super) fn count_members(&mut self, database: pg_sys::Oid, change: isize) {
        count_change(&mut self.header().member_counts, database, change);
    }
}

/// A member in the ledger: their database and a keyed digest of their ids.
#[derive(Clone, Copy)]
pub struct MemberKey {
    pub(super) database: pg_sys::Oid,
    pub(super) digest: [u8; 16],
    pub(super) slot: usize,
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

/// A charged check: settle it with `fail` or `succeed`. Dropped unsettled (an error while the code
/// was checked), it is queued as an interrupted failure.
pub struct Charge {
    pub(super) key: MemberKey,
    pub(super) record: usize,
    /// When the check was charged: a success gives that place in the throttle back.
    pub(super) charged_at: i64,
    pub(super) settled: bool,
}

/// How long a check waits for room in a full queue before it is refused.
pub(super) const QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Backpressure, only once a check found the queue full: while it has no free record, wait for
/// the worker (up to `QUEUE_WAIT`), so that a flood of failures goes at the pace the worker writes
/// them instead of being refused.
pub(super) fn wait_for_room(database: pg_sys::Oid) -> MfaResult<()> {
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
pub(super) struct Full;

pub(super) fn try_admit(
    key: MemberKey,
    durable: &MemberAttempts,
    limits: &Limits,
    sms_code_tag: Option<u64>,
    context: &EventContext,
) -> MfaResult<Result<Admitted, Full>> {
    let mut held = Held::take(true)?;
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    held.wake_for_due_prune(key.database, now);
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
            let mut lock_started = false;
            let attempts = match held.find(&self.key) {
                Some(i) => {
                    let e = &mut held.entries()[i];
                    let was_locked = e.attempts.is_locked(now);
                    e.attempts.fail(now, limits);
                    lock_started = !was_locked && e.attempts.is_locked(now);
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
            // The failure that locked the member (NOTIFY mfa_events tells listeners of it).
            if lock_started {
                details["lock_started"] = true.into();
            }
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
pub(super) fn register_exit_callback() {
    if !EXIT_CALLBACK.with(|c| c.replace(true)) {
        unsafe {
            pg_sys::before_shmem_exit(Some(queue_reservations_on_exit), pg_sys::Datum::from(0))
        };
    }
}

#[pgrx::pg_guard]
pub(super) unsafe extern "C-unwind" fn queue_reservations_on_exit(_code: i32, _arg: pg_sys::Datum) {
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
