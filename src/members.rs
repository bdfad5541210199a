//! Administration of members (`member_upsert`, `member_get`, `member_delete`, `member_unlock`,
//! `member_delete_mfa_phone_number`) and what every authentication attempt shares: loading the
//! member, the lock, and the failed-attempt counter.

use crate::db::{self, Request};
use crate::errors::{err, ErrorType, MfaError, MfaResult, OrRaise};
use crate::organizations;
use crate::phone::{mask_e164, parse_phone_number};
use crate::policy::{parse_default_method, validate_id, IdKind, MfaMethod, OrganizationPolicy};
use crate::settings;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde::Deserialize;
use serde_json::{json, Value};

/// A member as the API shows it (the fields the logic needs).
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub organization_id: String,
    pub member_id: String,
    pub mfa_enrolled: bool,
    pub mfa_phone_number: Option<String>,
    pub mfa_phone_number_verified: bool,
    pub default_mfa_method: Option<String>,
    pub totp_registration_id: Option<String>,
    pub is_breakglass: bool,
    pub is_locked: bool,
    /// The whole member object as loaded, for answers that change nothing about the member.
    #[serde(skip)]
    pub object: Value,
}

impl Member {
    /// A factor the member has proven: a verified phone or an active authenticator app.
    pub fn has_active_factor(&self) -> bool {
        self.mfa_phone_number_verified || self.totp_registration_id.is_some()
    }

    pub fn has_factor_for(&self, method: MfaMethod) -> bool {
        match method {
            MfaMethod::SmsOtp => self.mfa_phone_number.is_some(),
            MfaMethod::Totp => self.totp_registration_id.is_some(),
        }
    }
}

/// A successful answer about `member`: status, request id and ids, then `fields`.
pub fn answer(request: &Request, member: &Member, fields: Value) -> Value {
    let mut answer = json!({
        "status_code": 200,
        "request_id": request.id,
        "organization_id": member.organization_id,
        "member_id": member.member_id,
    });
    if let (Some(obj), Value::Object(fields)) = (answer.as_object_mut(), fields) {
        obj.extend(fields);
    }
    answer
}

pub fn not_found(organization_id: &str, member_id: &str) -> MfaError {
    MfaError::new(
        ErrorType::MemberNotFound,
        format!(
            "No member {:?} in organization {:?}.",
            crate::policy::truncate_for_message(member_id),
            crate::policy::truncate_for_message(organization_id)
        ),
    )
}

/// The member object the API answers with (Stytch field names; lock fields only while locked),
/// built from the row `m` of mfa.members. A statement rather than a SQL function: a function with
/// a fixed search_path is planned again at every call, and this is on every hot path.
#[macro_export]
macro_rules! member_object_of_m {
    () => {
        "jsonb_build_object(
            'organization_id', m.organization_id,
            'member_id', m.member_id,
            'mfa_enrolled', m.mfa_enrolled,
            'mfa_phone_number', m.mfa_phone_number,
            'mfa_phone_number_verified', m.mfa_phone_number_verified,
            'default_mfa_method', m.default_mfa_method,
            'totp_registration_id', (SELECT t.totp_registration_id FROM mfa.totp_registrations t
                                      WHERE t.organization_id = m.organization_id
                                        AND t.member_id = m.member_id AND t.status = 'active'),
            'is_breakglass', m.is_breakglass,
            'is_locked', coalesce(m.lock_expires_at > now(), false),
            'lock_created_at', CASE WHEN m.lock_expires_at > now() THEN m.lock_created_at END,
            'lock_expires_at', CASE WHEN m.lock_expires_at > now() THEN m.lock_expires_at END,
            'created_at', m.created_at,
            'updated_at', m.updated_at)"
    };
}
pub use member_object_of_m;

/// Member `$2` of organization `$1`.
const MEMBER_OBJECT: &str = concat!(
    "SELECT ",
    member_object_of_m!(),
    " FROM mfa.members m WHERE m.organization_id = $1 AND m.member_id = $2"
);
/// The member and the policy of their organization, in one statement.
macro_rules! member_and_policy {
    () => {
        concat!(
            "SELECT jsonb_build_object('member', ",
            member_object_of_m!(),
            ", 'policy', to_jsonb(o))
               FROM mfa.members m JOIN mfa.organizations o ON o.organization_id = m.organization_id
              WHERE m.organization_id = $1 AND m.member_id = $2"
        )
    };
}
const MEMBER_AND_POLICY: &str = member_and_policy!();
const MEMBER_AND_POLICY_LOCKED: &str = concat!(member_and_policy!(), " FOR UPDATE OF m");

#[derive(Deserialize)]
struct MemberAndPolicy {
    member: Value,
    policy: organizations::OrganizationRow,
}

/// Validates both ids and loads the member with their organization's policy; with `lock`, the
/// member row stays locked until the end of the transaction, which serializes concurrent attempts
/// on one member.
pub fn load_with_policy(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    lock: bool,
) -> MfaResult<(Member, OrganizationPolicy)> {
    let organization_id = validate_id(organization_id, IdKind::Organization)?;
    let member_id = validate_id(member_id, IdKind::Member)?;
    let sql = if lock {
        MEMBER_AND_POLICY_LOCKED
    } else {
        MEMBER_AND_POLICY
    };
    let found = db::row::<MemberAndPolicy>(sql, &[organization_id.into(), member_id.into()])?
        .ok_or_else(|| not_found(organization_id, member_id))?;
    let mut member: Member = serde_json::from_value(found.member.clone()).unwrap_or_else(|e| {
        pgrx::error!("mfa: a member object does not have the expected shape: {e}")
    });
    member.object = found.member;
    Ok((member, found.policy.policy()))
}

/// `load_with_policy` for the callers that need only the member.
pub fn load(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    lock: bool,
) -> MfaResult<Member> {
    Ok(load_with_policy(organization_id, member_id, lock)?.0)
}

pub fn object(organization_id: &str, member_id: &str) -> MfaResult<Value> {
    db::json_row(MEMBER_OBJECT, &[organization_id.into(), member_id.into()])?
        .ok_or_else(|| not_found(organization_id, member_id))
}

/// Counts a failed attempt; at `mfa.lock_threshold` consecutive failures the member is locked for
/// `mfa.lock_minutes`. Returns whether the member is now locked.
pub fn record_failed_attempt(member: &Member) -> MfaResult<bool> {
    let locked: Option<bool> = db::row(
        "UPDATE mfa.members SET
                failed_attempts = CASE WHEN failed_attempts + 1 >= $3 THEN 0 ELSE failed_attempts + 1 END,
                lock_created_at = CASE WHEN failed_attempts + 1 >= $3 THEN now() ELSE lock_created_at END,
                lock_expires_at = CASE WHEN failed_attempts + 1 >= $3
                                       THEN now() + make_interval(mins => $4) ELSE lock_expires_at END
          WHERE organization_id = $1 AND member_id = $2
      RETURNING to_jsonb(coalesce(lock_expires_at > now(), false))",
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            settings::LOCK_THRESHOLD.get().into(),
            settings::LOCK_MINUTES.get().into(),
        ],
    )?;
    Ok(locked.unwrap_or(false))
}

/// The answer to a failed authentication attempt: counted, audited, returned (not raised) so
/// that the count commits with the caller's transaction.
pub fn failed_attempt(
    request: &Request,
    member: &Member,
    event_type: &str,
    failure: MfaError,
) -> MfaResult<Value> {
    let locked = record_failed_attempt(member)?;
    request.audit(
        &member.organization_id,
        Some(&member.member_id),
        event_type,
        json!({ "outcome": "failure", "error_type": failure.error_type.as_str(), "locked": locked }),
    )?;
    Ok(failure.to_failure_json(&request.id))
}

/// The answer to an attempt by a locked member, whatever the code.
pub fn locked_attempt(request: &Request, member: &Member, event_type: &str) -> MfaResult<Value> {
    let failure = MfaError::new(
        ErrorType::UserLockLimitReached,
        "Too many failed attempts: the member is locked. Try again later or ask an administrator to unlock.",
    );
    request.audit(
        &member.organization_id,
        Some(&member.member_id),
        event_type,
        json!({ "outcome": "failure", "error_type": failure.error_type.as_str(), "locked": true }),
    )?;
    Ok(failure.to_failure_json(&request.id))
}

fn upsert(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    mfa_phone_number: Option<&str>,
    mfa_enrolled: Option<bool>,
    default_mfa_method: Option<&str>,
    is_breakglass: Option<bool>,
) -> MfaResult<Value> {
    let request = Request::new();
    let org = validate_id(organization_id, IdKind::Organization)?;
    let mem = validate_id(member_id, IdKind::Member)?;
    let phone = mfa_phone_number.map(parse_phone_number).transpose()?;
    let default_method = default_mfa_method.map(parse_default_method).transpose()?;
    // Locks the organization against a concurrent delete while the member is written.
    db::row::<bool>(
        "SELECT to_jsonb(true) FROM mfa.organizations WHERE organization_id = $1 FOR KEY SHARE",
        &[org.into()],
    )?
    .ok_or_else(|| organizations::not_found(org))?;
    let created = db::execute(
        "INSERT INTO mfa.members (organization_id, member_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[org.into(), mem.into()],
    )? > 0;
    let before = load(Some(org), Some(mem), true)?;
    if let Some(method) = default_method {
        let has_factor = match (method, &phone) {
            (MfaMethod::SmsOtp, Some(_)) => true,
            _ => before.has_factor_for(method),
        };
        if !has_factor {
            return err(
                ErrorType::DefaultMfaMemberMissingFactor,
                format!("The member has no {method} factor to make their default."),
            );
        }
    }
    let phone_changed = phone
        .as_ref()
        .is_some_and(|p| before.mfa_phone_number.as_deref() != Some(&p.e164));
    db::execute(
        "UPDATE mfa.members SET
                mfa_phone_number = CASE WHEN $3 THEN $4 ELSE mfa_phone_number END,
                mfa_phone_country = CASE WHEN $3 THEN $5 ELSE mfa_phone_country END,
                mfa_phone_number_verified = CASE WHEN $3 THEN false ELSE mfa_phone_number_verified END,
                phone_id = CASE WHEN $3 THEN gen_random_uuid() ELSE phone_id END,
                mfa_enrolled = coalesce($6, mfa_enrolled),
                is_breakglass = coalesce($7, is_breakglass),
                default_mfa_method = coalesce($8, default_mfa_method),
                updated_at = now()
          WHERE organization_id = $1 AND member_id = $2",
        &[
            org.into(),
            mem.into(),
            phone_changed.into(),
            phone.as_ref().map(|p| p.e164.as_str()).into(),
            phone.as_ref().map(|p| p.country_code.as_str()).into(),
            mfa_enrolled.into(),
            is_breakglass.into(),
            default_method.map(|m| m.as_str()).into(),
        ],
    )?;
    if phone_changed {
        // A code sent to the previous number must not verify the new one.
        kill_sms_code(org, mem)?;
    }
    request.audit(
        org,
        Some(mem),
        if created {
            "member.created"
        } else {
            "member.updated"
        },
        json!({
            "mfa_phone_number": phone.as_ref().filter(|_| phone_changed).map(|p| p.masked()),
            "mfa_enrolled": mfa_enrolled,
            "default_mfa_method": default_method.map(|m| m.as_str()),
            "is_breakglass": is_breakglass,
        }),
    )?;
    object(org, mem)
}

pub fn kill_sms_code(organization_id: &str, member_id: &str) -> MfaResult<()> {
    db::execute(
        "DELETE FROM mfa.sms_codes WHERE organization_id = $1 AND member_id = $2",
        &[organization_id.into(), member_id.into()],
    )?;
    Ok(())
}

/// Creates a member or changes their MFA settings; NULL keeps a value (or its default).
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_upsert(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    mfa_phone_number: default!(Option<&str>, "NULL"),
    mfa_enrolled: default!(Option<bool>, "NULL"),
    default_mfa_method: default!(Option<&str>, "NULL"),
    is_breakglass: default!(Option<bool>, "NULL"),
) -> JsonB {
    JsonB(
        upsert(
            organization_id,
            member_id,
            mfa_phone_number,
            mfa_enrolled,
            default_mfa_method,
            is_breakglass,
        )
        .or_raise(),
    )
}

#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_get(organization_id: Option<&str>, member_id: Option<&str>) -> JsonB {
    let get = || -> MfaResult<Value> {
        let m = load(organization_id, member_id, false)?;
        object(&m.organization_id, &m.member_id)
    };
    JsonB(get().or_raise())
}

/// Deletes a member with their factors, codes, pending messages and logins in progress.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_delete(organization_id: Option<&str>, member_id: Option<&str>) {
    let delete = || -> MfaResult<()> {
        let request = Request::new();
        let m = load(organization_id, member_id, true)?;
        db::execute(
            "DELETE FROM mfa.members WHERE organization_id = $1 AND member_id = $2",
            &[
                m.organization_id.as_str().into(),
                m.member_id.as_str().into(),
            ],
        )?;
        request.audit(
            &m.organization_id,
            Some(&m.member_id),
            "member.deleted",
            json!({}),
        )
    };
    delete().or_raise()
}

/// Lifts a member's lock and resets their failed-attempt count.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_unlock(organization_id: Option<&str>, member_id: Option<&str>) -> JsonB {
    let unlock = || -> MfaResult<Value> {
        let request = Request::new();
        let m = load(organization_id, member_id, true)?;
        db::execute(
            "UPDATE mfa.members SET failed_attempts = 0, lock_created_at = NULL, lock_expires_at = NULL,
                    updated_at = now()
              WHERE organization_id = $1 AND member_id = $2",
            &[m.organization_id.as_str().into(), m.member_id.as_str().into()],
        )?;
        request.audit(
            &m.organization_id,
            Some(&m.member_id),
            "member.unlocked",
            json!({ "was_locked": m.is_locked }),
        )?;
        object(&m.organization_id, &m.member_id)
    };
    JsonB(unlock().or_raise())
}

/// Removes a member's phone number (and its live code); SMS stops being their default method.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_delete_mfa_phone_number(organization_id: Option<&str>, member_id: Option<&str>) -> JsonB {
    let delete = || -> MfaResult<Value> {
        let request = Request::new();
        let m = load(organization_id, member_id, true)?;
        let Some(phone) = &m.mfa_phone_number else {
            return err(
                ErrorType::MemberPhoneNumberNotFound,
                "The member has no phone number.",
            );
        };
        db::execute(
            "UPDATE mfa.members SET mfa_phone_number = NULL, mfa_phone_country = NULL, phone_id = NULL,
                    mfa_phone_number_verified = false,
                    default_mfa_method = NULLIF(default_mfa_method, 'sms_otp'),
                    updated_at = now()
              WHERE organization_id = $1 AND member_id = $2",
            &[m.organization_id.as_str().into(), m.member_id.as_str().into()],
        )?;
        kill_sms_code(&m.organization_id, &m.member_id)?;
        request.audit(
            &m.organization_id,
            Some(&m.member_id),
            "member.phone_number_deleted",
            json!({ "mfa_phone_number": mask_e164(phone) }),
        )?;
        object(&m.organization_id, &m.member_id)
    };
    JsonB(delete().or_raise())
}
