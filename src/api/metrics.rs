//! `mfa.metrics()`: one row per Prometheus sample, for monitoring (mfa_admin and pg_monitor).

use crate::flow::metrics;
use crate::store::jsonb::Jsonb;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

/// What an operator alerts on: logins started and second-factor attempts by method and outcome
/// since the server started (shared memory: this server's, all its databases together), the
/// attempt ledger's fill and queue, the SMS outbox (pending, claimed, dead, the oldest pending
/// message's age) and the members locked now — with `per_organization`, the last two per
/// organization that has any. A row is a sample: `name` (Prometheus style), `labels` (an object
/// of strings) and `value`.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn metrics(
    per_organization: default!(Option<bool>, false),
) -> Result<
    TableIterator<'static, (name!(name, String), name!(labels, Jsonb), name!(value, f64))>,
    ErrorReport,
> {
    let samples = metrics::collect(per_organization.unwrap_or(false))?;
    Ok(TableIterator::new(
        samples
            .into_iter()
            .map(|s| (s.name.to_string(), Jsonb(s.labels), s.value)),
    ))
}
