//! Statements of the session gate on guarded tables.

use crate::store::spi;
use crate::error::MfaResult;
use pgrx::JsonB;
use serde_json::Value;

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
        ],
        |row| row.get::<JsonB>(1),
    )?;
    Ok(factors.flatten().map(|JsonB(f)| match f {
        Value::Array(factors) => factors,
        _ => Vec::new(),
    }))
}
