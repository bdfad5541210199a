//! The one execution path of every statement: parameterised SPI only, kept plans, typed rows;
//! and the role names the statements take.
//!
//! Every statement is prepared once per backend and its plan kept (`SPI_keepplan`): parsing and
//! planning cost more than running these primary-key lookups. PostgreSQL's plan cache revalidates
//! a kept plan when a table it uses changes.

use crate::error::MfaResult;
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::pg_sys::PgOid;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiHeapTupleData, SpiTupleTable};
use pgrx::JsonB;
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// A kept plan and the type oids of the arguments it was prepared for.
struct KeptPlan {
    types: Vec<u32>,
    plan: Rc<OwnedPreparedStatement>,
}

thread_local! {
    /// This backend's kept plans, by statement text (looked up without copying the text).
    static PLANS: RefCell<HashMap<String, KeptPlan>> = RefCell::new(HashMap::new());
    /// Whether the current transaction ran a statement of mfa's (see `ran_in_this_transaction`).
    static RAN: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current transaction ran one of mfa's statements: it may then hold mfa's row and
/// advisory locks (a member, an SMS number), which must not outlive the session in a prepared
/// transaction. Kept until the transaction ends, whatever its savepoints did.
pub fn ran_in_this_transaction() -> bool {
    RAN.with(Cell::get)
}

/// The transaction ended (committed, rolled back or prepared).
pub fn transaction_ended() {
    RAN.with(|r| r.set(false));
}

/// Runs `sql` with `args` through this backend's kept plan for it, preparing it the first time
/// (and again should the same text come with other argument types).
pub fn run_kept<'conn>(
    client: &mut SpiClient<'conn>,
    sql: &str,
    args: &[DatumWithOid],
) -> Result<SpiTupleTable<'conn>, pgrx::spi::Error> {
    RAN.with(|r| r.set(true));
    let types = || args.iter().map(|a| a.oid().to_u32());
    let kept = PLANS.with(|plans| {
        plans
            .borrow()
            .get(sql)
            .filter(|kept| kept.types.iter().copied().eq(types()))
            .map(|kept| kept.plan.clone())
    });
    let plan = match kept {
        Some(plan) => plan,
        None => {
            let oids: Vec<PgOid> = args.iter().map(|a| PgOid::from(a.oid())).collect();
            let plan = Rc::new(client.prepare_mut(sql, &oids)?.keep());
            let kept = KeptPlan {
                types: types().collect(),
                plan: plan.clone(),
            };
            PLANS.with(|plans| plans.borrow_mut().insert(sql.to_string(), kept));
            plan
        }
    };
    // On a hot standby no transaction id can be assigned, which pgrx's `update` always asks for:
    // there a statement runs through `select`, so a read answers and a write meets PostgreSQL's
    // read-only refusal (25006) instead of an internal error.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return client.select(&*plan, None, args);
    }
    client.update(&*plan, None, args)
}

/// Runs a statement and reads each row with `read`, column by column as typed values: no jsonb
/// built in SQL only to be printed and parsed again here.
pub fn typed_rows<T>(
    sql: &str,
    args: &[DatumWithOid],
    mut read: impl FnMut(&SpiHeapTupleData) -> Result<T, pgrx::spi::Error>,
) -> MfaResult<Vec<T>> {
    Ok(Spi::connect_mut(
        |client| -> Result<Vec<T>, pgrx::spi::Error> {
            let table = run_kept(client, sql, args)?;
            let mut rows = Vec::with_capacity(table.len());
            for row in table {
                rows.push(read(&row)?);
            }
            Ok(rows)
        },
    )?)
}

/// `typed_rows` for a statement planned anew at each call, for its arguments' values, where a
/// kept plan would not do: an administrator's report, whose filters are NULL or not from call to
/// call (a kept plan goes generic after five calls, and then joins and scans for every filter).
pub fn typed_rows_planned_per_call<T>(
    sql: &str,
    args: &[DatumWithOid],
    mut read: impl FnMut(&SpiHeapTupleData) -> Result<T, pgrx::spi::Error>,
) -> MfaResult<Vec<T>> {
    Ok(Spi::connect(
        |client| -> Result<Vec<T>, pgrx::spi::Error> {
            let table = client.select(sql, None, args)?;
            let mut rows = Vec::with_capacity(table.len());
            for row in table {
                rows.push(read(&row)?);
            }
            Ok(rows)
        },
    )?)
}

/// The first column (text) of each row of a statement, NULLs left out.
pub fn text_column(sql: &str, args: &[DatumWithOid]) -> MfaResult<Vec<String>> {
    let rows = typed_rows(sql, args, |row| row.get::<String>(1))?;
    Ok(rows.into_iter().flatten().collect())
}

/// `typed_rows` for a statement that returns at most one row.
pub fn typed_row<T>(
    sql: &str,
    args: &[DatumWithOid],
    read: impl FnMut(&SpiHeapTupleData) -> Result<T, pgrx::spi::Error>,
) -> MfaResult<Option<T>> {
    Ok(typed_rows(sql, args, read)?.into_iter().next())
}

/// Runs a statement whose first column is `jsonb` and returns that column of each row.
pub fn json_rows(sql: &str, args: &[DatumWithOid]) -> MfaResult<Vec<Value>> {
    Ok(Spi::connect_mut(
        |client| -> Result<Vec<Value>, pgrx::spi::Error> {
            let table = run_kept(client, sql, args)?;
            let mut rows = Vec::with_capacity(table.len());
            for row in table {
                if let Some(JsonB(v)) = row.get::<JsonB>(1)? {
                    rows.push(v);
                }
            }
            Ok(rows)
        },
    )?)
}

/// The `jsonb` first column of the first row, if there is a row.
pub fn json_row(sql: &str, args: &[DatumWithOid]) -> MfaResult<Option<Value>> {
    Ok(json_rows(sql, args)?.into_iter().next())
}

/// Runs a statement and returns how many rows it processed.
pub fn execute(sql: &str, args: &[DatumWithOid]) -> MfaResult<usize> {
    Ok(Spi::connect_mut(|client| {
        run_kept(client, sql, args).map(|t| t.len())
    })?)
}

/// The wall clock, as `clock_timestamp()` reads it, for a statement that writes: such a statement
/// takes the time as a parameter, read just before it runs, because Citus refuses a volatile
/// function in the WHERE clause of a modification on a distributed table. A lock the statement
/// then waits for can only make this time earlier than the moment it decides.
pub fn clock() -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(unsafe { pgrx::pg_sys::GetCurrentTimestamp() })
        .expect("the clock reads a finite time")
}

/// The session user's name: the actor of an audit event written on the caller's behalf.
pub fn session_user() -> String {
    role_name(unsafe { pgrx::pg_sys::GetSessionUserId() })
}

/// The caller's current role (as `SET ROLE` left it), which a `SECURITY DEFINER` function's own
/// `current_user` hides.
pub fn outer_user() -> String {
    role_name(unsafe { pgrx::pg_sys::GetOuterUserId() })
}

/// Runs `f` in a subtransaction, as a PL/pgSQL block with an EXCEPTION clause does: its writes
/// stay when it succeeds and are undone when it fails, whether it returns an error or raises one
/// (an ERROR, or a panic, becomes the returned error: `internal_server_error` with its message).
/// As `WHEN OTHERS` does not, it catches no cancel or shutdown (SQLSTATE class 57): those end
/// the whole call, after the subtransaction is rolled back.
pub fn in_subtransaction<T>(f: impl FnOnce() -> MfaResult<T>) -> MfaResult<T> {
    use crate::error::{ErrorType, MfaError};
    use pgrx::pg_sys::panic::CaughtError;
    let f = std::panic::AssertUnwindSafe(f);
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        // Ok: what `f` returned or the error it raised; Err: an interruption, raised again.
        let outcome: Result<MfaResult<T>, Box<CaughtError>> =
            pg_sys::PgTryBuilder::new(move || {
                let f = f;
                Ok((f.0)())
            })
            .catch_others(|caught| {
                let report = match &caught {
                    CaughtError::PostgresError(report)
                    | CaughtError::ErrorReport(report)
                    | CaughtError::RustPanic {
                        ereport: report, ..
                    } => report,
                };
                if (report.sql_error_code() as i32 & 0xFFF) == operator_intervention_class() {
                    return Err(Box::new(caught));
                }
                let message = report.message().to_string();
                Ok(Err(MfaError::new(ErrorType::InternalServerError, message)))
            })
            .execute();
        pg_sys::MemoryContextSwitchTo(context);
        if matches!(outcome, Ok(Ok(_))) {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        outcome.unwrap_or_else(|interrupted| interrupted.rethrow())
    }
}

/// The SQLSTATE class of an operator's intervention (57: cancel, shutdown), as PostgreSQL packs
/// its first two characters.
fn operator_intervention_class() -> i32 {
    pg_sys::errcodes::PgSqlErrorCode::ERRCODE_OPERATOR_INTERVENTION as i32 & 0xFFF
}

/// Whether the caller's current role (`outer_user`) is a member of `role`.
pub fn caller_is_member_of(role: &str) -> MfaResult<bool> {
    let caller = unsafe { pgrx::pg_sys::GetOuterUserId() };
    Ok(typed_row(
        "SELECT pg_catalog.pg_has_role($1, $2, 'MEMBER')",
        &[caller.into(), role.into()],
        |row| row.get::<bool>(1),
    )?
    .flatten()
    .unwrap_or(false))
}

fn role_name(role: pgrx::pg_sys::Oid) -> String {
    unsafe {
        let name = pgrx::pg_sys::GetUserNameFromId(role, true);
        if name.is_null() {
            return String::new();
        }
        std::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned()
    }
}
