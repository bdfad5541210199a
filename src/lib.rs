//! `mfa`: PostgreSQL as the multi-factor-authentication authority of a B2B application.
//!
//! One question per folder, imports point down (ARCHITECTURE.md): `api` (what PostgreSQL calls) →
//! `flow` (one call's orchestration) → `store` (every statement) and `server` (what outlives a
//! call: settings, the key ring, the attempt ledger) → `core` (pure Rust, plain tests). Tables,
//! roles, grants and comments are in `sql/`.

use pgrx::prelude::*;

mod api;
mod core;
mod error;
mod flow;
mod server;
mod store;

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

#[cfg(test)]
mod layers;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!(
    "../sql/session_guard.sql",
    name = "session_guard",
    requires = ["schema"]
);
extension_sql_file!("../sql/citus.sql", name = "citus", requires = ["schema"]);
extension_sql_file!(
    "../sql/session_assurance.sql",
    name = "session_assurance",
    requires = [
        "session_guard",
        api::gate::session_verified_factors,
        api::webauthn::session_phishing_resistant,
        api::webauthn::session_amr
    ]
);
extension_sql_file!("../sql/grants.sql", name = "grants", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    error::keep_backtraces_out_of_errors();
    server::settings::register();
    api::gate::register_callbacks();
    api::prepared::register_callbacks();
    // Preloaded, the postmaster sets up the attempt ledger's shared memory (without it every
    // authentication is refused). The postmaster also pays for the phone metadata once and every
    // backend inherits it; loaded on first use, a backend pays on its first phone number instead.
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        server::key_ring::load_at_preload();
        server::ledger::request_at_preload();
        core::phone::warm_up();
    }
}

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'mfa'"]
    }
}
