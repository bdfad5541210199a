//! What the worker's tests share: the path of a program of the PostgreSQL under test.

use std::process::Command;

/// `program` in the bindir of the `pg_config` on the PATH (`make test` puts the version under
/// test first).
pub fn server_program(program: &str) -> String {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("pg_config on the PATH");
    format!(
        "{}/{program}",
        String::from_utf8(out.stdout).unwrap().trim()
    )
}
