//! Key rotation: moves a batch of secrets to the encrypting key at a time.

use crate::core::sms::outbox_associated_data;
use crate::error::{err, ErrorType, MfaResult};
use crate::flow::keys;
use crate::flow::totp::secret_associated_data;
use crate::store::audit::Request;
use crate::store::keys::{self as stored, Secrets, StaleSecret};
use serde_json::{json, Value};

/// The associated data a secret of `kind` was encrypted with.
pub fn associated_data(kind: Secrets, secret: &StaleSecret) -> Vec<u8> {
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

pub fn rotate_batch(
    kind: Secrets,
    current: &crate::core::crypto::Keys,
    limit: i64,
) -> MfaResult<usize> {
    let stale = stored::lock_stale(kind, &current.fingerprint_hex(), limit)?;
    let ciphertexts = stale
        .iter()
        .map(|secret| {
            let data = associated_data(kind, secret);
            Ok(current.encrypt(&keys::decrypt(&secret.ciphertext, &data)?, &data))
        })
        .collect::<MfaResult<Vec<_>>>()?;
    stored::write_reencrypted(kind, &stale, ciphertexts)
}

pub fn rotate(batch_size: Option<i32>) -> MfaResult<Value> {
    let Some(batch_size) = batch_size.filter(|b| (1..=100_000).contains(b)) else {
        return err(
            ErrorType::InvalidArgument,
            "batch_size must be between 1 and 100000.",
        );
    };
    let request = Request::new();
    let current = keys::current()?;
    let key_id = current.fingerprint_hex();
    let totp = rotate_batch(Secrets::TotpSecrets, &current, batch_size as i64)?;
    let sms = rotate_batch(
        Secrets::QueuedSmsCodes,
        &current,
        (batch_size as usize - totp) as i64,
    )?;
    let remaining = json!({
        "totp_secrets": stored::remaining(Secrets::TotpSecrets, &key_id)?,
        "queued_sms_codes": stored::remaining(Secrets::QueuedSmsCodes, &key_id)?,
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

/// What each known key (the encrypting one first) and each key the data names still covers.
pub fn usage() -> MfaResult<Vec<stored::KeyUsage>> {
    let known: Vec<(String, &'static str)> = keys::known()?
        .into_iter()
        .map(|k| (k.keys.fingerprint_hex(), k.source.as_str()))
        .collect();
    stored::usage(&known)
}
