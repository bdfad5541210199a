//! Which master keys are known and which one encrypts. In order of precedence:
//! - the server's keys (`mfa.encryption_key_file` / `mfa.encryption_key_command`, read by the
//!   postmaster into shared memory): the last one listed encrypts;
//! - the deprecated `mfa.encryption_key` setting (0.3.0 deployments), honoured but never shown;
//! - the per-database keys generated at `CREATE EXTENSION` (development; kept in
//!   `mfa.database_keys`, which no role but the extension's owner can read).
//!
//! Every known key decrypts (each ciphertext names its key by fingerprint) and verifies keyed
//! hashes, so a rotation never strands a secret.

use crate::core::crypto::{parse_master_key, Keys, KEY_LEN};
use crate::error::{ErrorType, MfaError, MfaResult};
use crate::settings;
use crate::store::{cluster, spi};
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void, CStr, CString};

/// What `mfa.encryption_key` shows once its key was taken: the key's fingerprint, never the key.
const SETTING_MASK: &str = "(hidden) key ";

thread_local! {
    static WARNED_DATABASE_KEY: Cell<bool> = const { Cell::new(false) };
    static WARNED_SETTING_KEY: Cell<bool> = const { Cell::new(false) };
    /// Keys taken from `mfa.encryption_key` by its check hook, by fingerprint.
    static SETTING_KEYS: RefCell<Vec<(String, [u8; KEY_LEN])>> = const { RefCell::new(Vec::new()) };
    /// The server's keys, derived once per generation of the ring.
    static SERVER_KEYS: RefCell<(u64, Vec<Keys>)> = const { RefCell::new((0, Vec::new())) };
}

/// Where a known key comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Source {
    Server,
    Setting,
    Database,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Server => "server",
            Source::Setting => "setting",
            Source::Database => "database",
        }
    }
}

/// A known key and where it comes from.
#[derive(Clone)]
pub struct KnownKey {
    pub keys: Keys,
    pub source: Source,
}

fn server_keys() -> Vec<Keys> {
    let (generation, masters) = crate::store::key_ring::server_keys();
    SERVER_KEYS.with_borrow_mut(|(cached_generation, cached)| {
        if *cached_generation != generation {
            *cached = masters.iter().map(Keys::from_master).collect();
            *cached_generation = generation;
        }
        cached.clone()
    })
}

/// The key `mfa.encryption_key` holds in this backend, if it is set.
fn setting_key() -> Option<Keys> {
    let shown = settings::encryption_key_text()?;
    let fingerprint = shown.strip_prefix(SETTING_MASK)?;
    let master = SETTING_KEYS
        .with_borrow(|keys| keys.iter().find(|(f, _)| f == fingerprint).map(|(_, k)| *k))?;
    Some(Keys::from_master(&master))
}

fn database_keys(only: Option<&str>) -> MfaResult<Vec<Keys>> {
    let stored = spi::typed_rows(
        "SELECT key FROM mfa.database_keys WHERE $1::text IS NULL OR key_id = $1
          ORDER BY created_at, key_id",
        &[only.into()],
        |row| row.get::<Vec<u8>>(1),
    )?;
    Ok(stored
        .into_iter()
        .flatten()
        .filter_map(|key| <[u8; KEY_LEN]>::try_from(key.as_slice()).ok())
        .map(|master| Keys::from_master(&master))
        .collect())
}

/// The key that encrypts new secrets and hashes new codes.
pub fn current() -> MfaResult<Keys> {
    if let Some(newest) = server_keys().pop() {
        return Ok(newest);
    }
    if let Some(keys) = setting_key() {
        if !WARNED_SETTING_KEY.replace(true) {
            pgrx::log!("mfa: the key comes from the deprecated mfa.encryption_key setting; move it to mfa.encryption_key_file (README, Security model)");
        }
        return Ok(keys);
    }
    refuse_database_key_on_citus()?;
    let Some(oldest) = database_keys(None)?.into_iter().next() else {
        return Err(MfaError::new(
            ErrorType::EncryptionKeyMismatch,
            "No encryption key: neither mfa.encryption_key_file nor mfa.encryption_key_command is set, and the database key is missing.",
        ));
    };
    if !WARNED_DATABASE_KEY.replace(true) {
        pgrx::log!(
            "mfa: secrets are encrypted with the per-database key; production sets mfa.encryption_key_file"
        );
    }
    Ok(oldest)
}

/// On a Citus cluster the per-database key would be one key per node (each node's `CREATE
/// EXTENSION` makes its own, and a worker cannot decrypt what the coordinator wrote): refused.
pub fn refuse_database_key_on_citus() -> MfaResult<()> {
    if !cluster::on_citus() {
        return Ok(());
    }
    Err(MfaError::new(
        ErrorType::ClusterNeedsServerKey,
        "On a Citus cluster the per-database key is refused: every node must have the same master key.",
    )
    .with_hint("Set mfa.encryption_key_file (or mfa.encryption_key_command) to the same key on every node and reload (README, Scaling out)."))
}

/// Every known key, the encrypting one first.
pub fn known() -> MfaResult<Vec<KnownKey>> {
    let mut known: Vec<KnownKey> = server_keys()
        .into_iter()
        .rev()
        .map(|keys| KnownKey {
            keys,
            source: Source::Server,
        })
        .collect();
    if let Some(keys) = setting_key() {
        known.push(KnownKey {
            keys,
            source: Source::Setting,
        });
    }
    for keys in database_keys(None)? {
        known.push(KnownKey {
            keys,
            source: Source::Database,
        });
    }
    // A key listed in two places counts once, where it takes precedence.
    let mut seen = Vec::new();
    known.retain(|k| {
        let fingerprint = k.keys.fingerprint_hex();
        let first = !seen.contains(&fingerprint);
        seen.push(fingerprint);
        first
    });
    Ok(known)
}

/// The keys whose fingerprint is `key_id`, from wherever they are known.
pub fn by_fingerprint(key_id: &str) -> MfaResult<Keys> {
    if let Some(keys) = server_keys()
        .into_iter()
        .chain(setting_key())
        .find(|k| k.fingerprint_hex() == key_id)
    {
        return Ok(keys);
    }
    refuse_database_key_on_citus()?;
    match database_keys(Some(key_id))?.into_iter().next() {
        Some(keys) => Ok(keys),
        None => Err(MfaError::new(
            ErrorType::EncryptionKeyMismatch,
            format!("A stored secret was written with key {key_id}, which is not among the known keys."),
        )
        .with_hint("Put the key back into mfa.encryption_key_file (or the key command's output) and reload.")),
    }
}

/// Decrypts a ciphertext with whichever known key wrote it.
pub fn decrypt(ciphertext: &[u8], associated_data: &[u8]) -> MfaResult<Vec<u8>> {
    let key_id = crate::core::crypto::ciphertext_fingerprint(ciphertext).unwrap_or_default();
    by_fingerprint(&key_id)?.decrypt(ciphertext, associated_data)
}

/// Makes a new per-database master key and returns its fingerprint.
pub fn generate_database_key() -> MfaResult<String> {
    let master = crate::core::crypto::random_bytes::<KEY_LEN>();
    let keys = Keys::from_master(&master);
    spi::execute(
        "INSERT INTO mfa.database_keys (key_id, key) VALUES ($1, decode($2, 'hex'))
         ON CONFLICT DO NOTHING",
        &[
            keys.fingerprint_hex().as_str().into(),
            data_encoding::HEXLOWER.encode(&master).as_str().into(),
        ],
    )?;
    Ok(keys.fingerprint_hex())
}

/// Whether the server has a key of its own (a key file or command, or the legacy setting).
pub fn server_has_keys() -> bool {
    !server_keys().is_empty() || setting_key().is_some()
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
