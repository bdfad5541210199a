//! Which master key is in force: the superuser-only `mfa.encryption_key` setting when it is set,
//! otherwise the per-database key generated at `CREATE EXTENSION` (kept in `mfa.database_keys`,
//! which no role but the extension's owner can read).

use crate::crypto::{parse_master_key, Keys, KEY_LEN};
use crate::db;
use crate::errors::{err, ErrorType, MfaResult};
use crate::settings;
use pgrx::prelude::*;
use serde::Deserialize;
use std::cell::Cell;

thread_local! {
    static WARNED_DATABASE_KEY: Cell<bool> = const { Cell::new(false) };
}

#[derive(Deserialize)]
struct StoredKey {
    key_hex: String,
}

/// The keys of the master key in force.
pub fn current() -> MfaResult<Keys> {
    if let Some(text) = settings::encryption_key_text() {
        return Ok(Keys::from_master(&parse_master_key(&text)?));
    }
    let stored: Option<StoredKey> = db::row(
        "SELECT jsonb_build_object('key_hex', encode(key, 'hex'))
           FROM mfa.database_keys ORDER BY created_at, key_id LIMIT 1",
        &[],
    )?;
    let Some(stored) = stored else {
        return err(
            ErrorType::EncryptionKeyMismatch,
            "No encryption key: mfa.encryption_key is not set and the database key is missing.",
        );
    };
    if !WARNED_DATABASE_KEY.replace(true) {
        pgrx::log!(
            "mfa: secrets are encrypted with the per-database key; set mfa.encryption_key in production"
        );
    }
    Ok(Keys::from_master(&parse_master_key(&stored.key_hex)?))
}

/// The keys whose fingerprint is `key_id`: the configured key or any per-database key, so that
/// secrets written before `mfa.encryption_key` was set keep working after it is.
pub fn by_fingerprint(key_id: &str) -> MfaResult<Keys> {
    if let Some(text) = settings::encryption_key_text() {
        let keys = Keys::from_master(&parse_master_key(&text)?);
        if keys.fingerprint_hex() == key_id {
            return Ok(keys);
        }
    }
    let stored: Option<StoredKey> = db::row(
        "SELECT jsonb_build_object('key_hex', encode(key, 'hex')) FROM mfa.database_keys WHERE key_id = $1",
        &[key_id.into()],
    )?;
    match stored {
        Some(stored) => Ok(Keys::from_master(&parse_master_key(&stored.key_hex)?)),
        None => Err(crate::errors::MfaError::new(
            ErrorType::EncryptionKeyMismatch,
            format!("A stored secret was written with key {key_id}, which is neither mfa.encryption_key nor a database key."),
        )
        .with_hint("Set mfa.encryption_key back to the key the secrets were created with.")),
    }
}

/// Decrypts a ciphertext with whichever known key wrote it.
pub fn decrypt(ciphertext: &[u8], associated_data: &[u8]) -> MfaResult<Vec<u8>> {
    let key_id = crate::crypto::ciphertext_fingerprint(ciphertext).unwrap_or_default();
    by_fingerprint(&key_id)?.decrypt(ciphertext, associated_data)
}

/// Makes a new per-database master key and returns its fingerprint.
pub fn generate_database_key() -> MfaResult<String> {
    let master = crate::crypto::random_bytes::<KEY_LEN>();
    let keys = Keys::from_master(&master);
    db::execute(
        "INSERT INTO mfa.database_keys (key_id, key) VALUES ($1, decode($2, 'hex'))
         ON CONFLICT DO NOTHING",
        &[
            keys.fingerprint_hex().as_str().into(),
            data_encoding::HEXLOWER.encode(&master).as_str().into(),
        ],
    )?;
    Ok(keys.fingerprint_hex())
}

/// Called by the extension script: generates the database key and says, once, what production
/// should do instead.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn _initialize_database_key() -> String {
    use crate::errors::OrRaise;
    let fingerprint = generate_database_key().or_raise();
    if settings::encryption_key_text().is_none() {
        pgrx::warning!(
            "mfa: generated a per-database encryption key ({fingerprint}); production should set mfa.encryption_key (superuser only) instead"
        );
    }
    fingerprint
}
