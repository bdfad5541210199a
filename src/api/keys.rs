//! Key rotation for operators: `encryption_keys()` says what each key still covers,
//! `encryption_key_rotate(batch_size)` moves secrets to the encrypting key, a batch at a time.

use crate::api::totp::secret_associated_data;
use crate::core::sms::outbox_associated_data;
use crate::error::{err, ErrorType, MfaResult, SqlResult};
use crate::store::audit::Request;
use crate::store::jsonb::Jsonb;
use crate::store::keyring;
use crate::store::keys::{self, Secrets, StaleSecret};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use serde_json::{json, Value};

/// Every known key (the encrypting one first) and every key the data names, with what each still
/// covers: when a key covers nothing any more, it can leave the key file.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn encryption_keys() -> Result<
    TableIterator<
        'static,
        (
            name!(key_id, Option<String>),
            name!(source, String),
            name!(encrypts, bool),
            name!(totp_secrets, i64),
            name!(queued_sms_codes, i64),
            name!(sms_code_hashes, i64),
            name!(recovery_code_hashes, i64),
        ),
    >,
    ErrorReport,
> {
    let known: Vec<(String, &'static str)> = keyring::known()?
        .into_iter()
        .map(|k| (k.keys.fingerprint_hex(), k.source.as_str()))
        .collect();
    let rows = keys::usage(&known)?;
    Ok(TableIterator::new(rows.into_iter().map(|u| {
        (
            u.key_id,
            u.source,
            u.encrypts,
            u.totp_secrets,
            u.queued_sms_codes,
            u.sms_code_hashes,
            u.recovery_code_hashes,
        )
    })))
}

/// The associated data a secret of `kind` was encrypted with.
fn associated_data(kind: Secrets, secret: &StaleSecret) -> Vec<u8> {
    match kind {
        Secrets::TotpSecrets => {
            secret_associated_data(&secret.organization_id, &secret.member_id, &secret.row_id)
        }
        Secrets::QueuedSmsCodes => outbox_associated_data(
            &secret.organization_id,
            &secret.member_id,
            secret.phone_number.as_deref().unwrap_or_default(),
        ),
    }
}

fn rotate_batch(
    kind: Secrets,
    current: &crate::core::crypto::Keys,
    limit: i64,
) -> MfaResult<usize> {
    let stale = keys::lock_stale(kind, &current.fingerprint_hex(), limit)?;
    let ciphertexts = stale
        .iter()
        .map(|secret| {
            let data = associated_data(kind, secret);
            Ok(current.encrypt(&keyring::decrypt(&secret.ciphertext, &data)?, &data))
        })
        .collect::<MfaResult<Vec<_>>>()?;
    keys::write_reencrypted(kind, &stale, ciphertexts)
}

fn rotate(batch_size: Option<i32>) -> MfaResult<Value> {
    let Some(batch_size) = batch_size.filter(|b| (1..=100_000).contains(b)) else {
        return err(
            ErrorType::InvalidArgument,
            "batch_size must be between 1 and 100000.",
        );
    };
    let request = Request::new();
    let current = keyring::current()?;
    let key_id = current.fingerprint_hex();
    let totp = rotate_batch(Secrets::TotpSecrets, &current, batch_size as i64)?;
    let sms = rotate_batch(
        Secrets::QueuedSmsCodes,
        &current,
        (batch_size as usize - totp) as i64,
    )?;
    let remaining = json!({
        "totp_secrets": keys::remaining(Secrets::TotpSecrets, &key_id)?,
        "queued_sms_codes": keys::remaining(Secrets::QueuedSmsCodes, &key_id)?,
    });
    let answer = json!({
        "key_id": key_id,
        "reencrypted": { "totp_secrets": totp, "queued_sms_codes": sms },
        "remaining": remaining,
    });
    if totp + sms > 0 {
        request.audit("", None, "encryption_key.rotated", answer.clone())?;
    }
    Ok(answer)
}

/// Re-encrypts up to `batch_size` TOTP secrets and queued SMS codes written under an older key
/// with the encrypting key. Run it until `remaining` is zero: each call is one short transaction
/// that skips the rows a login holds, so logins go on meanwhile. Keyed hashes cannot be
/// re-hashed (their codes are not kept): they are checked against their own key until the member
/// gets new codes.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn encryption_key_rotate(batch_size: default!(Option<i32>, 1000)) -> SqlResult<Jsonb> {
    Ok(Jsonb(rotate(batch_size)?))
}

/// Called by the extension script: a server with keys of its own gets no database key (it would
/// only travel in dumps); any other gets one, with a warning of what production should do.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn _initialize_database_key() -> crate::error::SqlResult<Option<String>> {
    if keyring::server_has_keys() {
        return Ok(None);
    }
    keyring::refuse_database_key_on_citus()?;
    let fingerprint = keyring::generate_database_key()?;
    pgrx::warning!(
        "mfa: generated a per-database encryption key ({fingerprint}), kept in the database and in its dumps; production sets mfa.encryption_key_file (see the README)"
    );
    Ok(Some(fingerprint))
}
