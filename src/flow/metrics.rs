//! `mfa.metrics()`: what an operator alerts on, one Prometheus sample per row — the server's
//! counters (shared memory), the attempt ledger's fill and queue, the SMS outbox and the members
//! locked now (SQL), the last two in total or per organization.

use crate::core::metrics::Counter;
use crate::error::MfaResult;
use crate::server::{counters, ledger};
use crate::store::{metrics, spi};
use serde_json::{json, Map, Value};

/// One sample: a metric's name, its labels (a JSON object of strings) and its value.
pub struct Sample {
    pub name: &'static str,
    pub labels: Value,
    pub value: f64,
}

fn sample(name: &'static str, labels: Value, value: f64) -> Sample {
    Sample {
        name,
        labels,
        value,
    }
}

/// `{"organization_id": …}` for a per-organization row, `{}` for a total.
fn organization(organization_id: &Option<String>) -> Map<String, Value> {
    let mut labels = Map::new();
    if let Some(id) = organization_id {
        labels.insert("organization_id".into(), json!(id));
    }
    labels
}

pub fn collect(per_organization: bool) -> MfaResult<Vec<Sample>> {
    let mut samples = Vec::new();
    let snapshot = counters::snapshot();
    samples.push(sample(
        "mfa_preloaded",
        json!({}),
        if snapshot.is_some() { 1.0 } else { 0.0 },
    ));
    if let Some(snapshot) = snapshot {
        samples.push(sample(
            "mfa_counters_start_time_seconds",
            json!({}),
            snapshot.since_unix_seconds,
        ));
        for counter in Counter::all() {
            let labels: Map<String, Value> = counter
                .labels()
                .into_iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            samples.push(sample(
                counter.name(),
                Value::Object(labels),
                snapshot.values[counter.index()] as f64,
            ));
        }
        let stats = ledger::stats()?;
        for (name, value) in [
            ("mfa_attempt_ledger_members", stats.members as f64),
            (
                "mfa_attempt_ledger_members_in_use",
                stats.members_in_use as f64,
            ),
            ("mfa_attempt_ledger_records", stats.records as f64),
            (
                "mfa_attempt_ledger_records_queued",
                stats.records_queued as f64,
            ),
            (
                "mfa_attempt_ledger_records_dropped_total",
                stats.records_dropped as f64,
            ),
        ] {
            samples.push(sample(name, json!({}), value));
        }
    }
    let now = spi::clock();
    let outbox = metrics::outbox(per_organization, now)?;
    let locked = metrics::locked(per_organization, now)?;
    if per_organization {
        for row in &outbox {
            outbox_samples(&mut samples, organization(&row.organization_id), row);
        }
        for (organization_id, count) in &locked {
            samples.push(sample(
                "mfa_members_locked",
                Value::Object(organization(organization_id)),
                *count as f64,
            ));
        }
    } else {
        // The totals are there even when there is nothing (a zero, not a missing series).
        let total = outbox.into_iter().next().unwrap_or(metrics::Outbox {
            organization_id: None,
            pending: 0,
            claimed: 0,
            dead: 0,
            oldest_pending_seconds: None,
        });
        outbox_samples(&mut samples, Map::new(), &total);
        samples.push(sample(
            "mfa_members_locked",
            json!({}),
            locked.first().map_or(0, |(_, count)| *count) as f64,
        ));
    }
    Ok(samples)
}

fn outbox_samples(samples: &mut Vec<Sample>, labels: Map<String, Value>, row: &metrics::Outbox) {
    for (status, count) in [
        ("pending", row.pending),
        ("claimed", row.claimed),
        ("dead", row.dead),
    ] {
        let mut labels = labels.clone();
        labels.insert("status".into(), json!(status));
        samples.push(sample(
            "mfa_sms_outbox_messages",
            Value::Object(labels),
            count as f64,
        ));
    }
    samples.push(sample(
        "mfa_sms_outbox_oldest_pending_age_seconds",
        Value::Object(labels),
        row.oldest_pending_seconds.unwrap_or(0.0).max(0.0),
    ));
}
