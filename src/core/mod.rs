//! Pure Rust, no pgrx: the decisions and the formats, tested with plain `#[test]`s.

pub mod attempts;
pub mod crypto;
pub mod factor;
pub mod ids;
pub mod key_file;
pub mod metrics;
pub mod phone;
pub mod policy;
pub mod qr;
pub mod reports;
pub mod session_gate;
pub mod session_seal;
pub mod sms;
pub mod totp;
pub mod webauthn;
