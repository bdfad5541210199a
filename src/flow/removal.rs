//! Who may remove a member's factor: `mfa_admin` (the support desk, on its own authority), or the
//! member through the application, with a token that carries a second factor proven in it — a
//! login's before its session exists, or a step-up's. Without that rule an open session (or
//! whoever holds the application's role) could swap the victim's factors.

use crate::core::policy::{MfaPolicy, OrganizationPolicy};
use crate::error::{err, ErrorType, MfaResult};
use crate::flow::token;
use crate::store::members::Member;
use crate::store::spi;

/// Who removes a factor.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Remover {
    Administrator,
    /// The member, proven by a fresh second factor.
    Member,
}

/// Who removed it, for the audit trail.
pub fn by(remover: Remover) -> &'static str {
    match remover {
        Remover::Administrator => "mfa_admin",
        Remover::Member => "member",
    }
}

/// The caller's authority to remove one of `member`'s factors: `mfa_admin`'s own, or a live
/// token of the member's that carries a second factor proven with it.
pub fn authorize(member: &Member, intermediate_session_token: Option<&str>) -> MfaResult<Remover> {
    if spi::caller_is_member_of("mfa_admin")? {
        return Ok(Remover::Administrator);
    }
    match token::find_optional(member, intermediate_session_token)? {
        Some(session) if token::has_second_factor(&session) => Ok(Remover::Member),
        _ => err(
            ErrorType::InsufficientFactors,
            "Removing a factor needs an intermediate session token that carries a second factor proven with it (a login's before its session exists, or step_up_start's), or mfa_admin.",
        ),
    }
}

/// A member may not remove the last factor their organization requires them to have: that is
/// the support desk's decision (`mfa_admin`, or `member_reset_mfa`).
pub fn refuse_last_factor(
    remover: Remover,
    member: &Member,
    org: &OrganizationPolicy,
    factor_left: bool,
) -> MfaResult<()> {
    if remover == Remover::Member
        && !factor_left
        && org.mfa_policy == MfaPolicy::RequiredForAll
        && !member.is_breakglass
    {
        return err(
            ErrorType::CannotRemoveLastMfaFactor,
            "This is the member's last MFA factor and their organization requires MFA: only mfa_admin removes it.",
        );
    }
    Ok(())
}
