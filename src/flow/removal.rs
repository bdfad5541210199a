//! Who may remove a member's factor: `mfa_admin` (the support desk, on its own authority), or the
//! member through the application, with a token that carries a second factor proven in it — a
//! login's before its session exists, or a step-up's. Without that rule an open session (or
//! whoever holds the application's role) could swap the victim's factors.

use crate::core::policy::{MfaMethod, MfaPolicy, OrganizationPolicy};
use crate::error::{err, ErrorType, MfaResult};
use crate::flow::{devices, token};
use crate::store::audit::Request;
use crate::store::members::Member;
use crate::store::{sessions, spi};

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

/// What is being removed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Removing {
    Totp,
    Phone,
    /// One of the member's passkeys.
    Passkey,
}

/// Whether the member keeps a factor the organization lets them use once `removing` is gone.
fn allowed_factor_left(member: &Member, org: &OrganizationPolicy, removing: Removing) -> bool {
    let allows = |method| org.allows(method, member.is_breakglass);
    let totp = removing != Removing::Totp && member.totp_registration_id.is_some();
    let phone = removing != Removing::Phone && member.mfa_phone_number_verified;
    let passkeys = member.webauthn_registrations - i32::from(removing == Removing::Passkey) > 0;
    (totp && allows(MfaMethod::Totp))
        || (phone && allows(MfaMethod::SmsOtp))
        || (passkeys && allows(MfaMethod::Webauthn))
}

/// A member may not remove the last factor their organization requires them to have — the
/// last one it lets them use: that is the support desk's decision (`mfa_admin`, or
/// `member_reset_mfa`). Removing what is not an active factor (a pending app, an unverified
/// phone) is always theirs.
pub fn refuse_last_factor(
    remover: Remover,
    member: &Member,
    org: &OrganizationPolicy,
    removing: Removing,
) -> MfaResult<()> {
    let removes_a_factor = match removing {
        Removing::Totp => member.totp_registration_id.is_some(),
        Removing::Phone => member.mfa_phone_number_verified,
        Removing::Passkey => true,
    };
    if remover == Remover::Member
        && removes_a_factor
        && !allowed_factor_left(member, org, removing)
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

/// What goes with a factor removed or a phone replaced: the member's remembered devices, and
/// their logins in progress, whose proof may have been that factor.
pub fn factor_gone(request: &Request, member: &Member, reason: &str) -> MfaResult<()> {
    devices::revoke_all(request, member, reason)?;
    sessions::end_logins(&member.organization_id, &member.member_id, None)?;
    Ok(())
}
