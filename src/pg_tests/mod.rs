//! Behaviour inside one backend (`cargo pgrx test`). Each test runs in a transaction that is rolled
//! back, so nothing here can observe COMMIT: concurrency and NOTIFY live in `tests/integration`.

mod admin;
mod flows;
mod gate;
mod matrix;

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

/// Runs `sql` and returns its first column as JSON.
pub fn json(sql: &str) -> Value {
    Spi::get_one::<JsonB>(sql)
        .expect("query runs")
        .map(|j| j.0)
        .unwrap_or(Value::Null)
}

pub fn run(sql: &str) {
    Spi::run(sql).expect("statement runs");
}

/// Runs `sql` in a subtransaction and returns `SQLSTATE message` of the error it raised, or
/// "no error".
pub fn error_of(sql: &str) -> String {
    Spi::run(
        "CREATE OR REPLACE FUNCTION pg_temp.error_of(statement text) RETURNS text
         LANGUAGE plpgsql AS $$
         BEGIN
             EXECUTE statement;
             RETURN 'no error';
         EXCEPTION WHEN others THEN
             RETURN SQLSTATE || ' ' || SQLERRM;
         END $$",
    )
    .expect("helper is created");
    Spi::get_one_with_args::<String>("SELECT pg_temp.error_of($1)", &[sql.into()])
        .expect("helper runs")
        .expect("helper returns text")
}

/// Asserts that `sql` raises an error of `sqlstate` whose message starts with `error_type`.
#[track_caller]
pub fn assert_error(sql: &str, sqlstate: &str, error_type: &str) {
    let got = error_of(sql);
    let expected = format!("{sqlstate} {error_type}: ");
    assert!(
        got.starts_with(&expected),
        "{sql}\n  expected: {expected}…\n  got:      {got}"
    );
}
