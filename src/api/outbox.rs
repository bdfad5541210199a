//! The SMS outbox for delivery workers: `sms_outbox_claim` (FOR UPDATE SKIP LOCKED, visibility
//! timeout), `sms_outbox_complete` and `sms_outbox_fail` (back-off, then dead). A message's code
//! is stored encrypted beside a body that holds a placeholder; the claim puts it into the text it
//! hands out, and it is erased as soon as the message is sent, dead or expired.

use crate::core::crypto;
use crate::store::spi::{self, Request};
use crate::error::{err, ErrorType, MfaResult, OrRaise};
use crate::store::jsonb::Jsonb;
use crate::store::keyring;
use crate::settings;
use crate::core::sms::{outbox_associated_data, CODE_PLACEHOLDER};
use pgrx::prelude::*;
use serde_json::{json, Value};

/// Erases a message's code: its ciphertext, and the code in the body of a message queued by 0.1.0
/// (which kept it in clear; the only six-digit run of every text).
const ERASE_CODE: &str =
    "code_ciphertext = NULL, body = regexp_replace(body, '[0-9]{6}', '******', 'g')";
/// What `finish` reads back from a finished message.
const FINISHED: &str = "RETURNING organization_id, member_id, status, attempts";

/// id, organization_id, phone_number, country_code, locale, body, attempts, created_at, expires_at,
/// receipt.
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
    String,
);

/// A claimed row before its code is decrypted: the message, its member, its code's ciphertext.
type ClaimedCiphertext = (ClaimedRow, String, Option<Vec<u8>>);

/// Hands out up to $1 deliverable messages, hidden for $2, oldest first, each with the receipt
/// whose hash is the matching element of $3 (by position); `$only` narrows them.
macro_rules! claim_statement {
    ($only:literal) => {
        concat!(
            "UPDATE mfa.sms_outbox o
                SET visible_at = statement_timestamp() + $2::interval, attempts = o.attempts + 1,
                    receipt_hash = r.receipt_hash, claimed_by = session_user
               FROM (SELECT organization_id, message_id, row_number() OVER () AS position
                       FROM (SELECT organization_id, message_id FROM mfa.sms_outbox
                              WHERE status = 'pending' AND visible_at <= statement_timestamp() AND expires_at > statement_timestamp() ",
            $only,
            "                 ORDER BY visible_at LIMIT $1 FOR UPDATE SKIP LOCKED) locked) picked
               JOIN unnest($3::bytea[]) WITH ORDINALITY AS r(receipt_hash, position) USING (position)
              WHERE o.organization_id = picked.organization_id AND o.message_id = picked.message_id
          RETURNING o.message_id, o.organization_id, o.phone_number, o.country_code, o.locale, o.body,
                    o.attempts, o.created_at, o.expires_at, picked.position, o.member_id, o.code_ciphertext"
        )
    };
}
/// Any organization's messages ($4 is NULL).
const CLAIM: &str = claim_statement!("");
/// Organization $4's messages only, through sms_outbox_organization_deliverable, in its order.
/// (One statement for all, with `$4 IS NULL OR …`, got one plan, which walked every
/// organization's pending messages to find one tenant's; `= ANY` does too, so it serves only a
/// worker bound to several organizations.)
const CLAIM_FOR_ORGANIZATION: &str = claim_statement!("AND organization_id = $4::text");
/// The messages of organizations $4 only.
const CLAIM_FOR_ORGANIZATIONS: &str = claim_statement!("AND organization_id = ANY($4::text[])");

/// The organizations whose messages the calling worker may handle: `None` for a worker bound to
/// none (it serves every organization). A worker is bound by `sms_worker_grant` to its login role
/// or to a role that it (or the role it switched to) is a member of, so switching to an unbound
/// role does not escape the binding.
fn worker_organizations() -> MfaResult<Option<Vec<String>>> {
    let bound = spi::typed_row(
        "SELECT array_agg(DISTINCT g.organization_id ORDER BY g.organization_id)
           FROM mfa.sms_worker_grants g JOIN pg_catalog.pg_roles r ON r.rolname = g.role_name
          WHERE g.role_name IN (session_user, $1::name)
             OR EXISTS (SELECT FROM pg_catalog.pg_roles caller
                         WHERE caller.rolname IN (session_user, $1::name) AND NOT caller.rolsuper
                           AND pg_catalog.pg_has_role(caller.oid, r.oid, 'MEMBER'))",
        &[spi::outer_user().as_str().into()],
        |row| row.get::<Vec<String>>(1),
    )?;
    Ok(bound.flatten())
}

/// The organizations one claim reads: all (`None`), or those of the caller's binding narrowed to
/// `for_organization`; a tenant's worker asking for another organization is refused.
fn claim_scope(for_organization: Option<&str>) -> MfaResult<Option<Vec<String>>> {
    match (worker_organizations()?, for_organization) {
        (None, None) => Ok(None),
        (None, Some(only)) => Ok(Some(vec![only.to_string()])),
        (Some(bound), None) => Ok(Some(bound)),
        (Some(bound), Some(only)) if bound.iter().any(|b| b == only) => {
            Ok(Some(vec![only.to_string()]))
        }
        (Some(_), Some(only)) => err(
            ErrorType::SmsWorkerOrganizationNotGranted,
            format!("This worker role may not handle the messages of organization {only}."),
        ),
    }
}

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
    let scope = claim_scope(for_organization)?;
    // Messages whose code expired are never handed out; they are retired (and erased) here.
    spi::execute(
        &format!(
            "UPDATE mfa.sms_outbox o SET status = 'expired', {ERASE_CODE}
               FROM (SELECT organization_id, message_id FROM mfa.sms_outbox
                      WHERE status = 'pending' AND expires_at <= statement_timestamp()
                      ORDER BY expires_at LIMIT 1000 FOR UPDATE SKIP LOCKED) stale
              WHERE o.organization_id = stale.organization_id AND o.message_id = stale.message_id"
        ),
        &[],
    )?;
    // One receipt per message that may be claimed; the table keeps only their hashes.
    let receipts: Vec<String> = (0..batch_size).map(|_| crypto::new_token()).collect();
    let receipt_hashes: Vec<Vec<u8>> = receipts.iter().map(|r| crypto::token_hash(r)).collect();
    // Typed columns, read straight from the tuples; the codes are decrypted once SPI is done.
    let claimed = Spi::connect_mut(
        |client| -> Result<Vec<ClaimedCiphertext>, pgrx::spi::Error> {
            let mut args: Vec<pgrx::datum::DatumWithOid> = vec![
                (batch_size as i64).into(),
                visibility_timeout.into(),
                receipt_hashes.clone().into(),
            ];
            let statement = match scope.as_deref() {
                None => CLAIM,
                Some([only]) => {
                    args.push(only.as_str().into());
                    CLAIM_FOR_ORGANIZATION
                }
                Some(several) => {
                    args.push(several.to_vec().into());
                    CLAIM_FOR_ORGANIZATIONS
                }
            };
            let table = spi::run_kept(client, statement, &args)?;
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
                        receipts[row.get::<i64>(10)?.unwrap_or_default() as usize - 1].clone(),
                    ),
                    row.get::<String>(11)?.unwrap_or_default(),
                    row.get::<Vec<u8>>(12)?,
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
        name!(receipt, String),
    ),
> {
    TableIterator::new(claim(batch_size, visibility_timeout, for_organization).or_raise())
}

/// Which message a finishing call acts on: message `$1`, held with the receipt whose hash is `$2`,
/// of an organization in `$3` (NULL: the worker serves every organization).
const HELD: &str =
    "message_id = $1 AND receipt_hash = $2 AND ($3::text[] IS NULL OR organization_id = ANY($3))";

/// Runs `sql` (an UPDATE of the message `HELD` names, returning its organization, member, status
/// and attempts) and audits it in the same statement. Only the worker holding the message's
/// latest receipt can finish it: a receipt is shown once, by the claim, so another tenant's worker
/// (or one whose claim expired and was handed out again) has nothing to present.
fn finish(
    message_id: Option<i64>,
    receipt: Option<&str>,
    sql: &str,
    mut args: Vec<pgrx::datum::DatumWithOid>,
    event: &str,
) -> MfaResult<Value> {
    let request = Request::new();
    let (Some(message_id), Some(receipt)) = (message_id, receipt) else {
        return err(
            ErrorType::InvalidArgument,
            "The message id and its receipt must not be NULL.",
        );
    };
    let scope = worker_organizations()?;
    let mut all_args: Vec<pgrx::datum::DatumWithOid> = vec![
        message_id.into(),
        crypto::token_hash(receipt).into(),
        scope.into(),
    ];
    all_args.append(&mut args);
    let n = all_args.len();
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
    all_args.extend([request.id.as_str().into(), event.into()]);
    let Some((status, attempts)) = spi::typed_row(&statement, &all_args, |row| {
        Ok((row.get::<String>(1)?, row.get::<i32>(2)?))
    })?
    else {
        return err(
            ErrorType::SmsMessageNotHeld,
            format!("Message {message_id} is not held with this receipt: unknown, claimed by another worker, finished, or its claim expired."),
        );
    };
    Ok(json!({ "id": message_id, "status": status, "attempts": attempts }))
}

/// Records that the provider accepted the message; its code is erased. Needs the receipt of the
/// claim, while it lasts; repeated with the same receipt, it gives the same answer.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn sms_outbox_complete(
    id: Option<i64>,
    receipt: Option<&str>,
    provider_message_id: default!(Option<&str>, "NULL"),
) -> Jsonb {
    let sql = format!(
        "UPDATE mfa.sms_outbox SET status = 'sent', sent_at = coalesce(sent_at, now()),
                provider_message_id = coalesce(provider_message_id, left($4, 200)),
                {ERASE_CODE}, last_error = NULL
          WHERE {HELD}
            AND (status = 'sent' OR (status = 'pending' AND visible_at > statement_timestamp()))
      {FINISHED}"
    );
    Jsonb(
        finish(
            id,
            receipt,
            &sql,
            vec![provider_message_id.into()],
            "sms_outbox.completed",
        )
        .or_raise(),
    )
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
) -> Jsonb {
    let sql = format!(
        "UPDATE mfa.sms_outbox SET
                status = CASE WHEN $5 AND attempts < $6 THEN 'pending' ELSE 'dead' END,
                code_ciphertext = CASE WHEN $5 AND attempts < $6 THEN code_ciphertext END,
                body = CASE WHEN $5 AND attempts < $6 THEN body
                            ELSE regexp_replace(body, '[0-9]{{6}}', '******', 'g') END,
                visible_at = statement_timestamp() + least(interval '5 minutes',
                                           interval '5 seconds' * power(2, greatest(attempts - 1, 0))),
                last_error = left($4, 500), receipt_hash = NULL
          WHERE {HELD} AND status = 'pending' AND visible_at > statement_timestamp()
      {FINISHED}"
    );
    Jsonb(
        finish(
            id,
            receipt,
            &sql,
            vec![
                error.into(),
                retry.unwrap_or(true).into(),
                settings::OUTBOX_MAX_ATTEMPTS.get().into(),
            ],
            "sms_outbox.failed",
        )
        .or_raise(),
    )
}
