//! Intermediate sessions (a login or a step-up in progress, found by its token's hash) and the
//! statements of the session gate.

use crate::core::factor::{given_up_event_type, login_story};
use crate::core::policy::OrganizationPolicy;
use crate::core::session_gate::SessionEvent;
use crate::error::MfaResult;
use crate::store::audit::{self, Event};
use crate::store::jsonb::Jsonb;
use crate::store::members::read_policy;
use crate::store::spi;
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
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

/// The organizations with logins expired at `now` (`logins_expired_organizations.sql`).
pub fn organizations_with_expired_logins(now: TimestampWithTimeZone) -> MfaResult<Vec<String>> {
    spi::text_column(
        include_str!("sql/logins_expired_organizations.sql"),
        &[now.into()],
    )
}

/// Up to `at_most` expired logins of `organization_id` go, each one given up recorded as
/// `login.abandoned` (`logins_expired_reap.sql`); rows a login in progress holds are skipped.
/// Returns how many went.
pub fn reap_expired(organization_id: &str, at_most: i64) -> MfaResult<i64> {
    let ended = ended_logins(
        include_str!("sql/logins_expired_reap.sql"),
        &[spi::clock().into(), at_most.into(), organization_id.into()],
    )?;
    record_abandoned(&ended)?;
    Ok(ended.len() as i64)
}

/// A login (or a step-up) a statement ended: whose it was, its story, and whether it was given
/// up (no session consumed what it proved).
struct EndedLogin {
    organization_id: String,
    member_id: String,
    request_ids: Vec<String>,
    factors: Vec<Value>,
    login: bool,
    abandoned: bool,
}

/// The logins `statement` (a DELETE … RETURNING of `logins_give_up.sql`'s columns) ended.
fn ended_logins(statement: &str, args: &[DatumWithOid]) -> MfaResult<Vec<EndedLogin>> {
    spi::typed_rows(statement, args, |row| {
        Ok(EndedLogin {
            organization_id: row
                .get_by_name::<String, _>("organization_id")?
                .unwrap_or_default(),
            member_id: row
                .get_by_name::<String, _>("member_id")?
                .unwrap_or_default(),
            request_ids: row
                .get_by_name::<Vec<String>, _>("request_ids")?
                .unwrap_or_default(),
            factors: factor_list(row.get_by_name::<JsonB, _>("factors")?),
            login: row.get_by_name::<bool, _>("login")?.unwrap_or(false),
            abandoned: row.get_by_name::<bool, _>("abandoned")?.unwrap_or(false),
        })
    })
}

/// Each login given up among `ended` as its one event (`login.abandoned`, or `step_up.abandoned`),
/// in the transaction that ended it: a rollback keeps both the login and the silence, and the
/// login is recorded when it ends for good. Under the request id of its start; a login in progress
/// when 0.10.0 came has the nil id for each step before it (its requests are not known), and one
/// without any gets a new id.
fn record_abandoned(ended: &[EndedLogin]) -> MfaResult<()> {
    for login in ended.iter().filter(|l| l.abandoned) {
        let request_id = match login.request_ids.first() {
            Some(start) => start.clone(),
            None => crate::core::ids::new_request_id(),
        };
        write_given_up(
            &login.organization_id,
            &login.member_id,
            &request_id,
            given_up_event_type(!login.login),
            login_story(&login.factors, &login.request_ids),
        )?;
    }
    Ok(())
}

/// A login or step-up given up, as its one event (`login_abandoned.sql`). A statement of its own,
/// so that each is one router query on Citus (an INSERT in a CTE is not).
fn write_given_up(
    organization_id: &str,
    member_id: &str,
    request_id: &str,
    event_type: &str,
    details: Value,
) -> MfaResult<()> {
    spi::execute(
        include_str!("sql/login_abandoned.sql"),
        &[
            organization_id.into(),
            member_id.into(),
            request_id.into(),
            event_type.into(),
            Jsonb(details).into(),
        ],
    )?;
    Ok(())
}

/// Ends a member's logins: all of them (`expired_at` `None`: a factor they may have been proven
/// with is gone), or those expired at that time (a new login starts). Those no session consumed
/// are recorded as `login.abandoned` (`logins_give_up.sql`). Returns how many went.
pub fn end_logins(
    organization_id: &str,
    member_id: &str,
    expired_at: Option<pgrx::datum::TimestampWithTimeZone>,
) -> MfaResult<i64> {
    let ended = ended_logins(
        include_str!("sql/logins_give_up.sql"),
        &[organization_id.into(), member_id.into(), expired_at.into()],
    )?;
    record_abandoned(&ended)?;
    Ok(ended.len() as i64)
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
    /// Its audit event (a step-up's start); a login has none until it ends.
    pub event: Option<Event<'a>>,
}

/// A new intermediate session (`session_start.sql`), after the member's expired ones ended (and
/// were recorded when given up), and the step-up's event.
pub fn start(session: NewSession) -> MfaResult<()> {
    let now = spi::clock();
    end_logins(session.organization_id, session.member_id, Some(now))?;
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
            session.request_id.into(),
            session.remembered_device.map(Jsonb).into(),
            now.into(),
        ],
    )?;
    if let Some(event) = &session.event {
        audit::write(event)?;
    }
    Ok(())
}

/// A consumed token: the factors proven with it and its login's story (`login_story`).
pub struct Consumed {
    pub factors: Vec<Value>,
    pub story: Value,
}

impl Consumed {
    fn read(factors: JsonB, request_ids: Option<Vec<String>>) -> Consumed {
        let factors = factor_list(Some(factors));
        let story = login_story(&factors, &request_ids.unwrap_or_default());
        Consumed { factors, story }
    }
}

/// What `session_decide.sql` found: the member's policy inputs and, when the token was consumed,
/// the login's factors.
pub struct GateInputs {
    pub mfa_enrolled: bool,
    pub is_breakglass: bool,
    pub policy: OrganizationPolicy,
    /// `None`: nothing was consumed (no token, or not a live token of this member).
    pub consumed: Option<Consumed>,
    /// The consumed token was a login's (it carries a primary factor), not a step-up's.
    pub has_primary: bool,
}

/// Consumes the login's token for a new session (`session_decide.sql`: the member's inputs read
/// and the token consumed in one statement, one router query on Citus; undone with the caller's
/// (sub)transaction when the policy then refuses); `None` when there is no such member. Its event
/// is `write_session_event`'s, once the session row is written.
pub fn consume_for_session(
    organization_id: &str,
    member_id: &str,
    token_hash: Option<Vec<u8>>,
) -> MfaResult<Option<GateInputs>> {
    spi::typed_row(
        include_str!("sql/session_decide.sql"),
        &[
            organization_id.into(),
            member_id.into(),
            // No token: a hash none has. NULL folds `token_hash = $3` to false, and Citus then
            // prunes the token's table from the statement and sends the rest to the member's
            // node naming the distributed table, which a shard's node refuses.
            token_hash.unwrap_or_default().into(),
            spi::clock().into(),
        ],
        |row| {
            let consumed = row.get_by_name::<JsonB, _>("factors")?;
            let request_ids = row.get_by_name::<Vec<String>, _>("request_ids")?;
            Ok(GateInputs {
                mfa_enrolled: row.get_by_name::<bool, _>("mfa_enrolled")?.unwrap_or(false),
                is_breakglass: row
                    .get_by_name::<bool, _>("is_breakglass")?
                    .unwrap_or(false),
                policy: read_policy(row)?,
                consumed: consumed.map(|factors| Consumed::read(factors, request_ids)),
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
}

/// Consumes a step-up token (`step_up_consume.sql`, in the caller's transaction); `None` when the
/// token is not this member's, expired or used. Its event is `write_session_event`'s, once the
/// session row is written.
pub fn consume_step_up(step_up: StepUp) -> MfaResult<Option<Consumed>> {
    let consumed = spi::typed_row(
        include_str!("sql/step_up_consume.sql"),
        &[
            step_up.organization_id.into(),
            step_up.member_id.into(),
            step_up.token_hash.into(),
            spi::clock().into(),
        ],
        |row| Ok((row.get::<JsonB>(1)?, row.get::<Vec<String>>(2)?)),
    )?;
    Ok(match consumed {
        Some((Some(factors), request_ids)) => Some(Consumed::read(factors, request_ids)),
        _ => None,
    })
}

/// The event of a session the gate decided (`session_decide.audited.sql`: `session.allowed`;
/// `step_up_consume.audited.sql`: `session.stepped_up`), in the caller's transaction.
pub fn write_session_event(event: SessionEvent) -> MfaResult<()> {
    let mut args: Vec<DatumWithOid> = vec![
        event.organization_id.as_str().into(),
        event.member_id.as_str().into(),
        Jsonb(event.story).into(),
        event.request_id.as_str().into(),
    ];
    match &event.step_up_table {
        None => spi::execute(include_str!("sql/session_decide.audited.sql"), &args),
        Some(table) => {
            args.push(table.as_str().into());
            spi::execute(include_str!("sql/step_up_consume.audited.sql"), &args)
        }
    }?;
    Ok(())
}

/// The event of a decision whose session row was never written (`SessionEvent::given_up`).
pub fn write_session_given_up(event: SessionEvent) -> MfaResult<()> {
    let (organization_id, member_id) = (event.organization_id.clone(), event.member_id.clone());
    let given_up = event.given_up();
    write_given_up(
        &organization_id,
        &member_id,
        &given_up.request_id,
        given_up.event_type,
        given_up.details,
    )
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
