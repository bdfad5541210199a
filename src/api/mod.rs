//! What PostgreSQL calls: `#[pg_extern]` / `#[pg_trigger]` functions, background-worker entry points
//! and transaction callbacks. Each parses its arguments, calls one flow and wraps the answer.
//! Nothing imports this module but `lib.rs`.

// The SQL functions return pgrx's `ErrorReport` (208 bytes) on their cold path, once per call.
#![allow(clippy::result_large_err)]

pub mod gate;
pub mod keys;
pub mod ledger_worker;
pub mod login;
pub mod members;
pub mod metrics;
pub mod organizations;
pub mod outbox;
pub mod prepared;
pub mod remembered_devices;
pub mod reports;
pub mod sms;
pub mod sms_workers;
pub mod totp;
pub mod webauthn;
