//! Stytch-shaped answers: the envelope every successful call shares and the member object.

use crate::core::factor;
use crate::core::phone::mask_e164;
use crate::core::policy::OrganizationPolicy;
use crate::error::MfaResult;
use crate::flow::member::{self, Load};
use crate::store::audit::Request;
use crate::store::members::Member;
use pgrx::datum::{TimestampWithTimeZone, ToIsoString};
use serde_json::{json, Value};

/// A successful answer about `member`: status, request id and ids, then `fields`.
pub fn about(request: &Request, member: &Member, fields: Value) -> Value {
    about_ids(request, &member.organization_id, &member.member_id, fields)
}

/// `about` by the member's ids.
pub fn about_ids(
    request: &Request,
    organization_id: &str,
    member_id: &str,
    fields: Value,
) -> Value {
    let mut answer = json!({
        "status_code": 200,
        "request_id": request.id,
        "organization_id": organization_id,
        "member_id": member_id,
    });
    if let (Some(obj), Value::Object(fields)) = (answer.as_object_mut(), fields) {
        obj.extend(fields);
    }
    answer
}

/// The organization object (what `organization_get` answers) of `member`'s organization, from the
/// policy and the times read with the member: Stytch answers it beside the member.
pub fn organization(member: &Member, org: &OrganizationPolicy) -> Value {
    json!({
        "organization_id": member.organization_id,
        "mfa_policy": org.mfa_policy.as_str(),
        "mfa_methods": org.mfa_methods.as_str(),
        "allowed_mfa_methods": org.allowed_names(),
        "remember_device_days": org.remember_device_days,
        "created_at": member.organization_created_at.to_iso_string(),
        "updated_at": member.organization_updated_at.to_iso_string(),
    })
}

/// `answer` with the organization object beside its member.
pub fn with_organization(mut answer: Value, member: &Member, org: &OrganizationPolicy) -> Value {
    answer["organization"] = organization(member, org);
    answer
}

/// A login's or a session's factors as answered: with Stytch's `created_at` and `updated_at`
/// (`core::factor::answered`), which are not stored. Anything but an array is left as it is.
pub fn factors(stored: Value) -> Value {
    match stored {
        Value::Array(stored) => Value::Array(factor::answered(&stored)),
        other => other,
    }
}

/// The member object (Stytch field names; the lock's times only while locked). Timestamps are
/// formatted as jsonb formats them.
pub fn member(member: &Member) -> Value {
    let iso = |t: &TimestampWithTimeZone| t.to_iso_string();
    let while_locked =
        |t: &Option<TimestampWithTimeZone>| t.as_ref().filter(|_| member.is_locked).map(iso);
    json!({
        "organization_id": member.organization_id,
        "member_id": member.member_id,
        "mfa_enrolled": member.mfa_enrolled,
        "mfa_phone_number": member.mfa_phone_number,
        "mfa_phone_number_verified": member.mfa_phone_number_verified,
        "default_mfa_method": member.default_mfa_method,
        "totp_registration_id": member.totp_registration_id,
        "is_breakglass": member.is_breakglass,
        "is_locked": member.is_locked,
        "lock_created_at": while_locked(&member.lock_created_at),
        "lock_expires_at": while_locked(&member.lock_expires_at),
        "created_at": iso(&member.created_at),
        "updated_at": iso(&member.updated_at),
    })
}

/// `member` for an answer given before the member proved a second factor (to the login flow,
/// which may be driven by whoever holds the application's role): the phone number masked as in
/// `member_options`.
pub fn member_before_mfa(member: &Member) -> Value {
    let mut object = self::member(member);
    if let Some(phone) = &member.mfa_phone_number {
        object["mfa_phone_number"] = Value::String(mask_e164(phone));
    }
    object
}

/// The member object as it is now (after this transaction's own changes).
pub fn member_now(organization_id: &str, member_id: &str) -> MfaResult<Value> {
    Ok(self::member(&member::load(
        Some(organization_id),
        Some(member_id),
        Load::Read,
    )?))
}

/// The member object as it is now, with their organization's object beside its fields (as Stytch
/// answers `organization` beside `member`), read in the one statement that loads the member.
pub fn member_with_organization_now(organization_id: &str, member_id: &str) -> MfaResult<Value> {
    let (member, org) =
        member::load_with_policy(Some(organization_id), Some(member_id), Load::Read)?;
    Ok(with_organization(self::member(&member), &member, &org))
}

/// `member_before_mfa`, read again.
pub fn member_before_mfa_now(organization_id: &str, member_id: &str) -> MfaResult<Value> {
    Ok(member_before_mfa(&member::load(
        Some(organization_id),
        Some(member_id),
        Load::Read,
    )?))
}
