//! No prepared transaction may hold mfa's locks. A prepared transaction outlives its connection
//! and the server's restarts until someone commits or rolls it back, and keeps every lock it
//! took: a member's row (every check of that member would wait), an SMS number's lock (every
//! organization's sends to it would wait). So, as PostgreSQL refuses to prepare a transaction
//! that used temporary objects, mfa refuses to prepare one that ran any of its statements.

use crate::error::{ErrorType, MfaError};
use crate::store::{cluster, spi};
use pgrx::{pg_guard, pg_sys};

/// Registers the transaction callback; called from `_PG_init`.
pub fn register_callbacks() {
    unsafe {
        pg_sys::RegisterXactCallback(Some(transaction_event), std::ptr::null_mut());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn transaction_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::os::raw::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        // Before anything is prepared: an ERROR here rolls the transaction back instead.
        // Citus commits a transaction that spans nodes with PREPARE TRANSACTION on each worker
        // (a login's guarded INSERT among them); there the refusal would end every such login.
        XACT_EVENT_PRE_PREPARE if spi::ran_in_this_transaction() && !cluster::on_citus() => {
            spi::transaction_ended();
            MfaError::new(
                ErrorType::CannotPrepareTransaction,
                "cannot PREPARE a transaction that has called mfa: its locks would outlive the session. Commit or roll it back instead.",
            )
            .raise()
        }
        XACT_EVENT_COMMIT
        | XACT_EVENT_ABORT
        | XACT_EVENT_PREPARE
        | XACT_EVENT_PARALLEL_COMMIT
        | XACT_EVENT_PARALLEL_ABORT => spi::transaction_ended(),
        _ => {}
    }
}
