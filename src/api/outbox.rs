//! The SMS outbox for delivery workers: `sms_outbox_claim` (FOR UPDATE SKIP LOCKED, visibility
//! timeout, a receipt per message), `sms_outbox_complete` and `sms_outbox_fail` (back-off, then
//! dead). A message's code is stored encrypted beside a body that holds a placeholder; the claim
//! puts it into the text it hands out, and it is erased as soon as the message is sent, dead or
//! expired.

use crate::error::SqlResult;
use crate::flow::outbox::{claim, finish};
use crate::server::settings;
use crate::store::jsonb::Jsonb;
use crate::store::outbox::Report;
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

/// Hands up to `batch_size` deliverable messages (of one organization, if `for_organization` is
/// given: a worker with a tenant's own provider account) to this worker and hides them from
/// others for `visibility_timeout`; a message not completed or failed by then is handed out again.
// pgrx reads the signature as written: the named columns and the `Result` around them are spelled
// out (no type alias, `SqlResult` included).
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn sms_outbox_claim(
    batch_size: default!(Option<i32>, 10),
    visibility_timeout: default!(Option<Interval>, "'30 seconds'"),
    for_organization: default!(Option<&str>, "NULL"),
) -> Result<
    TableIterator<
        'static,
        (
            name!(id, i64),
            name!(organization_id, String),
            name!(phone_number, String),
            name!(country_code, String),
            name!(locale, String),
            name!(body, String),
            name!(attempts, i32),
            name!(created_at, TimestampWithTimeZone),
            name!(expires_at, TimestampWithTimeZone),
            name!(receipt, String),
        ),
    >,
    ErrorReport,
> {
    Ok(TableIterator::new(claim(
        batch_size,
        visibility_timeout,
        for_organization,
    )?))
}

/// Records that the provider accepted the message; its code is erased. Needs the receipt of the
/// claim, while it lasts; repeated with the same receipt, it gives the same answer.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn sms_outbox_complete(
    id: Option<i64>,
    receipt: Option<&str>,
    provider_message_id: default!(Option<&str>, "NULL"),
) -> SqlResult<Jsonb> {
    Ok(Jsonb(finish(
        id,
        receipt,
        Report::Sent {
            provider_message_id,
        },
    )?))
}

/// Records a failed delivery: with `retry`, the message comes back after an exponential back-off
/// (5 s, 10 s, 20 s … at most 5 minutes) until `mfa.outbox_max_attempts`; then, or without
/// `retry`, it is dead (kept, scrubbed, for operators). Needs the receipt of the claim, while it
/// lasts; the claim ends with it.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn sms_outbox_fail(
    id: Option<i64>,
    receipt: Option<&str>,
    error: default!(Option<&str>, "NULL"),
    retry: default!(Option<bool>, true),
) -> SqlResult<Jsonb> {
    Ok(Jsonb(finish(
        id,
        receipt,
        Report::Failed {
            error,
            retry: retry.unwrap_or(true),
            max_attempts: settings::OUTBOX_MAX_ATTEMPTS.get(),
        },
    )?))
}
