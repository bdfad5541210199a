//! The SQL surface laid out in three layers so far: `#[pg_extern]` / `#[pg_trigger]` functions and
//! the orchestration of one call.

pub mod gate;
pub mod keys;
pub mod ledger_worker;
pub mod sms_workers;
