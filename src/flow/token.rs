//! The intermediate session token every factor presents: find the login it stands for (and check
//! it is this member's), or require one that already carries a second factor.

use crate::core::crypto::{token_hash, LoginToken};
use crate::core::factor::second_factors;
use crate::error::{err, ErrorType, MfaError, MfaResult};
use crate::flow::keys;
use crate::store::members::Member;
use crate::store::sessions::{self, IntermediateSession};

pub fn token_not_found() -> MfaError {
    MfaError::new(
        ErrorType::IntermediateSessionNotFound,
        "The intermediate session token is unknown, expired or already used.",
    )
}

/// A new intermediate session token of `organization_id`, made with the current key.
pub fn new_login_token(organization_id: &str) -> MfaResult<String> {
    Ok(keys::current()?.new_login_token(organization_id))
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
    refuse_unless_of(organization_id, token)?;
    match sessions::find(organization_id, member_id, token_hash(token))? {
        Some(found) if found.live => Ok(found),
        _ => Err(token_not_found()),
    }
}

/// What the token itself says, before any lookup: the error for a token that is not this
/// organization's (made for another one, or not by any key of this server). A token of an
/// earlier version (43 characters, no organization in it) is left to the lookup.
pub fn refuse_unless_of(organization_id: &str, token: &str) -> MfaResult<()> {
    if token.len() == LEGACY_TOKEN_LEN {
        return Ok(());
    }
    match keys::find_map(|keys| keys.login_token_of(token, organization_id))? {
        Some(LoginToken::OfThisOrganization) => Ok(()),
        Some(LoginToken::OfAnotherOrganization) => Err(MfaError::new(
            ErrorType::InvalidIntermediateSessionTokenForOrganization,
            "The intermediate session token belongs to another organization.",
        )),
        None => Err(token_not_found()),
    }
}

/// The length of the tokens made before they named their organization (256 random bits,
/// base64url): such a token lives `mfa.intermediate_session_minutes` past an upgrade.
const LEGACY_TOKEN_LEN: usize = 43;

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
