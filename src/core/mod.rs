//! Pure Rust, no pgrx: the decisions, tested with plain `#[test]`s. (The older pure modules,
//! `policy`, `phone`, `crypto`, `totp` and `sms_otp`, move here with the three-layer re-lay.)

pub mod attempts;
pub mod key_file;
pub mod session_gate;
