//! A migration's bulk import: many members of one organization, each with their phone (verified
//! or not) and authenticator app, in one call. Each member is imported in a subtransaction of
//! its own: one that fails is reported in its row and leaves nothing behind, the others stay.

use crate::core::policy::{validate_id, IdKind};
use crate::error::{err, ErrorType, MfaError, MfaResult};
use crate::flow::administration::{self, MemberSettings};
use crate::flow::totp;
use crate::store::spi;
use serde_json::{json, Map, Value};

/// The most members one call imports.
pub const MAX_MEMBERS: usize = 10_000;

const KEYS: [&str; 8] = [
    "member_id",
    "mfa_phone_number",
    "mfa_phone_number_verified",
    "mfa_enrolled",
    "default_mfa_method",
    "is_breakglass",
    "totp_secret",
    "recovery_codes",
];

fn malformed(message: impl Into<String>) -> MfaError {
    MfaError::new(ErrorType::InvalidArgument, message)
}

fn text<'a>(row: &'a Map<String, Value>, key: &str) -> MfaResult<Option<&'a str>> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(malformed(format!("{key} must be a string."))),
    }
}

fn flag(row: &Map<String, Value>, key: &str) -> MfaResult<Option<bool>> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(malformed(format!("{key} must be true or false."))),
    }
}

/// One member: `member_upsert`'s settings, then `totp_migrate` when a secret is given.
fn import_one(organization_id: &str, row: &Value) -> MfaResult<Value> {
    let Some(row) = row.as_object() else {
        return Err(malformed("Each member is a JSON object."));
    };
    if let Some(unknown) = row.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(malformed(format!(
            "Unknown key {unknown:?}; the keys are {}.",
            KEYS.join(", ")
        )));
    }
    let member_id = text(row, "member_id")?;
    let codes = match row.get("recovery_codes") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|c| c.as_str().map(str::to_string))
                .collect::<Vec<_>>(),
        ),
        Some(_) => return Err(malformed("recovery_codes must be an array of strings.")),
    };
    let settings = MemberSettings {
        mfa_phone_number: text(row, "mfa_phone_number")?,
        mfa_enrolled: flag(row, "mfa_enrolled")?,
        default_mfa_method: None,
        is_breakglass: flag(row, "is_breakglass")?,
        replace_mfa_phone_number: false,
        mfa_phone_number_verified: flag(row, "mfa_phone_number_verified")?,
    };
    let secret = text(row, "totp_secret")?;
    spi::in_subtransaction(|| {
        administration::member_upsert(Some(organization_id), member_id, settings)?;
        let mut answer = json!({ "member_id": member_id, "status_code": 200 });
        if secret.is_some() {
            let migrated = totp::totp_migrate(Some(organization_id), member_id, secret, codes)?;
            answer["totp_registration_id"] = migrated["totp_registration_id"].clone();
            if let Some(minted) = migrated.get("recovery_codes") {
                answer["recovery_codes"] = minted.clone();
            }
        }
        // The default method last: it names a factor this row may have just imported.
        if let Some(method) = text(row, "default_mfa_method")? {
            administration::member_upsert(
                Some(organization_id),
                member_id,
                MemberSettings {
                    mfa_phone_number: None,
                    mfa_enrolled: None,
                    default_mfa_method: Some(method),
                    is_breakglass: None,
                    replace_mfa_phone_number: false,
                    mfa_phone_number_verified: None,
                },
            )?;
        }
        Ok(answer)
    })
}

/// The row of a member that failed: its error, as the single call would have raised it.
fn failure(row: &Value, error: &MfaError) -> Value {
    let (error_type, message) = match error.error_type {
        // An ERROR raised inside: its message starts with the error_type when it is one of ours.
        ErrorType::InternalServerError => match error.message.split_once(": ") {
            Some((kind, rest)) if kind.chars().all(|c| c.is_ascii_lowercase() || c == '_') => {
                (kind.to_string(), rest.to_string())
            }
            _ => ("internal_server_error".to_string(), error.message.clone()),
        },
        kind => (kind.as_str().to_string(), error.message.clone()),
    };
    json!({
        "member_id": row.get("member_id").cloned().unwrap_or(Value::Null),
        "status_code": error.error_type.status_code(),
        "error_type": error_type,
        "error_message": message,
    })
}

/// Imports `members` (a JSON array) into the organization; every row is reported.
pub fn members_import(organization_id: Option<&str>, members: Option<&Value>) -> MfaResult<Value> {
    let organization_id = validate_id(organization_id, IdKind::Organization)?;
    let Some(Value::Array(rows)) = members else {
        return err(
            ErrorType::InvalidArgument,
            "members must be a JSON array of member objects.",
        );
    };
    if rows.len() > MAX_MEMBERS {
        return err(
            ErrorType::InvalidArgument,
            format!("At most {MAX_MEMBERS} members a call; got {}.", rows.len()),
        );
    }
    let results: Vec<Value> = rows
        .iter()
        .map(|row| import_one(organization_id, row).unwrap_or_else(|e| failure(row, &e)))
        .collect();
    let imported = results.iter().filter(|r| r["status_code"] == 200).count();
    Ok(json!({
        "status_code": 200,
        "organization_id": organization_id,
        "imported": imported,
        "failed": results.len() - imported,
        "results": results,
    }))
}
