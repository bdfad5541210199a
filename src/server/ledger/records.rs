//! The record queue: failures, resets and audit events on their way to `mfa.member_lockouts` and
//! `mfa.events`, each database's share of it, and the batches the writers take.

use super::*;

impl Record {
    pub(super) fn key(&self) -> MemberKey {
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

    /// What the writer reads of this record, to hand it to another node (Citus).
    pub fn handed(&self) -> HandedRecord {
        HandedRecord {
            kind: self.kind,
            organization_id: self.organization_id().to_string(),
            member_id: self.member_id().to_string(),
            failed_attempts: self.attempts.failure_count(),
            failure_window_started_at: self.attempts.window_started_at(),
            lock_created_at: self.attempts.lock_created_at,
            lock_expires_at: self.attempts.lock_expires_at,
            lock_count: self.attempts.lock_count,
            occurred_at: self.occurred_at,
            request_id: uuid::Uuid::from_bytes(self.request_id).to_string(),
            actor: self.actor().to_string(),
            event_type: self.event_type().to_string(),
            details: self.details().to_string(),
        }
    }

    /// A record handed over by another node, as the writer reads it; never queued.
    pub fn from_handed(handed: &HandedRecord) -> Record {
        let mut record: Record = unsafe { std::mem::zeroed() };
        record.kind = handed.kind;
        record.organization.set(&handed.organization_id);
        record.member.set(&handed.member_id);
        record.attempts = MemberAttempts::from_durable(
            handed.failed_attempts,
            handed.failure_window_started_at,
            handed.lock_created_at,
            handed.lock_expires_at,
            handed.lock_count,
        );
        record.occurred_at = handed.occurred_at;
        record.request_id = uuid::Uuid::parse_str(&handed.request_id)
            .map(|id| *id.as_bytes())
            .unwrap_or_default();
        record.actor.set(&handed.actor);
        record.event_type.set(&handed.event_type);
        record.details.set(&handed.details);
        record
    }
}

/// A queued record as the coordinator of a Citus cluster hands it to the node holding its
/// organization (`mfa._attempt_ledger_write`): what the writer reads of it (the member's durable
/// state, the event), none of the queue's bookkeeping. Times are ledger times.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct HandedRecord {
    kind: RecordKind,
    organization_id: String,
    member_id: String,
    failed_attempts: u32,
    failure_window_started_at: i64,
    lock_created_at: i64,
    lock_expires_at: i64,
    lock_count: u32,
    occurred_at: i64,
    request_id: String,
    actor: String,
    event_type: String,
    details: String,
}

impl Held {
    /// Record `i`, while it is still the one a writer took (`taken`) and is applying; never a
    /// record the writer made itself (`NOT_QUEUED`, outside the queue).
    fn still_taken(&mut self, i: usize, taken: &Record) -> Option<&mut Record> {
        self.records()
            .get_mut(i)
            .filter(|r| r.status == RecordStatus::Applying && r.seq == taken.seq)
    }

    /// Record `i` becomes free (written, dropped, or not needed).
    pub(super) fn free_record(&mut self, i: usize) {
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
    pub(super) fn may_take(&mut self, database: pg_sys::Oid, purpose: Purpose) -> bool {
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
    pub(super) fn reserve(
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
    pub(super) fn queue(
        &mut self,
        i: usize,
        kind: RecordKind,
        attempts: MemberAttempts,
        details: &str,
    ) {
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
}

/// Who an audit event is about and in which request.
pub struct EventContext {
    pub organization_id: String,
    pub member_id: String,
    pub actor: String,
    pub event_type: &'static str,
    pub request_id: [u8; 16],
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
    // The records in use gather at the front of the queue (a reservation takes the first free
    // one): the look ends once it has met as many as are in use, not at the queue's end (65,536
    // records of 1.7 kB are 110 MB to walk, for every batch).
    let mut in_use = held.records().len() - held.header().free_records;
    for i in 0..held.records().len() {
        if in_use == 0 {
            break;
        }
        let r = &held.records()[i];
        if r.status == RecordStatus::Free {
            continue;
        }
        in_use -= 1;
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

/// The place in the queue of a record the writer made itself (coalesced denials) or was handed:
/// `finish_batch` has nothing to free for it.
pub const NOT_QUEUED: usize = usize::MAX;

/// The records of a committed batch are done: freed, and their members' entries may be evicted.
pub fn finish_batch(batch: &[(usize, Record)]) {
    let Ok(mut held) = Held::take(true) else {
        return;
    };
    for (i, done) in batch {
        if held.still_taken(*i, done).is_some() {
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

/// The records of a batch that could not be written go back to the queue, their tries counted:
/// a writer takes them again (a record that fails `max_tries` times is dropped, `take_batch`).
pub fn try_again_later(batch: &[(usize, Record)]) {
    let Ok(mut held) = Held::take(true) else {
        return;
    };
    for (i, taken) in batch {
        if let Some(r) = held.still_taken(*i, taken) {
            r.status = RecordStatus::Queued;
            r.tries = r.tries.saturating_add(1);
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
