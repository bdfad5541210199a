//! The SMS outbox for delivery workers: which organizations a claim may read, the claim (the code
//! put into the text it hands out) and the finishing reports.

use crate::core::crypto;
use crate::core::sms::{outbox_associated_data, CODE_PLACEHOLDER};
use crate::error::{err, ErrorType, MfaResult};
use crate::flow::keys;
use crate::store::audit::Request;
use crate::store::outbox::{self, ClaimScope, Report};
use pgrx::datum::{Interval, TimestampWithTimeZone};
use serde_json::{json, Value};

/// A claimed message as `sms_outbox_claim` returns it: id, organization_id, phone_number,
/// country_code, locale, body (with the code), attempts, created_at, expires_at, receipt.
pub type ClaimedRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    i32,
    TimestampWithTimeZone,
    TimestampWithTimeZone,
    String,
);

/// The organizations one claim reads: all (`None`), or those of the caller's binding narrowed to
/// `for_organization`; a tenant's worker asking for another organization is refused.
pub fn claim_scope(for_organization: Option<&str>) -> MfaResult<Option<Vec<String>>> {
    match (outbox::worker_organizations()?, for_organization) {
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

pub fn claim(
    batch_size: Option<i32>,
    visibility_timeout: Option<Interval>,
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
    // One receipt per message that may be claimed; the table keeps only their hashes.
    let receipts: Vec<String> = (0..batch_size).map(|_| crypto::new_token()).collect();
    let receipt_hashes = receipts.iter().map(|r| crypto::token_hash(r)).collect();
    let claimed = outbox::claim(
        batch_size,
        visibility_timeout,
        receipt_hashes,
        match scope.as_deref() {
            None => ClaimScope::All,
            Some([only]) => ClaimScope::One(only),
            Some(several) => ClaimScope::Several(several),
        },
    )?;
    // The codes are decrypted once SPI is done.
    let mut rows = claimed
        .into_iter()
        .map(|message| {
            let mut body = message.body;
            // Messages queued by 0.1.0 have no ciphertext: their code is in the body already.
            if let Some(ciphertext) = message.code_ciphertext {
                let code = keys::decrypt(
                    &ciphertext,
                    &outbox_associated_data(
                        &message.organization_id,
                        &message.member_id,
                        &message.phone_number,
                    ),
                )?;
                body = body.replacen(CODE_PLACEHOLDER, &String::from_utf8_lossy(&code), 1);
            }
            Ok((
                message.message_id,
                message.organization_id,
                message.phone_number,
                message.country_code,
                message.locale,
                body,
                message.attempts,
                message.created_at,
                message.expires_at,
                receipts[message.receipt_index].clone(),
            ))
        })
        .collect::<MfaResult<Vec<ClaimedRow>>>()?;
    rows.sort_by_key(|r| r.0);
    Ok(rows)
}

/// Applies a worker's report on a message it holds. Only the worker holding the message's latest
/// receipt can finish it: a receipt is shown once, by the claim, so another tenant's worker (or
/// one whose claim expired and was handed out again) has nothing to present.
pub fn finish(message_id: Option<i64>, receipt: Option<&str>, report: Report) -> MfaResult<Value> {
    let request = Request::new();
    let (Some(message_id), Some(receipt)) = (message_id, receipt) else {
        return err(
            ErrorType::InvalidArgument,
            "The message id and its receipt must not be NULL.",
        );
    };
    let Some((status, attempts)) = outbox::finish(
        &request.id,
        outbox::worker_organizations()?,
        message_id,
        crypto::token_hash(receipt),
        report,
    )?
    else {
        return err(
            ErrorType::SmsMessageNotHeld,
            format!("Message {message_id} is not held with this receipt: unknown, claimed by another worker, finished, or its claim expired."),
        );
    };
    Ok(json!({ "id": message_id, "status": status, "attempts": attempts }))
}
