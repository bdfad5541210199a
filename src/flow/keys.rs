//! Which master keys are known and which one encrypts. In order of precedence:
//! - the server's keys (`mfa.encryption_key_file` / `mfa.encryption_key_command`, read by the
//!   postmaster into shared memory): the last one listed encrypts;
//! - the deprecated `mfa.encryption_key` setting (0.3.0 deployments), honoured but never shown;
//! - the per-database keys generated at `CREATE EXTENSION` (development; kept in
//!   `mfa.database_keys`, which no role but the extension's owner can read).
//!
//! Every known key decrypts (each ciphertext names its key by fingerprint) and verifies keyed
//! hashes, so a rotation never strands a secret.

use crate::core::crypto::{Keys, KEY_LEN};
use crate::error::{ErrorType, MfaError, MfaResult};
use crate::server::{key_ring, settings};
use crate::store::{self, cluster};
use std::cell::{Cell, RefCell};

thread_local! {
    static WARNED_DATABASE_KEY: Cell<bool> = const { Cell::new(false) };
    static WARNED_SETTING_KEY: Cell<bool> = const { Cell::new(false) };
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
    let (generation, masters) = key_ring::server_keys();
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
    settings::encryption_key_master().map(|master| Keys::from_master(&master))
}

fn database_keys(only: Option<&str>) -> MfaResult<Vec<Keys>> {
    Ok(store::keys::database_keys(only)?
        .into_iter()
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

/// The first answer `f` gives for a known key: the keys this server holds first (no query), the
/// database's keys only when none of those answers.
pub fn find_map<T>(f: impl Fn(&Keys) -> Option<T>) -> MfaResult<Option<T>> {
    if let Some(found) = server_keys()
        .iter()
        .rev()
        .chain(setting_key().as_ref())
        .find_map(&f)
    {
        return Ok(Some(found));
    }
    if cluster::on_citus() {
        return Ok(None);
    }
    Ok(database_keys(None)?.iter().find_map(f))
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
    store::keys::insert_database_key(&keys.fingerprint_hex(), &master)?;
    Ok(keys.fingerprint_hex())
}

/// Whether the server has a key of its own (a key file or command, or the legacy setting).
pub fn server_has_keys() -> bool {
    !server_keys().is_empty() || setting_key().is_some()
}

/// At `CREATE EXTENSION`: a server with keys of its own gets no database key (it would only travel
/// in dumps); any other gets one, with a warning of what production should do.
pub fn initialize_database_key() -> MfaResult<Option<String>> {
    if server_has_keys() {
        return Ok(None);
    }
    refuse_database_key_on_citus()?;
    let fingerprint = generate_database_key()?;
    pgrx::warning!(
        "mfa: generated a per-database encryption key ({fingerprint}), kept in the database and in its dumps; production sets mfa.encryption_key_file (see the README)"
    );
    Ok(Some(fingerprint))
}
