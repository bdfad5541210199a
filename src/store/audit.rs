//! The audit trail: a request's id (shared by its answer and every event it writes) and the one
//! standalone INSERT into `mfa.events`. Statements that record their event in the same execution
//! (a success, a send, a session) carry it as their `audited` CTE with the same columns; events
//! that must outlive a rolled-back caller go through the attempt ledger (`server::ledger`).

use crate::core::ids;
use crate::error::MfaResult;
use crate::store::jsonb::Jsonb;
use crate::store::spi;
use pgrx::datum::DatumWithOid;
use serde_json::Value;

/// One call of a public function: its request id, shared by the answer and every audit event.
pub struct Request {
    pub id: String,
}

impl Request {
    pub fn new() -> Request {
        Request {
            id: ids::new_request_id(),
        }
    }

    /// An event of this request. `organization_id` is '' for project-wide events. Never put a
    /// secret in `details`.
    /// Keys whose value is null are left out (absent: not set, or unchanged): every audit row
    /// pays for every byte of its details.
    pub fn event<'a>(
        &'a self,
        organization_id: &'a str,
        member_id: Option<&'a str>,
        event_type: &'a str,
        details: Value,
    ) -> Event<'a> {
        Event {
            organization_id,
            member_id,
            request_id: &self.id,
            event_type,
            details: without_nulls(details),
        }
    }

    /// Writes an event of this request on its own.
    pub fn audit(
        &self,
        organization_id: &str,
        member_id: Option<&str>,
        event_type: &str,
        details: Value,
    ) -> MfaResult<()> {
        write(&self.event(organization_id, member_id, event_type, details))
    }
}

/// An audit event about to be written.
pub struct Event<'a> {
    pub organization_id: &'a str,
    pub member_id: Option<&'a str>,
    pub request_id: &'a str,
    pub event_type: &'a str,
    pub details: Value,
}

impl<'a> Event<'a> {
    /// The event as the first five parameters of `event_insert.sql` and of every statement that
    /// ends its CTEs with `audited.sql`: organization_id, member_id, request_id, event_type,
    /// details.
    pub fn args(&self) -> [DatumWithOid<'a>; 5] {
        [
            self.organization_id.into(),
            self.member_id.into(),
            self.request_id.into(),
            self.event_type.into(),
            Jsonb(self.details.clone()).into(),
        ]
    }
}

/// Writes `event` (`event_insert.sql`).
pub fn write(event: &Event) -> MfaResult<()> {
    spi::execute(include_str!("sql/event_insert.sql"), &event.args())?;
    Ok(())
}

/// `details` without its top-level keys whose value is null.
fn without_nulls(details: Value) -> Value {
    match details {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn details_leave_out_null_keys_only() {
        let details = serde_json::json!({"outcome": "success", "mfa_enrolled": null,
                                         "locked": false, "factors": [null]});
        assert_eq!(
            super::without_nulls(details),
            serde_json::json!({"outcome": "success", "locked": false, "factors": [null]})
        );
        assert_eq!(
            super::without_nulls(serde_json::json!([null])),
            serde_json::json!([null])
        );
    }

    /// Every statement that writes an event in its caller's transaction lists the columns of
    /// `event_insert.sql`, in its order (the attempt ledger's worker writes its own, with the
    /// actor and the time the event happened).
    #[test]
    fn every_audit_insert_has_the_same_columns() {
        let canonical =
            "INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)";
        let store = concat!(env!("CARGO_MANIFEST_DIR"), "/src/store");
        let mut files: Vec<_> = std::fs::read_dir(store)
            .unwrap()
            .chain(std::fs::read_dir(format!("{store}/sql")).unwrap())
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        let mut inserts = 0;
        for path in files {
            if path.ends_with("event_write.sql") || path.ends_with("audit.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (at, _) in text.match_indices("INSERT INTO mfa.events") {
                assert!(
                    text[at..].starts_with(canonical),
                    "{}: an audit insert with other columns",
                    path.display()
                );
                inserts += 1;
            }
        }
        assert!(inserts >= 9, "{inserts} audit inserts found");
    }
}
