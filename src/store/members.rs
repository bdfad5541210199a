//! Members as stored: the load every flow starts with (the member, their organization's policy,
//! their factors and their lockout state, in one statement) and every write to `mfa.members`.

use crate::core::attempts::MemberAttempts;
use crate::core::ids;
use crate::core::phone::ParsedPhone;
use crate::core::policy::{
    truncate_for_message, MfaMethod, MfaMethods, MfaPolicy, OrganizationPolicy,
};
use crate::core::reports::{MemberFilter, SECOND_FACTOR_EVENTS, SECOND_FACTOR_TYPES};
use crate::error::{ErrorType, MfaError, MfaResult};
use crate::store::audit::Event;
use crate::store::events::filter_time;
use crate::store::{lockouts, spi};
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::spi::SpiHeapTupleData;

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
    /// How many passkeys the member has.
    pub webauthn_registrations: i32,
    /// The member's lockout state: the attempt ledger's live copy, or the durable row when the
    /// ledger knows nothing of them.
    pub attempts: MemberAttempts,
    /// Their organization's row's times, read with its policy (for the organization object).
    pub organization_created_at: TimestampWithTimeZone,
    pub organization_updated_at: TimestampWithTimeZone,
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
    /// A factor the member has proven: a verified phone, an active authenticator app or a
    /// passkey.
    pub fn has_active_factor(&self) -> bool {
        self.mfa_phone_number_verified
            || self.totp_registration_id.is_some()
            || self.webauthn_registrations > 0
    }

    pub fn has_factor_for(&self, method: MfaMethod) -> bool {
        match method {
            MfaMethod::SmsOtp => self.mfa_phone_number.is_some(),
            MfaMethod::Totp => self.totp_registration_id.is_some(),
            MfaMethod::Webauthn => self.webauthn_registrations > 0,
        }
    }
}

pub fn not_found(organization_id: &str, member_id: &str) -> MfaError {
    MfaError::new(
        ErrorType::MemberNotFound,
        format!(
            "No member {:?} in organization {:?}.",
            truncate_for_message(member_id),
            truncate_for_message(organization_id)
        ),
    )
}

/// Which statement loads a member (`flow::member::Load` says which one a call needs, and the
/// order of the locks it takes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Statement {
    /// `member_read.sql`: a snapshot read.
    Read,
    /// `member_lock.sql`: the member's row and their authenticator app stay locked until the end
    /// of the transaction.
    Lock,
    /// `member_lock_with_sms_code.sql`: `Lock`, and the live SMS code is read and locked too.
    LockWithSmsCode,
}

/// The columns of `member_read.sql` / `member_lock.sql`, by name.
fn read_member(row: &SpiHeapTupleData) -> Result<(Member, OrganizationPolicy), pgrx::spi::Error> {
    let text = |name: &str| row.get_by_name::<String, _>(name);
    let flag = |name: &str| row.get_by_name::<bool, _>(name).map(|b| b.unwrap_or(false));
    let time = |name: &str| row.get_by_name::<TimestampWithTimeZone, _>(name);
    let number = |name: &str| row.get_by_name::<i32, _>(name);
    let totp = match text("totp_registration_id")? {
        Some(totp_registration_id) => Some(TotpRegistration {
            totp_registration_id,
            secret_ciphertext: row
                .get_by_name::<Vec<u8>, _>("secret_ciphertext")?
                .unwrap_or_default(),
            active: flag("totp_active")?,
            expired: flag("totp_expired")?,
            last_used_step: row.get_by_name::<i64, _>("last_used_step")?,
        }),
        None => None,
    };
    let sms_code = match row.get_by_name::<Vec<u8>, _>("sms_code_hash")? {
        Some(code_hash) => Some(SmsCode {
            code_hash,
            phone_number: text("sms_code_phone_number")?.unwrap_or_default(),
            expired: flag("sms_code_expired")?,
            used: flag("sms_code_used")?,
            key_id: text("sms_code_key_id")?,
        }),
        None => None,
    };
    let member = Member {
        organization_id: text("organization_id")?.unwrap_or_default(),
        member_id: text("member_id")?.unwrap_or_default(),
        mfa_enrolled: flag("mfa_enrolled")?,
        mfa_phone_number: text("mfa_phone_number")?,
        mfa_phone_country: text("mfa_phone_country")?,
        mfa_phone_number_verified: flag("mfa_phone_number_verified")?,
        phone_id: text("phone_id")?,
        default_mfa_method: text("default_mfa_method")?,
        totp_registration_id: totp
            .as_ref()
            .filter(|t| t.active)
            .map(|t| t.totp_registration_id.clone()),
        is_breakglass: flag("is_breakglass")?,
        is_locked: false,
        lock_created_at: None,
        lock_expires_at: None,
        created_at: time("created_at")?.expect("NOT NULL"),
        updated_at: time("updated_at")?.expect("NOT NULL"),
        organization_created_at: time("organization_created_at")?.expect("NOT NULL"),
        organization_updated_at: time("organization_updated_at")?.expect("NOT NULL"),
        totp,
        sms_code,
        webauthn_registrations: number("webauthn_registrations")?.unwrap_or(0),
        attempts: lockouts::attempts_from_row(
            number("failed_attempts")?,
            time("failure_window_started_at")?,
            time("lock_created_at")?,
            time("lock_expires_at")?,
            number("lock_count")?,
        ),
    };
    Ok((member, read_policy(row)?))
}

/// The policy from a row's `mfa_policy`, `mfa_methods` and `allowed_mfa_methods` columns. The
/// table's CHECK constraints guarantee the values parse.
pub fn read_policy(row: &SpiHeapTupleData) -> Result<OrganizationPolicy, pgrx::spi::Error> {
    let checked = "checked by the table";
    Ok(OrganizationPolicy {
        mfa_policy: MfaPolicy::parse(
            &row.get_by_name::<String, _>("mfa_policy")?
                .unwrap_or_default(),
        )
        .expect(checked),
        mfa_methods: MfaMethods::parse(
            &row.get_by_name::<String, _>("mfa_methods")?
                .unwrap_or_default(),
        )
        .expect(checked),
        allowed_mfa_methods: row
            .get_by_name::<Vec<String>, _>("allowed_mfa_methods")?
            .unwrap_or_default()
            .iter()
            .map(|m| MfaMethod::parse(m).expect(checked))
            .collect(),
        remember_device_days: row
            .get_by_name::<i32, _>("remember_device_days")?
            .unwrap_or(0),
    })
}

/// The member with their organization's policy and their factors, in one statement, their
/// lockout state as stored (`None` when there is no such member).
pub fn load_with_policy(
    organization_id: &str,
    member_id: &str,
    statement: Statement,
) -> MfaResult<Option<(Member, OrganizationPolicy)>> {
    let statement = match statement {
        Statement::Read => include_str!("sql/member_read.sql"),
        Statement::Lock => include_str!("sql/member_lock.sql"),
        Statement::LockWithSmsCode => include_str!("sql/member_lock_with_sms_code.sql"),
    };
    spi::typed_row(
        statement,
        &[organization_id.into(), member_id.into()],
        read_member,
    )
}

/// The question of `members_search`: an organization's members after `after` (`""`: from the
/// first), at most `limit` of them, that pass `filter`.
pub struct MemberSearch<'a> {
    pub organization_id: &'a str,
    pub after: &'a str,
    pub limit: i64,
    pub now: TimestampWithTimeZone,
    pub filter: &'a MemberFilter,
}

impl MemberSearch<'_> {
    /// The parameters of `members_search.head.sql`.
    fn args(&self) -> MfaResult<Vec<DatumWithOid<'_>>> {
        let f = self.filter;
        let second_factor_events: Vec<String> =
            SECOND_FACTOR_EVENTS.iter().map(|t| t.to_string()).collect();
        let second_factor_types: Vec<String> =
            SECOND_FACTOR_TYPES.iter().map(|t| t.to_string()).collect();
        Ok(vec![
            self.organization_id.into(),
            self.after.into(),
            self.limit.into(),
            self.now.into(),
            f.mfa_enrolled.into(),
            f.has_totp.into(),
            f.has_phone.into(),
            f.locked.into(),
            f.breakglass.into(),
            f.no_factor.into(),
            filter_time(f.last_mfa_before)?.into(),
            filter_time(f.last_mfa_after)?.into(),
            second_factor_events.into(),
            f.has_passkey.into(),
            second_factor_types.into(),
        ])
    }
}

/// A page of `members_search` (`members_search.head.sql`, `members_search.page.sql`), each member
/// with their lockout state as stored (no secret is read: a TOTP registration's ciphertext is
/// empty here).
pub fn search(question: &MemberSearch) -> MfaResult<Vec<Member>> {
    const STATEMENT: &str = concat!(
        include_str!("sql/members_search.head.sql"),
        include_str!("sql/members_search.page.sql")
    );
    spi::typed_rows_planned_per_call(STATEMENT, &question.args()?, |row| {
        read_member(row).map(|(member, _)| member)
    })
}

/// How many members after `question.after` pass `members_search`'s filters
/// (`members_search.head.sql`, `members_search.count.sql`).
pub fn search_total(question: &MemberSearch) -> MfaResult<i64> {
    const STATEMENT: &str = concat!(
        include_str!("sql/members_search.head.sql"),
        include_str!("sql/members_search.count.sql")
    );
    Ok(
        spi::typed_rows_planned_per_call(STATEMENT, &question.args()?, |row| row.get::<i64>(1))?
            .into_iter()
            .next()
            .flatten()
            .unwrap_or(0),
    )
}

/// Creates the member unless they exist, under a key-share lock of their organization (against a
/// concurrent delete); `Ok(None)` when the organization does not exist, else whether the member
/// is new.
pub fn create_if_missing(organization_id: &str, member_id: &str) -> MfaResult<Option<bool>> {
    let locked = spi::execute(
        "SELECT FROM mfa.organizations WHERE organization_id = $1 FOR KEY SHARE",
        &[organization_id.into()],
    )?;
    if locked == 0 {
        return Ok(None);
    }
    let created = spi::execute(
        "INSERT INTO mfa.members (organization_id, member_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[organization_id.into(), member_id.into()],
    )?;
    Ok(Some(created > 0))
}

/// The settings `member_upsert` changes (`None` keeps a value).
pub struct SettingsChange<'a> {
    /// The new phone, when it differs from the stored one.
    pub new_phone: Option<&'a ParsedPhone>,
    pub mfa_enrolled: Option<bool>,
    pub is_breakglass: Option<bool>,
    pub default_mfa_method: Option<&'a str>,
    /// Set as given (an import); otherwise a new number is unverified.
    pub mfa_phone_number_verified: Option<bool>,
}

/// Writes `change` and its audit event: `member_settings_update.head.sql`, `audited.sql`,
/// `member_settings_update.tail.sql`.
pub fn update_settings(event: &Event, change: &SettingsChange) -> MfaResult<()> {
    const STATEMENT: &str = concat!(
        include_str!("sql/member_settings_update.head.sql"),
        include_str!("sql/audited.sql"),
        include_str!("sql/member_settings_update.tail.sql")
    );
    let mut args = Vec::from(event.args());
    args.extend([
        change.new_phone.is_some().into(),
        change.new_phone.map(|p| p.e164.as_str()).into(),
        change.new_phone.map(|p| p.country_code.as_str()).into(),
        change.mfa_enrolled.into(),
        change.is_breakglass.into(),
        change.default_mfa_method.into(),
        change.new_phone.map(|_| ids::new_uuid()).into(),
        change.mfa_phone_number_verified.into(),
    ]);
    spi::execute(STATEMENT, &args)?;
    Ok(())
}

/// Links a first phone number to the member, unverified.
pub fn link_phone(member: &Member, phone: &ParsedPhone) -> MfaResult<()> {
    spi::execute(
        "UPDATE mfa.members SET mfa_phone_number = $3, mfa_phone_country = $4, phone_id = $5::uuid,
                mfa_phone_number_verified = false, updated_at = now()
          WHERE organization_id = $1 AND member_id = $2",
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            phone.e164.as_str().into(),
            phone.country_code.as_str().into(),
            ids::new_uuid().into(),
        ],
    )?;
    Ok(())
}

/// Removes the member's phone number and its live code; SMS stops being their default method.
pub fn remove_phone(member: &Member) -> MfaResult<()> {
    spi::execute(
        "WITH killed_code AS (DELETE FROM mfa.sms_codes WHERE organization_id = $1 AND member_id = $2)
         UPDATE mfa.members SET mfa_phone_number = NULL, mfa_phone_country = NULL, phone_id = NULL,
                mfa_phone_number_verified = false,
                default_mfa_method = NULLIF(default_mfa_method, 'sms_otp'),
                updated_at = now()
          WHERE organization_id = $1 AND member_id = $2",
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
        ],
    )?;
    Ok(())
}

/// Removes the member's authenticator app and its recovery codes; TOTP stops being their default
/// method.
pub fn remove_totp(member: &Member) -> MfaResult<()> {
    // The recovery codes stay while a passkey stands behind them.
    spi::execute(
        "WITH app AS (DELETE FROM mfa.totp_registrations WHERE organization_id = $1 AND member_id = $2),
              codes AS (DELETE FROM mfa.recovery_codes WHERE organization_id = $1 AND member_id = $2
                                AND $3 = 0)
         UPDATE mfa.members SET default_mfa_method = NULLIF(default_mfa_method, 'totp'), updated_at = now()
          WHERE organization_id = $1 AND member_id = $2",
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            member.webauthn_registrations.into(),
        ],
    )?;
    Ok(())
}

/// What a reset removed besides the factors the member had.
pub struct Reset {
    pub recovery_codes: i64,
}

/// Removes every factor of the member (`member_mfa_reset.sql`); their logins go after it
/// (`sessions::end_logins`).
pub fn reset_mfa(member: &Member) -> MfaResult<Reset> {
    let reset = spi::typed_row(
        include_str!("sql/member_mfa_reset.sql"),
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            spi::clock().into(),
        ],
        |row| {
            Ok(Reset {
                recovery_codes: row.get_by_name::<i64, _>("recovery_codes")?.unwrap_or(0),
            })
        },
    )?;
    Ok(reset.expect("one row"))
}

/// Deletes the member; their factors, codes, pending messages and logins go with them (foreign
/// keys ON DELETE CASCADE).
pub fn delete(member: &Member) -> MfaResult<()> {
    spi::execute(
        "DELETE FROM mfa.members WHERE organization_id = $1 AND member_id = $2",
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The text between a statement's first `SELECT` and its first `FROM`.
    fn columns(statement: &str) -> &str {
        let start = statement.find("SELECT ").expect("a SELECT");
        let end = statement[start..].find("\n  FROM").expect("a FROM") + start;
        &statement[start..end]
    }

    /// The names of a statement's columns (its select list's aliases or column names).
    fn names(statement: &str) -> Vec<String> {
        columns(statement)
            .trim_start_matches("SELECT ")
            .split(",\n")
            .flat_map(|line| line.split(", "))
            .map(|column| {
                let column = column.trim();
                let name = column.rsplit(" AS ").next().unwrap_or(column);
                name.rsplit('.').next().unwrap_or(name).to_string()
            })
            .collect()
    }

    /// `read_member` reads the three loads by column name: they return the same columns, and the
    /// two that do not read the SMS code return it as NULLs.
    #[test]
    fn every_load_returns_the_same_columns() {
        let read = include_str!("sql/member_read.sql");
        let lock = include_str!("sql/member_lock.sql");
        let with_code = include_str!("sql/member_lock_with_sms_code.sql");
        assert_eq!(columns(read), columns(lock));
        assert_eq!(names(read), names(with_code));
        assert_eq!(names(read).len(), 33);
        assert!(!read.contains("mfa.sms_codes") && !lock.contains("mfa.sms_codes"));
    }
}
