//! The session gate's decisions: a new session's (the token consumed, the organization's policy
//! applied), a step-up's (the token's factors merged into the session's), the factors sealed to
//! the session's organization and member, and which sealed factors verify. `api::gate` holds the
//! triggers that call them and the bookkeeping that ties a BEFORE trigger's decision to its row.

use crate::core::crypto::token_hash;
use crate::core::factor::{remembered_device_id, second_factors};
use crate::core::policy::{self, validate_id, IdKind};
use crate::core::session_gate::{
    first_authentications, merge_factors, GuardedColumns, SessionEvent,
};
use crate::core::session_seal;
use crate::error::{err, ErrorType, MfaError, MfaResult};
use crate::flow::{keys, token};
use crate::store::audit::Request;
use crate::store::members;
use crate::store::remembered_devices;
use crate::store::sessions::{self, consume_step_up, Consumed, StepUp};
use serde_json::Value;

/// Seals each factor to the session's organization and member (see `core::session_seal`).
pub fn sealed(
    organization_id: &str,
    member_id: &str,
    factors: Vec<Value>,
) -> MfaResult<Vec<Value>> {
    let keys = keys::current()?;
    Ok(factors
        .into_iter()
        .map(|factor| session_seal::seal(&keys, organization_id, member_id, factor))
        .collect())
}

/// A step-up the gate allowed: the session's merged factors and the event its row owes.
pub struct SteppedUp {
    pub factors: Value,
    pub event: SessionEvent,
}

/// A step-up: the token must be this member's, unexpired, unused and carry a second factor proven
/// with it. The token is consumed; the event is the caller's to write (`record_session`).
pub fn step_up(table: &str, old: &GuardedColumns, token: &str) -> Result<SteppedUp, MfaError> {
    let organization_id = old.organization_id.as_deref().unwrap_or_default();
    let member_id = old.member_id.as_deref().unwrap_or_default();
    let consumed = consume_step_up(StepUp {
        organization_id,
        member_id,
        token_hash: token_hash(token),
    })?;
    let Some(Consumed { factors, story }) = consumed else {
        // Which of the token's problems it is, for the message.
        let problem = token::find_for(organization_id, member_id, token)
            .err()
            .unwrap_or_else(token::token_not_found);
        return Err(MfaError::new(
            ErrorType::InsufficientFactors,
            format!("{}: {}", problem.error_type, problem.message),
        ));
    };
    if second_factors(&factors).is_empty() {
        return Err(MfaError::new(
            ErrorType::InsufficientFactors,
            "A step-up needs a second factor proven with its token.",
        ));
    }
    // A factor proven again keeps its first authentication in the session (Stytch's created_at),
    // from the session's factors whose seal verifies, under the new seal.
    let factors = first_authentications(
        &verified_factors(organization_id, member_id, &old.factors),
        factors,
    );
    let factors = sealed(organization_id, member_id, factors)?;
    Ok(SteppedUp {
        factors: merge_factors(&old.factors, &factors),
        event: SessionEvent {
            request_id: Request::new().id,
            organization_id: organization_id.to_string(),
            member_id: member_id.to_string(),
            step_up_table: Some(table.to_string()),
            story,
        },
    })
}

/// A session the gate allowed: the request that decided it, the login's factors and the event
/// its session owes.
pub struct Allowed {
    pub request: Request,
    pub factors: Vec<Value>,
    pub event: SessionEvent,
}

/// The decision of the session gate for a new session: passes (consuming the token) or fails
/// with `insufficient_factors`.
///
/// The token is consumed first, the policy decided after: a denial is an error, which undoes the
/// consumption with the caller's (sub)transaction. Callers must raise it. The event is the
/// caller's to write (`record_session`): the guard's triggers when the session row is written.
pub fn decide(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    token: Option<&str>,
) -> MfaResult<Allowed> {
    let request = Request::new();
    let organization_id = validate_id(organization_id, IdKind::Organization)?;
    let member_id = validate_id(member_id, IdKind::Member)?;
    // The member's side of the decision and the token consumed, in one statement. Expiry is
    // decided on the clock, not at the start of the caller's transaction.
    let inputs = sessions::consume_for_session(organization_id, member_id, token.map(token_hash))?
        .ok_or_else(|| members::not_found(organization_id, member_id))?;
    let insufficient = |e: MfaError| {
        MfaError::new(
            ErrorType::InsufficientFactors,
            format!("{}: {}", e.error_type, e.message),
        )
    };
    let decision = (|| -> MfaResult<(Vec<Value>, Value)> {
        let Some(token) = token else {
            return err(
                ErrorType::InsufficientFactors,
                "A session needs the login's intermediate session token.",
            );
        };
        let Some(Consumed { factors, story }) = inputs.consumed else {
            // Which of the token's problems it is, for the message.
            token::find_for(organization_id, member_id, token).map_err(insufficient)?;
            return Err(insufficient(token::token_not_found()));
        };
        if !inputs.has_primary {
            return err(
                ErrorType::InsufficientFactors,
                "A step-up token carries no primary factor: it raises an existing session's assurance and cannot create a session.",
            );
        }
        // A remembered device counts while it is still honoured: not revoked, unexpired and
        // its organization still remembers devices (decided now, not when the login started).
        let remembered_device = match remembered_device_id(&factors) {
            Some(device_id) if inputs.policy.remembers_devices() => {
                remembered_devices::live(organization_id, member_id, device_id)?
            }
            _ => false,
        };
        policy::session_allowed(
            &inputs.policy,
            inputs.mfa_enrolled,
            inputs.is_breakglass,
            &second_factors(&factors),
            remembered_device,
        )?;
        // A device that no longer counts is not recorded as a factor of the session either.
        let mut factors = factors;
        if !remembered_device {
            factors.retain(|f| f["type"] != "remembered_device");
        }
        Ok((factors, story))
    })();
    match decision {
        Ok((factors, story)) => Ok(Allowed {
            event: SessionEvent {
                request_id: request.id.clone(),
                organization_id: organization_id.to_string(),
                member_id: member_id.to_string(),
                step_up_table: None,
                story,
            },
            request,
            factors,
        }),
        Err(denied) => {
            // The raised error rolls the caller's transaction back, consumption included; the
            // denial is logged so it is not lost.
            pgrx::log!(
                "mfa: session denied (request {}) for member {:?} of organization {:?}: {}",
                request.id,
                member_id,
                organization_id,
                denied.error_type
            );
            Err(denied)
        }
    }
}

/// Writes the event of a session the gate decided, in the caller's transaction.
pub fn record_session(event: SessionEvent) -> MfaResult<()> {
    sessions::write_session_event(event)
}

/// Writes the event of a decision whose session row was never written: its token was consumed, so
/// its login (or step-up) ends there.
pub fn record_given_up(event: SessionEvent) -> MfaResult<()> {
    sessions::write_session_given_up(event)
}

/// The factors of a session's factors column whose seal verifies for this organization and
/// member, each key looked up once.
pub fn verified_factors(organization_id: &str, member_id: &str, factors: &Value) -> Vec<Value> {
    let mut looked_up: Vec<(String, Option<crate::core::crypto::Keys>)> = Vec::new();
    session_seal::verified(organization_id, member_id, factors, |fingerprint| {
        if let Some((_, known)) = looked_up.iter().find(|(f, _)| f == fingerprint) {
            return known.clone();
        }
        let known = keys::by_fingerprint(fingerprint).ok();
        looked_up.push((fingerprint.to_string(), known.clone()));
        known
    })
}
