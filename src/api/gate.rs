//! `mfa.session_gate()`: the four row triggers that `mfa.session_table_guard` installs on an
//! application's sessions table (see `sql/session_guard.sql`).
//!
//! - BEFORE INSERT: the policy decision of `decide`; the token is consumed and the factors
//!   column holds what the gate decided, never what the statement supplied.
//! - BEFORE UPDATE OF a guarded column: the organization, the member and the factors are immutable;
//!   a new token in the token column is a step-up, whose factors are merged into the session's.
//! - AFTER INSERT / AFTER UPDATE (when a guarded column changed): the final row must be one that a
//!   BEFORE trigger decided; a trigger that fires after the gate and rewrites the row is caught.
//!   It writes the decision's event (`session.allowed`, `session.stepped_up`), so the event exists
//!   exactly when the row does.
//! - Before the transaction commits: a decision whose row never landed (an upsert's conflict, a
//!   later trigger returning NULL) consumed its token all the same, and is recorded as given up.

use crate::core::crypto::{sha256, token_hash};
use crate::core::session_gate::{
    classify_update, DecisionBook, GuardedColumns, SessionEvent, UpdateRequest,
};
use crate::error::SqlResult;
use crate::error::{ErrorType, MfaError};
use crate::flow::answer;
use crate::flow::attempt::ledger_event;
use crate::flow::gate::{
    self, decide, record_given_up, record_session, sealed, step_up, Allowed, SteppedUp,
};
use crate::server::ledger;
use crate::store::audit::Request;
use crate::store::jsonb::Jsonb;
use crate::store::sessions;
use pgrx::prelude::*;
use pgrx::{pg_sys, JsonB};
use serde_json::json;
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;

thread_local! {
    /// The decisions of this transaction's BEFORE triggers, and which of them rows claimed.
    static DECISIONS: RefCell<DecisionBook> = RefCell::new(DecisionBook::default());
    /// The role the gate's triggers run as (the definer of `mfa.session_gate()`), which writes the
    /// events of the decisions left at commit.
    static GATE_ROLE: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
    /// Triggers found to be a guard's own (by oid), until the next relation cache invalidation
    /// (creating or dropping a trigger sends one).
    static REGISTERED_TRIGGERS: RefCell<HashSet<u32>> = RefCell::new(HashSet::new());
}

/// Registers the transaction callbacks that keep `DECISIONS` in step with (sub)transactions, and
/// the relation cache callback that forgets which triggers were found registered.
pub fn register_callbacks() {
    unsafe {
        pg_sys::RegisterXactCallback(Some(transaction_ended), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subtransaction_ended), std::ptr::null_mut());
        pg_sys::CacheRegisterRelcacheCallback(Some(relation_changed), pg_sys::Datum::from(0));
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn relation_changed(_arg: pg_sys::Datum, _relation: pg_sys::Oid) {
    REGISTERED_TRIGGERS.with(|r| r.borrow_mut().clear());
}

/// Refuses to run for any trigger but the guard's own: an extra trigger calling the gate with
/// columns of the owner's choosing would record decisions for whatever those columns say.
fn require_registered(trigger: &PgTrigger, columns: &[String; 4]) {
    let oid = trigger.trigger().tgoid.to_u32();
    if REGISTERED_TRIGGERS.with(|r| r.borrow().contains(&oid)) {
        return;
    }
    let registered =
        sessions::gate_trigger_registered(oid, columns.to_vec()).unwrap_or_else(|e| e.raise());
    if !registered {
        let name = trigger.name().unwrap_or_default();
        let table = table_name(trigger);
        denied(
            &table,
            if trigger.event().fired_by_insert() { "INSERT" } else { "UPDATE" },
            &GuardedColumns {
                organization_id: None,
                member_id: None,
                token: None,
                factors: Value::Null,
            },
            MfaError::new(
                ErrorType::InsufficientFactors,
                format!("trigger {name:?} on {table} is not one that mfa.session_table_guard installed: the session gate runs only for the guard's own triggers"),
            )
            .with_hint("After a restore or pg_upgrade, run mfa.session_table_guard on the table again."),
        )
    }
    REGISTERED_TRIGGERS.with(|r| r.borrow_mut().insert(oid));
}

/// The refusal of an UPDATE that would move a session to another organization or member.
fn identity_change(table: &str) -> MfaError {
    MfaError::new(
        ErrorType::InsufficientFactors,
        format!(
            "the organization and member of a session in {table} cannot change; create a new session with a new login"
        ),
    )
}

#[pg_guard]
unsafe extern "C-unwind" fn transaction_ended(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::os::raw::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        // Still in the transaction: an error here aborts the commit, the consumption with it.
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => record_rows_never_written(),
        XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE | XACT_EVENT_PARALLEL_ABORT => {
            DECISIONS.with(|d| d.borrow_mut().clear())
        }
        _ => {}
    }
}

/// The decisions whose rows never landed consumed their tokens: each is recorded as given up.
/// Deferred triggers have fired by now, so no AFTER trigger can still match one.
fn record_rows_never_written() {
    let events = DECISIONS.with(|d| d.borrow_mut().take_unclaimed_events());
    if events.is_empty() {
        return;
    }
    as_gate_role(|| {
        for event in events {
            record_given_up(event).unwrap_or_else(|e| e.raise());
        }
    });
}

/// Runs `write` as the gate's triggers do: as their role, with a fixed search_path, and with a
/// snapshot (at commit no portal holds one, and SPI then refuses: "cannot execute SQL without an
/// outer snapshot or portal"). The role and settings are whatever the application left (`SET
/// ROLE`, a search_path with types of its own). An error leaves all three for the abort to undo.
fn as_gate_role(write: impl FnOnce()) {
    unsafe {
        let (mut role, mut context) = (pg_sys::InvalidOid, 0);
        pg_sys::GetUserIdAndSecContext(&mut role, &mut context);
        pg_sys::SetUserIdAndSecContext(
            GATE_ROLE.get(),
            context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
        let settings = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        write();
        pg_sys::PopActiveSnapshot();
        pg_sys::AtEOXact_GUC(true, settings);
        pg_sys::SetUserIdAndSecContext(role, context);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn subtransaction_ended(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::os::raw::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        DECISIONS.with(|d| d.borrow_mut().abort_subtransaction(my_subid));
    }
}

fn refused(error_type: ErrorType, message: impl Into<String>) -> ! {
    MfaError::new(error_type, message).raise()
}

/// A refused session write: the error rolls the statement back, so its audit event goes through
/// the attempt ledger's worker (event `session.denied`), then the refusal is raised.
fn denied(table: &str, operation: &str, row: &GuardedColumns, refusal: MfaError) -> ! {
    let request = Request::new();
    let details = serde_json::json!({
        "outcome": "denied",
        "session_table": crate::core::policy::truncate_for_message(table),
        "operation": operation,
        "error_type": refusal.error_type.as_str(),
        "reason": crate::core::policy::truncate_for_message(&refusal.message),
    });
    ledger::queue_event(
        &ledger_event(
            &request,
            row.organization_id.as_deref().unwrap_or_default(),
            row.member_id.as_deref().unwrap_or_default(),
            "session.denied",
        ),
        &details,
        ledger::Purpose::Coalescible,
    );
    refusal.raise()
}

/// The guarded column names, from the trigger's arguments.
struct Columns {
    organization: String,
    member: String,
    token: String,
    factors: String,
}

impl Columns {
    fn read<W: WhoAllocated>(&self, row: &PgHeapTuple<'_, W>) -> GuardedColumns {
        let text = |name: &str| {
            row.get_by_name::<String>(name).unwrap_or_else(|e| {
                refused(
                    ErrorType::InvalidArgument,
                    format!("session_gate: column {name:?}: {e}"),
                )
            })
        };
        let factors = row
            .get_by_name::<JsonB>(&self.factors)
            .unwrap_or_else(|e| {
                refused(
                    ErrorType::InvalidArgument,
                    format!("session_gate: column {:?}: {e}", self.factors),
                )
            })
            .map(|JsonB(f)| f)
            .unwrap_or(Value::Null);
        GuardedColumns {
            organization_id: text(&self.organization),
            member_id: text(&self.member),
            token: text(&self.token),
            factors,
        }
    }
}

/// The name of the table a trigger fired on, for messages and events.
fn table_name(trigger: &PgTrigger) -> String {
    trigger
        .relation()
        .map(|r| format!("{}.{}", r.namespace(), r.name()))
        .unwrap_or_default()
}

/// Records a BEFORE trigger's decision and the event its row will owe.
fn record(
    table: u32,
    updated_row: Option<Vec<u8>>,
    row: &GuardedColumns,
    event: Option<SessionEvent>,
) {
    let subtransaction = unsafe { pg_sys::GetCurrentSubTransactionId() };
    GATE_ROLE.set(unsafe { pg_sys::GetUserId() });
    let hash = row.token.as_deref().map(token_hash);
    DECISIONS.with(|d| {
        d.borrow_mut()
            .record(table, updated_row, row, hash, subtransaction, event)
    });
}

/// What binds an UPDATE's decision to the one row event that made it: the old tuple's position
/// and a digest of the old row's token and factors (the same in the BEFORE and the AFTER trigger
/// of that event). A decision a later trigger left unused cannot be claimed by another row, even
/// one a table rewrite moved to the same position: that row's old factors differ. None for an
/// INSERT.
fn update_binding(trigger: &PgTrigger, old: &GuardedColumns) -> Option<Vec<u8>> {
    if !trigger.event().fired_by_update() {
        return None;
    }
    let tuple = trigger.trigger_data().tg_trigtuple;
    if tuple.is_null() {
        return None;
    }
    let position = unsafe { (*tuple).t_self };
    let mut binding = Vec::with_capacity(6 + 32);
    binding.extend_from_slice(&position.ip_blkid.bi_hi.to_be_bytes());
    binding.extend_from_slice(&position.ip_blkid.bi_lo.to_be_bytes());
    binding.extend_from_slice(&position.ip_posid.to_be_bytes());
    let mut contents = old.token.as_deref().map(token_hash).unwrap_or_default();
    contents.push(0);
    contents.extend_from_slice(old.factors.to_string().as_bytes());
    binding.extend_from_slice(&sha256(&contents));
    Some(binding)
}

#[pg_trigger]
fn session_gate<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, PgTriggerError> {
    let args = trigger.extra_args()?;
    let args = <[String; 4]>::try_from(args).unwrap_or_else(|_| {
        refused(
            ErrorType::InvalidArgument,
            "session_gate(organization_column, member_column, token_column, factors_column) takes 4 column names; install it with mfa.session_table_guard",
        )
    });
    require_registered(trigger, &args);
    let [organization, member, token, factors] = args;
    let columns = Columns {
        organization,
        member,
        token,
        factors,
    };
    let event = trigger.event();
    if !event.fired_for_row() || !(event.fired_by_insert() || event.fired_by_update()) {
        refused(
            ErrorType::InvalidArgument,
            "session_gate is a row trigger on INSERT and UPDATE; install it with mfa.session_table_guard",
        );
    }
    let table = trigger.relid()?.to_u32();
    let operation = if event.fired_by_insert() {
        "INSERT"
    } else {
        "UPDATE"
    };
    let new = trigger.new().ok_or(PgTriggerError::NotTrigger)?;
    let proposed = columns.read(&new);

    if event.fired_after() {
        // Whatever path the new values took, an UPDATE keeps the session's organization and member.
        let mut binding = None;
        if event.fired_by_update() {
            let old = columns.read(&trigger.old().ok_or(PgTriggerError::NotTrigger)?);
            binding = update_binding(trigger, &old);
            if old.organization_id != proposed.organization_id
                || old.member_id != proposed.member_id
            {
                denied(
                    &table_name(trigger),
                    operation,
                    &old,
                    identity_change(&table_name(trigger)),
                )
            }
        }
        let hash = proposed.token.as_deref().map(token_hash);
        let subtransaction = unsafe { pg_sys::GetCurrentSubTransactionId() };
        let Some(claimed) = DECISIONS.with(|d| {
            d.borrow_mut()
                .claim(table, binding, &proposed, hash, subtransaction)
        }) else {
            denied(
                &table_name(trigger),
                operation,
                &proposed,
                MfaError::new(
                    ErrorType::InsufficientFactors,
                    format!(
                        "the session row written to {} is not the one the gate decided: a trigger that ran after the gate changed its organization, member, token or factors",
                        table_name(trigger)
                    ),
                ),
            )
        };
        if let Some(event) = claimed.event {
            record_session(event).unwrap_or_else(|e| e.raise());
        }
        return Ok(None);
    }

    let mut row = new.into_owned();
    if event.fired_by_insert() {
        let allowed = decide(
            proposed.organization_id.as_deref(),
            proposed.member_id.as_deref(),
            proposed.token.as_deref(),
        )
        .unwrap_or_else(|refusal| denied(&table_name(trigger), operation, &proposed, refusal));
        // Only the guard's own triggers seal: what check_session_policy and the 0.3.0 trigger
        // answer carries no seal, so no caller can collect sealed factors to place elsewhere.
        let factors = sealed(
            proposed.organization_id.as_deref().unwrap_or_default(),
            proposed.member_id.as_deref().unwrap_or_default(),
            allowed.factors,
        )
        .unwrap_or_else(|e| e.raise());
        let decided = GuardedColumns {
            factors: Value::Array(factors),
            ..proposed
        };
        row.set_by_name(&columns.factors, Jsonb(decided.factors.clone()))
            .unwrap_or_else(|e| refused(ErrorType::InvalidArgument, format!("session_gate: {e}")));
        record(table, None, &decided, Some(allowed.event));
        return Ok(Some(row));
    }

    let old = columns.read(&trigger.old().ok_or(PgTriggerError::NotTrigger)?);
    let name = table_name(trigger);
    let deny = |refusal: MfaError| -> ! { denied(&name, operation, &old, refusal) };
    let (decided, event) = match classify_update(&old, &proposed) {
        UpdateRequest::Nothing => return Ok(Some(row)),
        UpdateRequest::IdentityChange => deny(identity_change(&name)),
        UpdateRequest::FactorsWritten => deny(MfaError::new(
            ErrorType::InsufficientFactors,
            format!(
                "column {:?} of {name} is written only by the gate; present a step-up token in {:?} to add factors",
                columns.factors, columns.token
            ),
        )),
        UpdateRequest::TokenCleared => (proposed, None),
        UpdateRequest::StepUp(token) => {
            let SteppedUp { factors, event } =
                step_up(&name, &old, token).unwrap_or_else(|refusal| deny(refusal));
            (
                GuardedColumns {
                    factors,
                    ..proposed.clone()
                },
                Some(event),
            )
        }
    };
    row.set_by_name(&columns.factors, Jsonb(decided.factors.clone()))
        .unwrap_or_else(|e| refused(ErrorType::InvalidArgument, format!("session_gate: {e}")));
    record(table, update_binding(trigger, &old), &decided, event);
    Ok(Some(row))
}

/// The policy check a session-creating transaction calls before inserting its session.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn check_session_policy(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    intermediate_session_token: Option<&str>,
) -> SqlResult<Jsonb> {
    let Allowed {
        request,
        factors,
        event,
    } = decide(organization_id, member_id, intermediate_session_token)?;
    // No row of mfa's to wait for: the application writes its session itself.
    record_session(event)?;
    Ok(Jsonb(answer::about_ids(
        &request,
        organization_id.unwrap_or_default(),
        member_id.unwrap_or_default(),
        json!({ "authentication_factors": answer::factors(Value::Array(factors)) }),
    )))
}

/// `BEFORE INSERT` trigger for the application's sessions table. Arguments: the names of the
/// organization id, member id and token columns, and optionally of a jsonb column to fill with the
/// login's factors. The token in the row is consumed by then, so it can never serve again.
#[pg_trigger]
fn enforce_session_policy<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, PgTriggerError> {
    let fail =
        |message: String| -> ! { MfaError::new(ErrorType::InvalidArgument, message).raise() };
    let args = trigger
        .extra_args()
        .unwrap_or_else(|e| fail(format!("enforce_session_policy: {e}")));
    if !(3..=4).contains(&args.len()) {
        fail(
            "enforce_session_policy(organization_column, member_column, token_column [, factors_column]) takes 3 or 4 column names".into(),
        );
    }
    if !trigger.event().fired_before()
        || !trigger.event().fired_by_insert()
        || !trigger.event().fired_for_row()
    {
        fail("enforce_session_policy must be a BEFORE INSERT … FOR EACH ROW trigger".into());
    }
    let mut row = trigger
        .new()
        .ok_or(PgTriggerError::NotTrigger)?
        .into_owned();
    let text_column = |name: &str| -> Option<String> {
        row.get_by_name::<String>(name)
            .unwrap_or_else(|e| fail(format!("enforce_session_policy: column {name:?}: {e}")))
    };
    let organization_id = text_column(&args[0]);
    let member_id = text_column(&args[1]);
    let token = text_column(&args[2]);
    let allowed = decide(
        organization_id.as_deref(),
        member_id.as_deref(),
        token.as_deref(),
    )
    .unwrap_or_else(|denied| denied.raise());
    // Written at once, as in 0.3.0: this trigger has no AFTER trigger to match the row.
    record_session(allowed.event).unwrap_or_else(|e| e.raise());
    if let Some(factors_column) = args.get(3) {
        row.set_by_name(factors_column, Jsonb(Value::Array(allowed.factors)))
            .unwrap_or_else(|e| {
                fail(format!(
                    "enforce_session_policy: column {factors_column:?}: {e}"
                ))
            });
    }
    Ok(Some(row))
}

/// The factors of a session's factors column whose seal verifies for this organization and
/// member; what `session_aal` and `last_mfa_at` (three arguments) count. Definer: the
/// per-database key is readable only by the extension's owner.
#[pg_extern(stable, security_definer, parallel_restricted)]
#[search_path(pg_catalog, pg_temp)]
pub fn session_verified_factors(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    authentication_factors: Option<JsonB>,
) -> Jsonb {
    let (Some(organization_id), Some(member_id), Some(JsonB(factors))) =
        (organization_id, member_id, authentication_factors)
    else {
        return Jsonb(Value::Array(Vec::new()));
    };
    Jsonb(answer::factors(Value::Array(gate::verified_factors(
        organization_id,
        member_id,
        &factors,
    ))))
}
