//! Calls into mfa's SQL API: every value a bind parameter, every refusal an `error_type`.

use deadpool_postgres::Pool;
use serde_json::Value;
use tokio_postgres::types::ToSql;

/// Why a call did not give an answer.
#[derive(Debug)]
pub enum Fail {
    /// mfa refused: its `error_type` (raised as an ERROR, or returned with a 4xx status_code).
    Refused(String),
    /// Anything else (the database is down, a bug): logged, shown as "something went wrong".
    Internal(String),
}

pub type R<T> = Result<T, Fail>;

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            // mfa's errors start with their error_type: "too_many_requests: …".
            if let Some((kind, _)) = db.message().split_once(": ") {
                if !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    return Fail::Refused(kind.to_string());
                }
            }
            return Fail::Internal(format!("{} {}", db.code().code(), db.message()));
        }
        Fail::Internal(e.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for Fail {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Fail::Internal(format!("pool: {e}"))
    }
}

/// `SELECT mfa.something(…)` returning jsonb; a returned failure (`status_code` 4xx) is a refusal.
pub async fn call(pool: &Pool, sql: &str, params: &[&(dyn ToSql + Sync)]) -> R<Value> {
    let client = pool.get().await?;
    let row = client.query_one(sql, params).await?;
    let value: Option<Value> = row.get(0);
    let value = value.unwrap_or(Value::Null);
    check(value)
}

pub fn check(value: Value) -> R<Value> {
    match value.get("status_code").and_then(Value::as_i64) {
        Some(code) if code >= 400 => Err(Fail::Refused(
            value
                .get("error_type")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string(),
        )),
        _ => Ok(value),
    }
}

pub fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}
