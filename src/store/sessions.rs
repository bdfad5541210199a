//! Intermediate sessions (a login or a step-up in progress, found by its token's hash) and the
//! statements of the session gate.

use crate::core::policy::OrganizationPolicy;
use crate::error::MfaResult;
use crate::store::audit::Event;
use crate::store::jsonb::Jsonb;
use crate::store::members::read_policy;
use crate::store::spi;
use pgrx::JsonB;
use serde_json::Value;

/// A login in progress as stored.
#[derive(Debug, Clone)]
pub struct IntermediateSession {
    pub token_hash: Vec<u8>,
    /// The factors proven with it, in Stytch's shape.
    pub factors: Vec<Value>,
    /// Not expired (on the clock) and not consumed.
    pub live: bool,
    /// Not expired (on the clock), consumed or not: a login whose session exists can still
    /// remember its device (a consumed token keeps its row only where devices are remembered).
    pub unexpired: bool,
}

fn factor_list(factors: Option<JsonB>) -> Vec<Value> {
    match factors {
        Some(JsonB(Value::Array(factors))) => factors,
        _ => Vec::new(),
    }
}

/// The member's session whose token hashes to `token_hash`, locked until the end of the
/// transaction. Looked up within the organization: on Citus a locking statement must name the
/// organization to reach one shard.
pub fn find(
    organization_id: &str,
    member_id: &str,
    token_hash: Vec<u8>,
) -> MfaResult<Option<IntermediateSession>> {
    spi::typed_row(
        "SELECT factors || proven_factors AS factors,
                expires_at > clock_timestamp() AS unexpired, consumed_at IS NULL AS unconsumed
           FROM mfa.intermediate_sessions
          WHERE organization_id = $1 AND member_id = $2 AND token_hash = $3 FOR UPDATE",
        &[
            organization_id.into(),
            member_id.into(),
            token_hash.clone().into(),
        ],
        |row| {
            let unexpired = row.get_by_name::<bool, _>("unexpired")?.unwrap_or(false);
            Ok(IntermediateSession {
                token_hash: token_hash.clone(),
                factors: factor_list(row.get_by_name::<JsonB, _>("factors")?),
                unexpired,
                live: unexpired && row.get_by_name::<bool, _>("unconsumed")?.unwrap_or(false),
            })
        },
    )
}

/// Whether a token the member's organization does not know is another organization's (asked
/// only then, without a lock, and never on Citus: see `flow::token::token_unknown_here`).
pub fn of_another_organization(organization_id: &str, token_hash: Vec<u8>) -> MfaResult<bool> {
    Ok(spi::typed_row(
        "SELECT EXISTS (SELECT FROM mfa.intermediate_sessions
                         WHERE token_hash = $2 AND organization_id <> $1)",
        &[organization_id.into(), token_hash.into()],
        |row| row.get::<bool>(1),
    )?
    .flatten()
    .unwrap_or(false))
}

/// The arguments of `session_start.sql`.
pub struct NewSession<'a> {
    pub organization_id: &'a str,
    pub member_id: &'a str,
    pub token_hash: Vec<u8>,
    /// The primary factor's method and its Stytch JSON; `None` for a step-up.
    pub primary: Option<(&'a str, Value)>,
    pub locale: &'a str,
    pub lifetime_minutes: i32,
    /// The remembered device the login presented (Stytch JSON), recorded as proven with it.
    pub remembered_device: Option<Value>,
    /// Its audit event, written by the same statement.
    pub event: Event<'a>,
}

pub fn start(session: NewSession) -> MfaResult<()> {
    let (method, factor) = match session.primary {
        Some((method, factor)) => (Some(method), Some(Jsonb(factor))),
        None => (None, None),
    };
    spi::execute(
        include_str!("sql/session_start.sql"),
        &[
            session.organization_id.into(),
            session.token_hash.into(),
            session.member_id.into(),
            method.into(),
            session.locale.into(),
            factor.into(),
            session.lifetime_minutes.into(),
            session.event.request_id.into(),
            session.event.event_type.into(),
            Jsonb(session.event.details).into(),
            session.remembered_device.map(Jsonb).into(),
            spi::clock().into(),
        ],
    )?;
    Ok(())
}

/// What `session_decide.sql` found: the member's policy inputs and, when the token was consumed,
/// the login's factors.
pub struct GateInputs {
    pub mfa_enrolled: bool,
    pub is_breakglass: bool,
    pub policy: OrganizationPolicy,
    /// `None`: nothing was consumed (no token, or not a live token of this member).
    pub consumed_factors: Option<Vec<Value>>,
    /// The consumed token was a login's (it carries a primary factor), not a step-up's.
    pub has_primary: bool,
}

/// Consumes the login's token for a new session and writes `session.allowed` (undone with the
/// caller's (sub)transaction when the policy then refuses); `None` when there is no such member.
/// Two statements in the caller's transaction, each one router query on Citus:
/// `session_decide.sql` reads the member's inputs and consumes the token, then, when it consumed
/// one, `session_decide.audited.sql` writes the event.
pub fn consume_for_session(
    organization_id: &str,
    member_id: &str,
    token_hash: Option<Vec<u8>>,
    request_id: &str,
) -> MfaResult<Option<GateInputs>> {
    let found = spi::typed_row(
        include_str!("sql/session_decide.sql"),
        &[
            organization_id.into(),
            member_id.into(),
            token_hash.into(),
            spi::clock().into(),
        ],
        |row| {
            Ok((
                GateInputs {
                    mfa_enrolled: row.get_by_name::<bool, _>("mfa_enrolled")?.unwrap_or(false),
                    is_breakglass: row
                        .get_by_name::<bool, _>("is_breakglass")?
                        .unwrap_or(false),
                    policy: read_policy(row)?,
                    consumed_factors: None,
                    has_primary: row.get_by_name::<bool, _>("has_primary")?.unwrap_or(false),
                },
                row.get_by_name::<JsonB, _>("factors")?,
            ))
        },
    )?;
    let Some((mut inputs, consumed)) = found else {
        return Ok(None);
    };
    if let Some(JsonB(factors)) = consumed {
        spi::execute(
            include_str!("sql/session_decide.audited.sql"),
            &[
                organization_id.into(),
                member_id.into(),
                Jsonb(factors.clone()).into(),
                request_id.into(),
            ],
        )?;
        inputs.consumed_factors = Some(factor_list(Some(JsonB(factors))));
    }
    Ok(Some(inputs))
}

/// The arguments of `step_up_consume.sql`.
pub struct StepUp<'a> {
    pub organization_id: &'a str,
    pub member_id: &'a str,
    pub token_hash: Vec<u8>,
    pub request_id: &'a str,
    pub session_table: &'a str,
}

/// Consumes a step-up token and returns the factors proven with it, writing `session.stepped_up`
/// (`step_up_consume.sql`, then `step_up_consume.audited.sql`, in the caller's transaction);
/// `None` when the token is not this member's, expired or used (nothing is written then).
pub fn consume_step_up(step_up: StepUp) -> MfaResult<Option<Vec<Value>>> {
    let consumed = spi::typed_row(
        include_str!("sql/step_up_consume.sql"),
        &[
            step_up.organization_id.into(),
            step_up.member_id.into(),
            step_up.token_hash.into(),
            spi::clock().into(),
        ],
        |row| row.get::<JsonB>(1),
    )?;
    let Some(JsonB(factors)) = consumed.flatten() else {
        return Ok(None);
    };
    spi::execute(
        include_str!("sql/step_up_consume.audited.sql"),
        &[
            step_up.organization_id.into(),
            step_up.member_id.into(),
            Jsonb(factors.clone()).into(),
            step_up.request_id.into(),
            step_up.session_table.into(),
        ],
    )?;
    Ok(Some(factor_list(Some(JsonB(factors)))))
}

/// Whether the trigger `trigger_oid`, called with `columns`, is one of a guard's own (see
/// `gate_trigger_registered.sql`). On Citus a shard's copies of the guard's triggers are
/// registered on the shard's node when they are created (`mfa._session_guard_register_shards`).
pub fn gate_trigger_registered(trigger_oid: u32, columns: Vec<String>) -> MfaResult<bool> {
    Ok(spi::typed_row(
        include_str!("sql/gate_trigger_registered.sql"),
        &[pgrx::pg_sys::Oid::from(trigger_oid).into(), columns.into()],
        |row| row.get::<bool>(1),
    )?
    .flatten()
    .unwrap_or(false))
}

/// Ends the member's logins in progress (and the consumed ones kept for remembering devices):
/// what they proved may have been proven with a factor that is gone.
pub fn end_logins(organization_id: &str, member_id: &str) -> MfaResult<usize> {
    spi::execute(
        "DELETE FROM mfa.intermediate_sessions WHERE organization_id = $1 AND member_id = $2",
        &[organization_id.into(), member_id.into()],
    )
}
