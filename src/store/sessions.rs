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
use std::sync::LazyLock;

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

/// Deletes up to `at_most` expired intermediate sessions, recording the logins among them that
/// no session consumed as `login.abandoned` (`logins_expired_reap.sql`); how many went.
pub fn reap_expired(at_most: i64) -> MfaResult<i64> {
    static STATEMENT: LazyLock<String> =
        LazyLock::new(|| with_abandoned_logins(include_str!("sql/logins_expired_reap.sql")));
    Ok(
        spi::typed_row(&STATEMENT, &[spi::clock().into(), at_most.into()], |row| {
            row.get_by_name::<i64, _>("gone")
        })?
        .flatten()
        .unwrap_or(0),
    )
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
    /// The request that starts it.
    pub request_id: &'a str,
    /// Its audit event (a step-up's start), written by the same statement; a login has none
    /// until it ends.
    pub event: Option<Event<'a>>,
}

pub fn start(session: NewSession) -> MfaResult<()> {
    let (method, factor) = match session.primary {
        Some((method, factor)) => (Some(method), Some(Jsonb(factor))),
        None => (None, None),
    };
    static STATEMENT: LazyLock<String> =
        LazyLock::new(|| with_abandoned_logins(include_str!("sql/session_start.sql")));
    spi::execute(
        &STATEMENT,
        &[
            session.organization_id.into(),
            session.token_hash.into(),
            session.member_id.into(),
            method.into(),
            session.locale.into(),
            factor.into(),
            session.lifetime_minutes.into(),
            session.request_id.into(),
            session.event.as_ref().map(|e| e.event_type).into(),
            session.event.map(|e| Jsonb(e.details)).into(),
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
pub fn consume_for_session(
    organization_id: &str,
    member_id: &str,
    token_hash: Option<Vec<u8>>,
    request_id: &str,
) -> MfaResult<Option<GateInputs>> {
    spi::typed_row(
        include_str!("sql/session_decide.sql"),
        &[
            organization_id.into(),
            member_id.into(),
            token_hash.into(),
            request_id.into(),
            spi::clock().into(),
        ],
        |row| {
            Ok(GateInputs {
                mfa_enrolled: row.get_by_name::<bool, _>("mfa_enrolled")?.unwrap_or(false),
                is_breakglass: row
                    .get_by_name::<bool, _>("is_breakglass")?
                    .unwrap_or(false),
                policy: read_policy(row)?,
                consumed_factors: row
                    .get_by_name::<JsonB, _>("factors")?
                    .map(|f| factor_list(Some(f))),
                has_primary: row.get_by_name::<bool, _>("has_primary")?.unwrap_or(false),
            })
        },
    )
}

/// The arguments of `step_up_consume.sql`.
pub struct StepUp<'a> {
    pub organization_id: &'a str,
    pub member_id: &'a str,
    pub token_hash: Vec<u8>,
    pub request_id: &'a str,
    pub session_table: &'a str,
}

/// Consumes a step-up token and returns the factors proven with it; `None` when the token is not
/// this member's, expired or used (nothing is written then).
pub fn consume_step_up(step_up: StepUp) -> MfaResult<Option<Vec<Value>>> {
    let factors = spi::typed_row(
        include_str!("sql/step_up_consume.sql"),
        &[
            step_up.organization_id.into(),
            step_up.member_id.into(),
            step_up.token_hash.into(),
            step_up.request_id.into(),
            step_up.session_table.into(),
            spi::clock().into(),
        ],
        |row| row.get::<JsonB>(1),
    )?;
    Ok(factors.flatten().map(|f| factor_list(Some(f))))
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
/// what they proved may have been proven with a factor that is gone (`logins_end.sql`). Returns
/// how many went.
pub fn end_logins(organization_id: &str, member_id: &str) -> MfaResult<i64> {
    static STATEMENT: LazyLock<String> =
        LazyLock::new(|| with_abandoned_logins(include_str!("sql/logins_end.sql")));
    Ok(spi::typed_row(
        &STATEMENT,
        &[organization_id.into(), member_id.into()],
        |row| row.get_by_name::<i64, _>("gone"),
    )?
    .flatten()
    .unwrap_or(0))
}

/// `statement` with the CTE that records the logins it gives up (`logins_abandoned.sql`) where
/// its `-- logins_abandoned.sql` line stands, after its other CTEs: every statement that deletes
/// logins records those that no session consumed, the same way.
fn with_abandoned_logins(statement: &str) -> String {
    const MARKER: &str = "-- logins_abandoned.sql\n";
    assert_eq!(statement.matches(MARKER).count(), 1, "{statement}");
    statement.replace(
        MARKER,
        &format!("{}\n", include_str!("sql/logins_abandoned.sql").trim_end()),
    )
}

#[cfg(test)]
mod tests {
    /// Every statement that deletes logins records those given up, its abandoned CTE the last
    /// before its main statement.
    #[test]
    fn each_statement_that_ends_logins_records_them() {
        for file in [
            include_str!("sql/session_start.sql"),
            include_str!("sql/logins_end.sql"),
            include_str!("sql/logins_expired_reap.sql"),
        ] {
            let statement = super::with_abandoned_logins(file);
            assert_eq!(statement.matches("abandoned AS (").count(), 1);
            assert!(
                statement.contains("WHERE abandoned)\nSELECT")
                    || statement.contains("WHERE abandoned)\nINSERT"),
                "{statement}"
            );
            assert!(
                statement.contains("),\n-- The CTE that records"),
                "{statement}"
            );
        }
    }
}
