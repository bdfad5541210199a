//! The SMS outbox for delivery workers: `sms_outbox_claim` (FOR UPDATE SKIP LOCKED, visibility
//! timeout), `sms_outbox_complete` and `sms_outbox_fail` (back-off, then dead). A message's code
//! is stored encrypted beside a body that holds a placeholder; the claim puts it into the text it
//! hands out, and it is erased as soon as the message is sent, dead or expired.

use crate::db::{self, Request};
use crate::errors::{err, ErrorType, MfaResult, OrRaise};
use crate::jsonb::Jsonb;
use crate::keyring;
use crate::settings;
use crate::sms_otp::{outbox_associated_data, CODE_PLACEHOLDER};
use pgrx::prelude::*;
use serde_json::{json, Value};

/// Erases a message's code: its ciphertext, and the code in the body of a message queued by 0.1.0
/// (which kept it in clear; the only six-digit run of every text).
const ERASE_CODE: &str =
    "code_ciphertext = NULL, body = regexp_replace(body, '[0-9]{6}', '******', 'g')";
/// What `finish` reads back from a finished message.
const FINISHED: &str = "RETURNING organization_id, member_id, status, attempts";

/// id, organization_id, phone_number, country_code, locale, body, attempts, created_at, expires_at.
type ClaimedRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    i32,
    pgrx::datum::TimestampWithTimeZone,
    pgrx::datum::TimestampWithTimeZone,
);

/// A claimed row before its code is decrypted: the message, its member, its code's ciphertext.
type ClaimedCiphertext = (ClaimedRow, String, Option<Vec<u8>>);

/// Hands out up to $1 deliverable messages, hidden for $2, oldest first; `$only` narrows them.
macro_rules! claim_statement {
    ($only:literal) => {
        concat!(
            "UPDATE mfa.sms_outbox o
                SET visible_at = statement_timestamp() + $2::interval, attempts = o.attempts + 1
               FROM (SELECT organization_id, message_id FROM mfa.sms_outbox
                      WHERE status = 'pending' AND visible_at <= statement_timestamp() AND expires_at > statement_timestamp() ",
            $only,
            " ORDER BY visible_at LIMIT $1 FOR UPDATE SKIP LOCKED) picked
              WHERE o.organization_id = picked.organization_id AND o.message_id = picked.message_id
          RETURNING o.message_id, o.organization_id, o.phone_number, o.country_code, o.locale, o.body,
                    o.attempts, o.created_at, o.expires_at, o.member_id, o.code_ciphertext"
        )
    };
}
/// Any organization's messages ($3 is NULL).
const CLAIM: &str = claim_statement!("");
/// Organization $3's messages only, through sms_outbox_organization_deliverable. (One statement
/// for both, with `$3 IS NULL OR …`, got one plan, which walked every organization's pending
/// messages to find one tenant's.)
const CLAIM_FOR_ORGANIZATION: &str = claim_statement!("AND organization_id = $3");

fn claim(
    batch_size: Option<i32>,
    visibility_timeout: Option<pgrx::datum::Interval>,
    for_organization: Option<&str>,
) -> MfaResult<Vec<ClaimedRow>> {
    let Some(batch_size) = batch_size.filter(|b| (1..=1000).contains(b)) else {
        return err(
            ErrorType::InvalidArgument,
            "batch_size must be between 1 and 1000.",
        );
    };
    let Some(visibility_timeout) = visibility_timeout else {
        return err(
            ErrorType::InvalidArgument,
            "visibility_timeout must not be NULL.",
        );
    };
    // Messages whose code expired are never handed out; they are retired (and erased) here.
    db::execute(
        &format!(
            "UPDATE mfa.sms_outbox o SET status = 'expired', {ERASE_CODE}
               FROM (SELECT organization_id, message_id FROM mfa.sms_outbox
                      WHERE status = 'pending' AND expires_at <= statement_timestamp()
                      ORDER BY expires_at LIMIT 1000 FOR UPDATE SKIP LOCKED) stale
              WHERE o.organization_id = stale.organization_id AND o.message_id = stale.message_id"
        ),
        &[],
    )?;
    // Typed columns, read straight from the tuples; the codes are decrypted once SPI is done.
    let claimed = Spi::connect_mut(
        |client| -> Result<Vec<ClaimedCiphertext>, pgrx::spi::Error> {
            let table = db::run_kept(
                client,
                if for_organization.is_some() {
                    CLAIM_FOR_ORGANIZATION
                } else {
                    CLAIM
                },
                &[
                    (batch_size as i64).into(),
                    visibility_timeout.into(),
                    for_organization.into(),
                ],
            )?;
            let mut rows = Vec::with_capacity(table.len());
            for row in table {
                rows.push((
                    (
                        row.get::<i64>(1)?.unwrap_or_default(),
                        row.get::<String>(2)?.unwrap_or_default(),
                        row.get::<String>(3)?.unwrap_or_default(),
                        row.get::<String>(4)?.unwrap_or_default(),
                        row.get::<String>(5)?.unwrap_or_default(),
                        row.get::<String>(6)?.unwrap_or_default(),
                        row.get::<i32>(7)?.unwrap_or_default(),
                        row.get::<pgrx::datum::TimestampWithTimeZone>(8)?
                            .expect("NOT NULL"),
                        row.get::<pgrx::datum::TimestampWithTimeZone>(9)?
                            .expect("NOT NULL"),
                    ),
                    row.get::<String>(10)?.unwrap_or_default(),
                    row.get::<Vec<u8>>(11)?,
                ));
            }
            Ok(rows)
        },
    )?;
    let mut rows = claimed
        .into_iter()
        .map(|(mut message, member_id, code_ciphertext)| {
            // Messages queued by 0.1.0 have no ciphertext: their code is in the body already.
            if let Some(ciphertext) = code_ciphertext {
                let code = keyring::decrypt(
                    &ciphertext,
                    &outbox_associated_data(&message.1, &member_id, &message.2),
                )?;
                message.5 =
                    message
                        .5
                        .replacen(CODE_PLACEHOLDER, &String::from_utf8_lossy(&code), 1);
            }
            Ok(message)
        })
        .collect::<MfaResult<Vec<ClaimedRow>>>()?;
    rows.sort_by_key(|r| r.0);
    Ok(rows)
}

/// Hands up to `batch_size` deliverable messages (of one organization, if `for_organization` is
/// given: a worker with a tenant's own provider account) to this worker and hides them from
/// others for `visibility_timeout`; a message not completed or failed by then is handed out again.
// pgrx needs the named columns spelled out in the signature, so no type alias can shorten it.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn sms_outbox_claim(
    batch_size: default!(Option<i32>, 10),
    visibility_timeout: default!(Option<pgrx::datum::Interval>, "'30 seconds'"),
    for_organization: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(id, i64),
        name!(organization_id, String),
        name!(phone_number, String),
        name!(country_code, String),
        name!(locale, String),
        name!(body, String),
        name!(attempts, i32),
        name!(created_at, pgrx::datum::TimestampWithTimeZone),
        name!(expires_at, pgrx::datum::TimestampWithTimeZone),
    ),
> {
    TableIterator::new(claim(batch_size, visibility_timeout, for_organization).or_raise())
}

/// Runs `sql` (an UPDATE of message `$1` returning its organization, member, status and attempts)
/// and audits it in the same statement.
fn finish(
    message_id: Option<i64>,
    sql: &str,
    mut args: Vec<pgrx::datum::DatumWithOid>,
    event: &str,
) -> MfaResult<Value> {
    let request = Request::new();
    let Some(message_id) = message_id else {
        return err(
            ErrorType::InvalidArgument,
            "The message id must not be NULL.",
        );
    };
    let n = args.len();
    let statement = format!(
        "WITH done AS ({sql}),
         audited AS (
             INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
             SELECT organization_id, ${}::uuid, ${}, member_id,
                    jsonb_build_object('message_id', $1::bigint, 'status', status, 'attempts', attempts)
               FROM done)
         SELECT status, attempts FROM done",
        n + 1,
        n + 2
    );
    args.extend([request.id.as_str().into(), event.into()]);
    let Some((status, attempts)) = db::typed_row(&statement, &args, |row| {
        Ok((row.get::<String>(1)?, row.get::<i32>(2)?))
    })?
    else {
        return err(
            ErrorType::SmsMessageNotFound,
            format!("No outbox message {message_id} to finish."),
        );
    };
    Ok(json!({ "id": message_id, "status": status, "attempts": attempts }))
}

/// Records that the provider accepted the message; its code is erased.
/// Idempotent: a worker that repeats its acknowledgement gets the same answer.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn sms_outbox_complete(
    id: Option<i64>,
    provider_message_id: default!(Option<&str>, "NULL"),
) -> Jsonb {
    let sql = format!(
        "UPDATE mfa.sms_outbox SET status = 'sent', sent_at = coalesce(sent_at, now()),
                provider_message_id = coalesce(provider_message_id, left($2, 200)),
                {ERASE_CODE}, last_error = NULL
          WHERE message_id = $1
      {FINISHED}"
    );
    Jsonb(
        finish(
            id,
            &sql,
            vec![id.into(), provider_message_id.into()],
            "sms_outbox.completed",
        )
        .or_raise(),
    )
}

/// Records a failed delivery: with `retry`, the message comes back after an exponential back-off
/// (5 s, 10 s, 20 s … at most 5 minutes) until `mfa.outbox_max_attempts`; then, or without
/// `retry`, it is dead (kept, scrubbed, for operators).
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn sms_outbox_fail(
    id: Option<i64>,
    error: default!(Option<&str>, "NULL"),
    retry: default!(Option<bool>, true),
) -> Jsonb {
    let sql = format!(
        "UPDATE mfa.sms_outbox SET
                status = CASE WHEN $3 AND attempts < $4 THEN 'pending' ELSE 'dead' END,
                code_ciphertext = CASE WHEN $3 AND attempts < $4 THEN code_ciphertext END,
                body = CASE WHEN $3 AND attempts < $4 THEN body
                            ELSE regexp_replace(body, '[0-9]{{6}}', '******', 'g') END,
                visible_at = statement_timestamp() + least(interval '5 minutes',
                                           interval '5 seconds' * power(2, greatest(attempts - 1, 0))),
                last_error = left($2, 500)
          WHERE message_id = $1 AND status = 'pending'
      {FINISHED}"
    );
    Jsonb(
        finish(
            id,
            &sql,
            vec![
                id.into(),
                error.into(),
                retry.unwrap_or(true).into(),
                settings::OUTBOX_MAX_ATTEMPTS.get().into(),
            ],
            "sms_outbox.failed",
        )
        .or_raise(),
    )
}
