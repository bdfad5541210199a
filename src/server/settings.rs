//! The `mfa.*` settings (GUCs).
//!
//! Anything that could weaken security is `SUSET`: only a superuser (postgresql.conf, `ALTER SYSTEM`,
//! or `ALTER DATABASE … SET` by a superuser) may change it, so an application role cannot raise its
//! own lock threshold or lengthen a code's life. Values are read through these statics, never with
//! `current_setting()`.

use crate::core::attempts::{MAX_CHECKS_PER_SECOND, MAX_LOCK_US, MAX_THRESHOLD};
use crate::core::crypto::{parse_master_key, Keys, KEY_LEN};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};

pub static TOTP_ISSUER: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"MFA"));
pub static ENCRYPTION_KEY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static ENCRYPTION_KEY_FILE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
pub static ENCRYPTION_KEY_COMMAND: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
pub static LOCK_THRESHOLD: GucSetting<i32> = GucSetting::<i32>::new(10);
pub static LOCK_MINUTES: GucSetting<i32> = GucSetting::<i32>::new(60);
pub static TOTP_SKEW_STEPS: GucSetting<i32> = GucSetting::<i32>::new(1);
pub static SMS_CODE_LIFETIME_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(120);
pub static INTERMEDIATE_SESSION_MINUTES: GucSetting<i32> = GucSetting::<i32>::new(10);
pub static SMS_MIN_INTERVAL_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(30);
pub static SMS_SENDS_PER_NUMBER_PER_HOUR: GucSetting<i32> = GucSetting::<i32>::new(10);
pub static SMS_SENDS_PER_MEMBER_PER_HOUR: GucSetting<i32> = GucSetting::<i32>::new(10);
pub static SMS_SENDS_PER_PREFIX_PER_HOUR: GucSetting<i32> = GucSetting::<i32>::new(100);
pub static OUTBOX_MAX_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(5);
pub static LOCK_MAX_MINUTES: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static MEMBER_CHECKS_PER_SECOND: GucSetting<i32> = GucSetting::<i32>::new(5);
pub static SMS_CODE_MAX_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(5);
pub static ATTEMPT_LEDGER_MEMBERS: GucSetting<i32> = GucSetting::<i32>::new(100_000);
pub static ATTEMPT_QUEUE_RECORDS: GucSetting<i32> = GucSetting::<i32>::new(1024);
pub static ATTEMPT_LEDGER_WRITERS: GucSetting<i32> = GucSetting::<i32>::new(2);
pub static SMS_OUTBOX_NOTIFY: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static EVENTS_RETENTION_DAYS: GucSetting<i32> = GucSetting::<i32>::new(0);

/// Registers every setting; called from `_PG_init`.
pub fn register() {
    GucRegistry::define_string_guc(
        c"mfa.totp_issuer",
        c"Issuer shown by authenticator apps for new TOTP registrations.",
        c"Appears in the otpauth URI label and issuer parameter; ':' is replaced because the key-URI format forbids it.",
        &TOTP_ISSUER,
        GucContext::Userset,
        GucFlags::default(),
    );
    // Safety: the check hook is guarded and keeps to PostgreSQL's rules for a string's memory.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"mfa.encryption_key",
            c"Deprecated: a key in a setting (use mfa.encryption_key_file or mfa.encryption_key_command).",
            c"Still honoured from postgresql.conf and from ALTER DATABASE/ROLE settings made before 0.6.0, and then shown only as its fingerprint; new values cannot be SET or stored with ALTER DATABASE/ROLE.",
            &ENCRYPTION_KEY,
            GucContext::Suset,
            GucFlags::SUPERUSER_ONLY
                | GucFlags::NO_SHOW_ALL
                | GucFlags::NO_RESET_ALL,
            Some(check_setting_key),
            None,
            None,
        );
    }
    define_int(
        c"mfa.lock_threshold",
        c"Failed MFA attempts within any mfa.lock_minutes (and without a success) that lock a member.",
        &LOCK_THRESHOLD,
        1,
        MAX_THRESHOLD as i32,
    );
    define_int(
        c"mfa.lock_minutes",
        c"How long a locked member stays locked, in minutes; also the length of the sliding window in which failures count.",
        &LOCK_MINUTES,
        5,
        (MAX_LOCK_US / 60_000_000) as i32,
    );
    define_int(
        c"mfa.lock_max_minutes",
        c"Longest lock of a repeat offender, in minutes: each lock after another (no success between) doubles, up to this; at most mfa.lock_minutes (the default, 0) turns growth off.",
        &LOCK_MAX_MINUTES,
        0,
        30 * 24 * 60,
    );
    define_int(
        c"mfa.member_checks_per_second",
        c"Failed or still-running code checks per member in any one second; more are refused (too_many_requests) without being checked. Successes do not count.",
        &MEMBER_CHECKS_PER_SECOND,
        1,
        MAX_CHECKS_PER_SECOND as i32,
    );
    define_int(
        c"mfa.sms_code_max_attempts",
        c"Wrong attempts after which an SMS code dies (a new one must be sent).",
        &SMS_CODE_MAX_ATTEMPTS,
        1,
        100,
    );
    // Shared memory is sized once, at server start; a library loaded later may not define
    // server-start settings (and has no ledger to size).
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        register_ledger_sizes();
        register_key_sources();
    }
    define_int(
        c"mfa.totp_skew_steps",
        c"TOTP steps accepted either side of the current one (clock drift).",
        &TOTP_SKEW_STEPS,
        0,
        2,
    );
    define_int(
        c"mfa.sms_code_lifetime_seconds",
        c"Lifetime of an SMS one-time passcode, in seconds (NIST 800-63B: at most 10 minutes).",
        &SMS_CODE_LIFETIME_SECONDS,
        30,
        600,
    );
    define_int(
        c"mfa.intermediate_session_minutes",
        c"Lifetime of an intermediate session token, in minutes.",
        &INTERMEDIATE_SESSION_MINUTES,
        1,
        60,
    );
    define_int(
        c"mfa.sms_min_interval_seconds",
        c"Minimum time between two SMS sends to one member, in seconds (0 disables).",
        &SMS_MIN_INTERVAL_SECONDS,
        0,
        3600,
    );
    define_int(
        c"mfa.sms_sends_per_number_per_hour",
        c"SMS sends allowed to one phone number in any hour: an organization's own sends, plus every organization's sends to the number while it is not proven.",
        &SMS_SENDS_PER_NUMBER_PER_HOUR,
        1,
        1000,
    );
    define_int(
        c"mfa.sms_sends_per_member_per_hour",
        c"SMS sends allowed to one member in any hour.",
        &SMS_SENDS_PER_MEMBER_PER_HOUR,
        1,
        1000,
    );
    define_int(
        c"mfa.sms_sends_per_prefix_per_hour",
        c"SMS sends allowed in any hour to a block of 10,000 numbers (all digits but the last four), against SMS pumping; counted as mfa.sms_sends_per_number_per_hour is.",
        &SMS_SENDS_PER_PREFIX_PER_HOUR,
        1,
        1_000_000,
    );
    define_int(
        c"mfa.outbox_max_attempts",
        c"Delivery attempts after which an SMS outbox message is dead.",
        &OUTBOX_MAX_ATTEMPTS,
        1,
        100,
    );
    define_int(
        c"mfa.events_retention_days",
        c"Days the audit trail (mfa.events) keeps an event: the attempt ledger's writers delete older ones, in batches, about once an hour per database (0, the default: kept for ever).",
        &EVENTS_RETENTION_DAYS,
        0,
        36_500,
    );
    // Not a security setting: off, messages still reach workers, by their polling.
    GucRegistry::define_bool_guc(
        c"mfa.sms_outbox_notify",
        c"Whether otp_sms_send wakes SMS workers (NOTIFY mfa_sms_outbox) when its transaction commits.",
        c"A transaction that notifies holds a cluster-wide lock from the start of its commit to the end (WAL flush included), so notifying sends commit one at a time. Turn off at send rates where that matters; workers then find messages by polling.",
        &SMS_OUTBOX_NOTIFY,
        GucContext::Userset,
        GucFlags::default(),
    );
    // Reserve the prefix so a typo such as `SET mfa.lock_treshold` is an error, not a silent no-op.
    #[cfg(not(any(feature = "pg13", feature = "pg14")))]
    unsafe {
        pgrx::pg_sys::MarkGUCPrefixReserved(c"mfa".as_ptr())
    };
    #[cfg(any(feature = "pg13", feature = "pg14"))]
    unsafe {
        pgrx::pg_sys::EmitWarningsOnPlaceholders(c"mfa".as_ptr())
    };
}

fn define_int(
    name: &'static std::ffi::CStr,
    description: &'static std::ffi::CStr,
    setting: &'static GucSetting<i32>,
    min: i32,
    max: i32,
) {
    GucRegistry::define_int_guc(
        name,
        description,
        c"Superuser only: an application role must not be able to weaken it.",
        setting,
        min,
        max,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// The lockout limits of the attempt ledger, as configured now.
pub fn attempt_limits() -> crate::core::attempts::Limits {
    const MINUTE_US: i64 = 60_000_000;
    crate::core::attempts::Limits {
        threshold: LOCK_THRESHOLD.get() as u32,
        lock_us: LOCK_MINUTES.get() as i64 * MINUTE_US,
        lock_max_us: LOCK_MAX_MINUTES.get() as i64 * MINUTE_US,
        checks_per_second: MEMBER_CHECKS_PER_SECOND.get() as u32,
        sms_code_max_attempts: SMS_CODE_MAX_ATTEMPTS.get() as u32,
    }
}

/// The TOTP issuer, never empty.
pub fn totp_issuer() -> String {
    TOTP_ISSUER
        .get()
        .and_then(|s| s.into_string().ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "MFA".to_string())
}

/// The configured encryption key text, if any.
fn encryption_key_text() -> Option<String> {
    ENCRYPTION_KEY
        .get()
        .and_then(|s| s.into_string().ok())
        .filter(|s| !s.is_empty())
}

/// What `mfa.encryption_key` shows once its key was taken: the key's fingerprint, never the key.
const SETTING_MASK: &str = "(hidden) key ";

thread_local! {
    /// Keys taken from `mfa.encryption_key` by its check hook, by fingerprint.
    static SETTING_KEYS: RefCell<Vec<(String, [u8; KEY_LEN])>> = const { RefCell::new(Vec::new()) };
}

/// The master key `mfa.encryption_key` holds in this backend, if it is set.
pub fn encryption_key_master() -> Option<[u8; KEY_LEN]> {
    let shown = encryption_key_text()?;
    let fingerprint = shown.strip_prefix(SETTING_MASK)?;
    SETTING_KEYS.with_borrow(|keys| keys.iter().find(|(f, _)| f == fingerprint).map(|(_, k)| *k))
}

/// Check hook of `mfa.encryption_key`: takes the key out of the setting (which then shows only
/// its fingerprint), and refuses new values from `SET` and `ALTER DATABASE/ROLE … SET` (which
/// would put a key into logs and into a catalog every role reads). Values from postgresql.conf
/// and from settings stored before 0.6.0 are honoured.
///
/// # Safety
/// Called by PostgreSQL with a string it allocated for the setting.
#[pg_guard]
pub unsafe extern "C-unwind" fn check_setting_key(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    unsafe {
        if newval.is_null() || (*newval).is_null() {
            return true;
        }
        let text = CStr::from_ptr(*newval).to_string_lossy().into_owned();
        if text.is_empty() || text.starts_with(SETTING_MASK) {
            return true;
        }
        // The message never shows the value (PostgreSQL's default message would).
        let refuse = |message: &CStr| {
            pg_sys::GUC_check_errmsg_string = pg_sys::pstrdup(message.as_ptr());
            false
        };
        if source == pg_sys::GucSource::PGC_S_TEST || source == pg_sys::GucSource::PGC_S_SESSION {
            return refuse(c"mfa.encryption_key can no longer be set: put the key into mfa.encryption_key_file (see the README)");
        }
        let Ok(master) = parse_master_key(&text) else {
            return refuse(c"mfa.encryption_key must be 64 hexadecimal digits or the base64 encoding of 32 bytes");
        };
        let fingerprint = Keys::from_master(&master).fingerprint_hex();
        SETTING_KEYS.with_borrow_mut(|keys| {
            if !keys.iter().any(|(f, _)| f == &fingerprint) {
                keys.push((fingerprint.clone(), master));
            }
        });
        let shown = CString::new(format!("{SETTING_MASK}{fingerprint}")).expect("no NUL");
        replace_setting_string(newval, &shown);
        true
    }
}

/// Replaces the string a check hook was given, with PostgreSQL's allocator for settings.
unsafe fn replace_setting_string(newval: *mut *mut c_char, with: &CStr) {
    unsafe {
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
        {
            extern "C" {
                fn free(pointer: *mut c_void);
                fn strdup(text: *const c_char) -> *mut c_char;
            }
            let copy = strdup(with.as_ptr());
            if copy.is_null() {
                return;
            }
            free((*newval).cast());
            *newval = copy;
        }
        #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
        {
            let copy = pg_sys::guc_strdup(pg_sys::LOG as i32, with.as_ptr());
            if copy.is_null() {
                return;
            }
            pg_sys::guc_free((*newval).cast());
            *newval = copy;
        }
    }
}

/// Where the server's master keys come from: set in the server's configuration only, read by the
/// postmaster (and again at each reload), never holding a key themselves.
fn register_key_sources() {
    GucRegistry::define_string_guc(
        c"mfa.encryption_key_file",
        c"File with the master keys, one per line, oldest first: the last encrypts, all decrypt.",
        c"Must be owned by the server's user with mode 0600 (or by root with 0640). Read at server start and at every reload.",
        &ENCRYPTION_KEY_FILE,
        GucContext::Postmaster,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"mfa.encryption_key_command",
        c"Shell command that prints the master keys, one per line, oldest first (a KMS or vault client).",
        c"Run by the server at start and at every reload; its output never reaches a log.",
        &ENCRYPTION_KEY_COMMAND,
        GucContext::Postmaster,
        GucFlags::SUPERUSER_ONLY,
    );
}

fn register_ledger_sizes() {
    GucRegistry::define_int_guc(
        c"mfa.attempt_ledger_members",
        c"Members the attempt ledger (shared memory) tracks at once.",
        c"About 420 bytes each (the times of the failures in each member's window and of their checks in the last second). A member is forgotten only once quiet (no lock, no failure in the window); when none can be, attempts are refused.",
        &ATTEMPT_LEDGER_MEMBERS,
        128,
        10_000_000,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"mfa.attempt_queue_records",
        c"Failures and audit events the attempt ledger holds until its worker has written them.",
        c"About 2.1 kB each. When full, attempts are refused until the worker catches up.",
        &ATTEMPT_QUEUE_RECORDS,
        64,
        1_000_000,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"mfa.attempt_ledger_writers",
        c"Background workers that write the attempt ledger's records, started with the server.",
        c"Each takes a max_worker_processes slot for good, so that user queries cannot keep the ledger from being written; one database is served by one writer at a time.",
        &ATTEMPT_LEDGER_WRITERS,
        1,
        crate::server::ledger::MAX_WRITERS as i32,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}

/// The settings each node keeps its own (`mfa.distribute()` does not compare them): where its key
/// comes from, and the attempt ledger's sizes in its shared memory.
#[cfg(test)]
const PER_NODE: [&str; 6] = [
    "mfa.encryption_key",
    "mfa.encryption_key_file",
    "mfa.encryption_key_command",
    "mfa.attempt_ledger_members",
    "mfa.attempt_queue_records",
    "mfa.attempt_ledger_writers",
];

#[cfg(test)]
mod tests {
    /// Every setting is either compared across a Citus cluster's nodes by `mfa.distribute()`
    /// (a delegated call reads the values of the node that runs it) or listed as a node's own.
    #[test]
    fn distribute_compares_every_setting_a_call_reads() {
        let root = env!("CARGO_MANIFEST_DIR");
        let settings = std::fs::read_to_string(format!("{root}/src/server/settings.rs")).unwrap();
        let citus = std::fs::read_to_string(format!("{root}/sql/citus.sql")).unwrap();
        let compared = &citus[citus.find("FROM pg_settings").unwrap()..];
        let compared = &compared[..compared.find("$q$").unwrap()];
        let mut names = 0;
        for (at, _) in settings.match_indices("c\"mfa.") {
            let name = &settings[at + 2..];
            let name = &name[..name.find('"').unwrap()];
            if name == "mfa" || name.contains(' ') {
                continue;
            }
            names += 1;
            let quoted = format!("'{name}'");
            assert_ne!(
                compared.contains(&quoted),
                super::PER_NODE.contains(&name),
                "{name}: compared by mfa.distribute() or a node's own, one of the two"
            );
        }
        assert!(names >= 20, "{names} settings found");
    }
}
