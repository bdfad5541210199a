//! The intermediate session token every factor presents: find the login it stands for (and check
//! it is this member's), or require one that already carries a second factor.

use crate::core::crypto::token_hash;
use crate::core::factor::second_factors;
use crate::error::{err, ErrorType, MfaError, MfaResult};
use crate::store::cluster;
use crate::store::members::Member;
use crate::store::sessions::{self, IntermediateSession};

pub fn token_not_found() -> MfaError {
    MfaError::new(
        ErrorType::IntermediateSessionNotFound,
        "The intermediate session token is unknown, expired or already used.",
    )
}

/// Finds the live login `token` belongs to and checks it is this member's. A token of another
/// organization is `invalid_intermediate_session_token_for_organization`; an unknown, expired or
/// consumed one, or one of another member, is `intermediate_session_not_found`. The row stays
/// locked until the end of the transaction.
pub fn find_for(
    organization_id: &str,
    member_id: &str,
    token: &str,
) -> MfaResult<IntermediateSession> {
    match sessions::find(organization_id, member_id, token_hash(token))? {
        Some(found) if found.live => Ok(found),
        Some(_) => Err(token_not_found()),
        None => Err(token_unknown_here(organization_id, token)?),
    }
}

/// The error for a token the member's organization does not hold for them: another
/// organization's, or unknown (or another member's). On Citus a call runs on the node of its
/// organization (delegated, or in the session gate on a shard), where a question across
/// organizations is a nested distributed query Citus refuses: there a token of another
/// organization is reported as unknown.
pub fn token_unknown_here(organization_id: &str, token: &str) -> MfaResult<MfaError> {
    Ok(
        if !cluster::on_citus()
            && sessions::of_another_organization(organization_id, token_hash(token))?
        {
            MfaError::new(
                ErrorType::InvalidIntermediateSessionTokenForOrganization,
                "The intermediate session token belongs to another organization.",
            )
        } else {
            token_not_found()
        },
    )
}

/// `find_for` the member, for an optional token argument.
pub fn find_optional(
    member: &Member,
    token: Option<&str>,
) -> MfaResult<Option<IntermediateSession>> {
    token
        .map(|t| find_for(&member.organization_id, &member.member_id, t))
        .transpose()
}

/// Whether a login carries a second factor proven with it.
pub fn has_second_factor(session: &IntermediateSession) -> bool {
    !second_factors(&session.factors).is_empty()
}

/// Adding a factor when the member already has an active one needs a token that already carries
/// an MFA factor: otherwise whoever knows the password could enroll their own phone or app.
pub fn require_step_up_for_new_factor(member: &Member, token: Option<&str>) -> MfaResult<()> {
    if !member.has_active_factor() {
        return Ok(());
    }
    match find_optional(member, token)? {
        Some(session) if has_second_factor(&session) => Ok(()),
        _ => err(
            ErrorType::InsufficientFactors,
            "The member already has an active MFA factor: adding another needs an intermediate session token that carries an MFA factor.",
        ),
    }
}
