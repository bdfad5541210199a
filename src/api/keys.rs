//! Key rotation for operators: `encryption_keys()` says what each key still covers,
//! `encryption_key_rotate(batch_size)` moves secrets to the encrypting key, a batch at a time.

use crate::error::SqlResult;
use crate::flow::{keys, rotation};
use crate::store::jsonb::Jsonb;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

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
    let rows = rotation::usage()?;
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

/// Re-encrypts up to `batch_size` TOTP secrets and queued SMS codes written under an older key
/// with the encrypting key. Run it until `remaining` is zero: each call is one short transaction
/// that skips the rows a login holds, so logins go on meanwhile. Keyed hashes cannot be
/// re-hashed (their codes are not kept): they are checked against their own key until the member
/// gets new codes.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn encryption_key_rotate(batch_size: default!(Option<i32>, 1000)) -> SqlResult<Jsonb> {
    Ok(Jsonb(rotation::rotate(batch_size)?))
}

/// Called by the extension script: a server with keys of its own gets no database key (it would
/// only travel in dumps); any other gets one, with a warning of what production should do.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn _initialize_database_key() -> crate::error::SqlResult<Option<String>> {
    Ok(keys::initialize_database_key()?)
}
