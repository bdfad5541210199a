//! Loading a member for a call: the stored row with their organization's policy and factors, the
//! attempt ledger's live copy of their lockout state over the stored one, and the order in which
//! a call's locks are taken (the member's row first, then an SMS number block's).

use crate::core::phone::ParsedPhone;
use crate::core::policy::{validate_id, IdKind, OrganizationPolicy};
use crate::error::MfaResult;
use crate::server::ledger;
use crate::store::members::{self, Member, Statement};
use crate::store::sms;
use pgrx::datum::TimestampWithTimeZone;

/// How a member is loaded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Load<'a> {
    /// A snapshot read.
    Read,
    /// The member's row and their authenticator app stay locked until the end of the transaction,
    /// which serializes attempts, sends and changes on one member.
    Lock,
    /// `Lock`, for an SMS code attempt: the live SMS code is read and locked too.
    LockWithSmsCode,
    /// `Lock`, then the SMS sending lock of the number `to` (or of the member's own number when
    /// `None`), in this order on every path: see `store::sms::read_send_limits`.
    LockForSending { to: Option<&'a str> },
}

/// The member's entry in the attempt ledger.
pub fn ledger_key(member: &Member) -> MfaResult<ledger::MemberKey> {
    ledger::MemberKey::new(
        &member.organization_id,
        &member.member_id,
        member.created_at.into_inner(),
    )
}

/// The member with the attempt ledger's copy of their lockout state (the durable row's when
/// the ledger knows nothing of them, or was not preloaded), and the lock fields it shows.
pub fn with_live_attempts(mut member: Member) -> Member {
    if ledger::is_available() {
        if let Ok(key) = ledger_key(&member) {
            if let Ok(live) = ledger::current(&key, &member.attempts) {
                member.attempts = live;
            }
        }
    }
    let now = unsafe { pgrx::pg_sys::GetCurrentTimestamp() };
    member.is_locked = member.attempts.is_locked(now);
    let time = |t: i64| TimestampWithTimeZone::try_from(t).ok();
    if member.is_locked {
        member.lock_created_at = time(member.attempts.lock_created_at);
        member.lock_expires_at = time(member.attempts.lock_expires_at);
    }
    member
}

/// Validates both ids and loads the member with their organization's policy and their factors,
/// in one statement (two when sending: the number block's lock follows the member's).
pub fn load_with_policy(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    load: Load,
) -> MfaResult<(Member, OrganizationPolicy)> {
    let organization_id = validate_id(organization_id, IdKind::Organization)?;
    let member_id = validate_id(member_id, IdKind::Member)?;
    let statement = match load {
        Load::Read => Statement::Read,
        Load::Lock | Load::LockForSending { .. } => Statement::Lock,
        Load::LockWithSmsCode => Statement::LockWithSmsCode,
    };
    let (member, policy) = members::load_with_policy(organization_id, member_id, statement)?
        .ok_or_else(|| members::not_found(organization_id, member_id))?;
    let member = with_live_attempts(member);
    if let Load::LockForSending { to } = load {
        if let Some(number) = to.or(member.mfa_phone_number.as_deref()) {
            sms::lock_number_block(ParsedPhone::rate_limit_prefix_of(number))?;
        }
    }
    Ok((member, policy))
}

/// `load_with_policy` for the callers that need only the member.
pub fn load(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    how: Load,
) -> MfaResult<Member> {
    Ok(load_with_policy(organization_id, member_id, how)?.0)
}
