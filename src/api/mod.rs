//! The SQL surface: `#[pg_extern]` / `#[pg_trigger]` functions and the orchestration of one call.

// The SQL functions return pgrx's `ErrorReport` (208 bytes) on their cold path, once per call.
#![allow(clippy::result_large_err)]

pub mod answer;
pub mod attempt;
pub mod gate;
pub mod keys;
pub mod ledger_worker;
pub mod login;
pub mod members;
pub mod organizations;
pub mod outbox;
pub mod prepared;
pub mod remembered_devices;
pub mod sms;
pub mod sms_workers;
pub mod totp;
