//! Administration of members (`member_upsert`, `member_get`, `member_delete`, `member_unlock`,
//! `member_delete_mfa_phone_number`) and what every authentication attempt shares: loading the
//! member, the lock, and the failed-attempt counter.

use crate::core::attempts::MemberAttempts;
use crate::store::spi::{self, Request};
use crate::error::{err, ErrorType, MfaError, MfaResult, OrRaise};
use crate::store::jsonb::Jsonb;
use crate::api::organizations;
use crate::core::phone::{mask_e164, parse_phone_number};
use crate::core::policy::{parse_default_method, validate_id, IdKind, MfaMethod, OrganizationPolicy};
use crate::store::ledger;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::spi::SpiHeapTupleData;
use serde_json::{json, Value};

/// A member as loaded with their factors: what the logic needs and what the API shows.
#[derive(Debug, Clone)]
pub struct Member {
    pub organization_id: String,
    pub member_id: String,
    pub mfa_enrolled: bool,
    pub mfa_phone_number: Option<String>,
    /// The phone's country as parsed when it was stored (ISO alpha-2).
    pub mfa_phone_country: Option<String>,
    pub mfa_phone_number_verified: bool,
    pub phone_id: Option<String>,
    pub default_mfa_method: Option<String>,
    /// The active authenticator app's id (a pending registration is not a factor yet).
    pub totp_registration_id: Option<String>,
    pub is_breakglass: bool,
    pub is_locked: bool,
    pub lock_created_at: Option<TimestampWithTimeZone>,
    pub lock_expires_at: Option<TimestampWithTimeZone>,
    pub created_at: TimestampWithTimeZone,
    pub updated_at: TimestampWithTimeZone,
    /// The authenticator-app registration, active or pending.
    pub totp: Option<TotpRegistration>,
    /// The live SMS code, if one was sent.
    pub sms_code: Option<SmsCode>,
    /// The member's lockout state: the attempt ledger's live copy, or the durable row when the
    /// ledger knows nothing of them.
    pub attempts: MemberAttempts,
}

/// A member's authenticator-app registration as stored (the secret still encrypted).
#[derive(Debug, Clone)]
pub struct TotpRegistration {
    pub totp_registration_id: String,
    pub secret_ciphertext: Vec<u8>,
    pub active: bool,
    /// A pending registration past its expiry.
    pub expired: bool,
    pub last_used_step: Option<i64>,
}

/// A member's live SMS code as stored (a keyed hash).
#[derive(Debug, Clone)]
pub struct SmsCode {
    pub code_hash: Vec<u8>,
    pub phone_number: String,
    pub expired: bool,
    pub used: bool,
    /// The key that hashed it (unknown for codes sent before 0.6.0).
    pub key_id: Option<String>,
}

impl Member {
    /// The member with the attempt ledger's copy of their lockout state (the durable row's when
    /// the ledger knows nothing of them, or was not preloaded), and the lock fields it shows.
    fn with_live_attempts(mut self) -> Member {
        if ledger::is_available() {
            if let Ok(key) = self.ledger_key() {
                if let Ok(live) = ledger::current(&key, &self.attempts) {
                    self.attempts = live;
                }
            }
        }
        let now = unsafe { pgrx::pg_sys::GetCurrentTimestamp() };
        self.is_locked = self.attempts.is_locked(now);
        let time = |t: i64| TimestampWithTimeZone::try_from(t).ok();
        if self.is_locked {
            self.lock_created_at = time(self.attempts.lock_created_at);
            self.lock_expires_at = time(self.attempts.lock_expires_at);
        }
        self
    }

    /// The member's entry in the attempt ledger.
    pub fn ledger_key(&self) -> MfaResult<ledger::MemberKey> {
        ledger::MemberKey::new(
            &self.organization_id,
            &self.member_id,
            self.created_at.into_inner(),
        )
    }

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

    /// The member object the API answers with (Stytch field names; the lock's times only while
    /// locked). Timestamps are formatted as jsonb formats them.
    pub fn object(&self) -> Value {
        let iso = |t: &TimestampWithTimeZone| t.to_iso_string();
        let while_locked =
            |t: &Option<TimestampWithTimeZone>| t.as_ref().filter(|_| self.is_locked).map(iso);
        json!({
            "organization_id": self.organization_id,
            "member_id": self.member_id,
            "mfa_enrolled": self.mfa_enrolled,
            "mfa_phone_number": self.mfa_phone_number,
            "mfa_phone_number_verified": self.mfa_phone_number_verified,
            "default_mfa_method": self.default_mfa_method,
            "totp_registration_id": self.totp_registration_id,
            "is_breakglass": self.is_breakglass,
            "is_locked": self.is_locked,
            "lock_created_at": while_locked(&self.lock_created_at),
            "lock_expires_at": while_locked(&self.lock_expires_at),
            "created_at": iso(&self.created_at),
            "updated_at": iso(&self.updated_at),
        })
    }

    /// `object` for an answer given before the member proved a second factor (to the login flow,
    /// which may be driven by whoever holds the application's role): the phone number masked as
    /// in `member_options`.
    pub fn object_before_mfa(&self) -> Value {
        let mut object = self.object();
        if let Some(phone) = &self.mfa_phone_number {
            object["mfa_phone_number"] = Value::String(crate::core::phone::mask_e164(phone));
        }
        object
    }
}

/// A successful answer about `member`: status, request id and ids, then `fields`.
pub fn answer(request: &Request, member: &Member, fields: Value) -> Value {
    answer_for(request, &member.organization_id, &member.member_id, fields)
}

/// `answer` by the member's ids.
pub fn answer_for(
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

pub fn not_found(organization_id: &str, member_id: &str) -> MfaError {
    MfaError::new(
        ErrorType::MemberNotFound,
        format!(
            "No member {:?} in organization {:?}.",
            crate::core::policy::truncate_for_message(member_id),
            crate::core::policy::truncate_for_message(organization_id)
        ),
    )
}

/// Member `$2` of organization `$1` with their organization's policy and their factors, as typed
/// columns in the order `read_member` reads them: one statement of primary-key lookups. The
/// authenticator app is joined with `$totp_join` (`LEFT JOIN` or, to lock it, `JOIN`); the live
/// SMS code only for the one caller that needs it.
macro_rules! member_load {
    ($totp_join:literal, $sms_code_columns:literal, $sms_code_join:literal) => {
        concat!(
            "SELECT m.organization_id, m.member_id, m.mfa_enrolled, m.mfa_phone_number, m.mfa_phone_country,
                    m.mfa_phone_number_verified, m.phone_id::text, m.default_mfa_method, m.is_breakglass,
                    l.failed_attempts, l.lock_created_at, l.lock_expires_at,
                    m.created_at, m.updated_at,
                    o.mfa_policy, o.mfa_methods, o.allowed_mfa_methods,
                    t.totp_registration_id::text, t.secret_ciphertext, t.status = 'active',
                    coalesce(t.expires_at <= clock_timestamp(), false), t.last_used_step, ",
            $sms_code_columns,
            ", l.failure_window_started_at, l.lock_count
               FROM mfa.members m
               JOIN mfa.organizations o ON o.organization_id = m.organization_id
               LEFT JOIN mfa.member_lockouts l ON l.organization_id = m.organization_id AND l.member_id = m.member_id ",
            $totp_join,
            " mfa.totp_registrations t ON t.organization_id = m.organization_id AND t.member_id = m.member_id ",
            $sms_code_join,
            " WHERE m.organization_id = $1 AND m.member_id = $2"
        )
    };
    // Without the SMS code.
    ($totp_join:literal) => {
        member_load!($totp_join, "NULL::bytea, NULL::text, NULL::bool, NULL::bool, NULL::text", "")
    };
}
const MEMBER_READ: &str = member_load!("LEFT JOIN");
// Every writer of a member's factors holds the member's row lock, which serializes them (FOR NO
// KEY UPDATE: the ledger's worker, inserting a lockout row, only needs the key to stay). A
// statement that waited for that lock still reads other tables as of its start, so a locked load
// either locks every row it reads (PostgreSQL then re-reads the ones changed while it waited) or
// reads them in a statement after the lock.
/// The member's row lock alone; `MEMBER_READ` follows.
const MEMBER_LOCK: &str =
    "SELECT FROM mfa.members WHERE organization_id = $1 AND member_id = $2 FOR NO KEY UPDATE";
/// The member and their authenticator app, both locked (no row when there is no app).
const MEMBER_LOCK_WITH_TOTP: &str = concat!(member_load!("JOIN"), " FOR NO KEY UPDATE OF m, t");
/// The member and their live SMS code, both locked (no row when there is no code).
const MEMBER_LOCK_WITH_SMS_CODE: &str = concat!(
    member_load!(
        "LEFT JOIN",
        "c.code_hash, c.phone_number, c.expires_at <= clock_timestamp(), c.used_at IS NOT NULL, c.key_id",
        "JOIN mfa.sms_codes c ON c.organization_id = m.organization_id AND c.member_id = m.member_id"
    ),
    " FOR NO KEY UPDATE OF m, c"
);
/// The member's row lock, returning the block of 10,000 numbers an SMS is about to go to (`$3`,
/// the number being linked, or the member's own), whose lock is taken next: in this order on
/// every path.
const MEMBER_LOCK_FOR_SENDING: &str =
    "SELECT left(coalesce($3, mfa_phone_number), -4) FROM mfa.members
      WHERE organization_id = $1 AND member_id = $2 FOR NO KEY UPDATE";

/// How a member is loaded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Load<'a> {
    /// A snapshot read.
    Read,
    /// The member's row stays locked until the end of the transaction, which serializes
    /// concurrent attempts on one member; their factors are read after the lock is granted.
    Lock,
    /// `Lock` in one statement, for a TOTP attempt: the authenticator app is locked too.
    LockWithTotp,
    /// `Lock` in one statement, for an SMS code attempt: the live code is read and locked too.
    LockWithSmsCode,
    /// `Lock`, then the SMS sending lock of the number `to` (or of the member's own number when
    /// `None`): see `sms_otp::sql::SendingLimits`.
    LockForSending { to: Option<&'a str> },
}

fn read_member(row: &SpiHeapTupleData) -> Result<(Member, OrganizationPolicy), pgrx::spi::Error> {
    let text = |n| row.get::<String>(n);
    let flag = |n| row.get::<bool>(n).map(|b| b.unwrap_or(false));
    let time = |n| row.get::<TimestampWithTimeZone>(n);
    let totp = match text(18)? {
        Some(totp_registration_id) => Some(TotpRegistration {
            totp_registration_id,
            secret_ciphertext: row.get::<Vec<u8>>(19)?.unwrap_or_default(),
            active: flag(20)?,
            expired: flag(21)?,
            last_used_step: row.get::<i64>(22)?,
        }),
        None => None,
    };
    let sms_code = match row.get::<Vec<u8>>(23)? {
        Some(code_hash) => Some(SmsCode {
            code_hash,
            phone_number: text(24)?.unwrap_or_default(),
            expired: flag(25)?,
            used: flag(26)?,
            key_id: text(27)?,
        }),
        None => None,
    };
    let member = Member {
        organization_id: text(1)?.unwrap_or_default(),
        member_id: text(2)?.unwrap_or_default(),
        mfa_enrolled: flag(3)?,
        mfa_phone_number: text(4)?,
        mfa_phone_country: text(5)?,
        mfa_phone_number_verified: flag(6)?,
        phone_id: text(7)?,
        default_mfa_method: text(8)?,
        totp_registration_id: totp
            .as_ref()
            .filter(|t| t.active)
            .map(|t| t.totp_registration_id.clone()),
        is_breakglass: flag(9)?,
        is_locked: false,
        lock_created_at: None,
        lock_expires_at: None,
        created_at: time(13)?.expect("NOT NULL"),
        updated_at: time(14)?.expect("NOT NULL"),
        totp,
        sms_code,
        attempts: crate::store::lockouts::attempts_from_row(
            row.get::<i32>(10)?,
            time(28)?,
            time(11)?,
            time(12)?,
            row.get::<i32>(29)?,
        ),
    };
    Ok((
        member.with_live_attempts(),
        organizations::read_policy(row, 15)?,
    ))
}

/// Validates both ids and loads the member with their organization's policy and their factors,
/// in one statement.
pub fn load_with_policy(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    load: Load,
) -> MfaResult<(Member, OrganizationPolicy)> {
    let organization_id = validate_id(organization_id, IdKind::Organization)?;
    let member_id = validate_id(member_id, IdKind::Member)?;
    let ids = || [organization_id.into(), member_id.into()];
    let read = |sql| spi::typed_row(sql, &ids(), read_member);
    match load {
        Load::Read => read(MEMBER_READ),
        Load::Lock => {
            spi::execute(MEMBER_LOCK, &ids())?;
            read(MEMBER_READ)
        }
        Load::LockWithTotp | Load::LockWithSmsCode => {
            let sql = if load == Load::LockWithTotp {
                MEMBER_LOCK_WITH_TOTP
            } else {
                MEMBER_LOCK_WITH_SMS_CODE
            };
            match read(sql)? {
                Some(found) => Ok(Some(found)),
                // No such member, or no such factor: the member as `Lock` loads them.
                None => {
                    return load_with_policy(Some(organization_id), Some(member_id), Load::Lock)
                }
            }
        }
        Load::LockForSending { to } => {
            let [organization, member] = ids();
            let block = spi::typed_row(
                MEMBER_LOCK_FOR_SENDING,
                &[organization, member, to.into()],
                |row| row.get::<String>(1),
            )?
            .flatten();
            if let Some(block) = block {
                crate::store::sms::lock_number_block(&block)?;
            }
            read(MEMBER_READ)
        }
    }?
    .ok_or_else(|| not_found(organization_id, member_id))
}

/// `load_with_policy` for the callers that need only the member.
pub fn load(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    how: Load,
) -> MfaResult<Member> {
    Ok(load_with_policy(organization_id, member_id, how)?.0)
}

/// The member object as it is now (after this transaction's own changes).
pub fn object(organization_id: &str, member_id: &str) -> MfaResult<Value> {
    Ok(load(Some(organization_id), Some(member_id), Load::Read)?.object())
}

/// `object_before_mfa`, read again.
pub fn object_before_mfa(organization_id: &str, member_id: &str) -> MfaResult<Value> {
    Ok(load(Some(organization_id), Some(member_id), Load::Read)?.object_before_mfa())
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
    if spi::execute(
        "SELECT FROM mfa.organizations WHERE organization_id = $1 FOR KEY SHARE",
        &[org.into()],
    )? == 0
    {
        return Err(organizations::not_found(org));
    }
    let created = spi::execute(
        "INSERT INTO mfa.members (organization_id, member_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[org.into(), mem.into()],
    )? > 0;
    // A member this transaction created is locked by the insert already.
    let before = load(
        Some(org),
        Some(mem),
        if created { Load::Read } else { Load::Lock },
    )?;
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
    // The member's new settings, the end of a code sent to a previous number (it must not verify
    // the new one) and the audit event, in one statement.
    request.audited(
        "WITH killed AS (DELETE FROM mfa.sms_codes WHERE $3 AND organization_id = $1 AND member_id = $2)
         UPDATE mfa.members SET
                mfa_phone_number = CASE WHEN $3 THEN $4 ELSE mfa_phone_number END,
                mfa_phone_country = CASE WHEN $3 THEN $5 ELSE mfa_phone_country END,
                mfa_phone_number_verified = CASE WHEN $3 THEN false ELSE mfa_phone_number_verified END,
                phone_id = CASE WHEN $3 THEN gen_random_uuid() ELSE phone_id END,
                mfa_enrolled = coalesce($6, mfa_enrolled),
                is_breakglass = coalesce($7, is_breakglass),
                default_mfa_method = coalesce($8, default_mfa_method),
                updated_at = now()
          WHERE organization_id = $1 AND member_id = $2",
        vec![
            org.into(),
            mem.into(),
            phone_changed.into(),
            phone.as_ref().map(|p| p.e164.as_str()).into(),
            phone.as_ref().map(|p| p.country_code.as_str()).into(),
            mfa_enrolled.into(),
            is_breakglass.into(),
            default_method.map(|m| m.as_str()).into(),
        ],
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
    spi::execute(
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
) -> Jsonb {
    Jsonb(
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
fn member_get(organization_id: Option<&str>, member_id: Option<&str>) -> Jsonb {
    let get = || -> MfaResult<Value> { Ok(load(organization_id, member_id, Load::Read)?.object()) };
    Jsonb(get().or_raise())
}

/// Deletes a member with their factors, codes, pending messages and logins in progress.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_delete(organization_id: Option<&str>, member_id: Option<&str>) {
    let delete = || -> MfaResult<()> {
        let request = Request::new();
        let m = load(organization_id, member_id, Load::Lock)?;
        spi::execute(
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
fn member_unlock(organization_id: Option<&str>, member_id: Option<&str>) -> Jsonb {
    let unlock = || -> MfaResult<Value> {
        let request = Request::new();
        let m = load(organization_id, member_id, Load::Lock)?;
        // At once, in the ledger and (by its worker) in the durable row, whatever this
        // transaction does next.
        ledger::unlock(
            m.ledger_key()?,
            &m.attempts,
            &crate::settings::attempt_limits(),
            &ledger::EventContext {
                organization_id: m.organization_id.clone(),
                member_id: m.member_id.clone(),
                actor: spi::session_user(),
                event_type: "member.unlocked",
                request_id: spi::request_id_bytes(&request.id),
            },
        )?;
        request.audit(
            &m.organization_id,
            Some(&m.member_id),
            "member.unlocked",
            json!({ "was_locked": m.is_locked }),
        )?;
        object(&m.organization_id, &m.member_id)
    };
    Jsonb(unlock().or_raise())
}

/// Removes a member's phone number (and its live code); SMS stops being their default method.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn member_delete_mfa_phone_number(organization_id: Option<&str>, member_id: Option<&str>) -> Jsonb {
    let delete = || -> MfaResult<Value> {
        let request = Request::new();
        let m = load(organization_id, member_id, Load::Lock)?;
        let Some(phone) = &m.mfa_phone_number else {
            return err(
                ErrorType::MemberPhoneNumberNotFound,
                "The member has no phone number.",
            );
        };
        spi::execute(
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
    Jsonb(delete().or_raise())
}
