//! The pure side of the session gate on a guarded table: what an UPDATE of a session row asks
//! for, how a step-up merges its factors into the session's, and the book of decisions that the
//! AFTER trigger checks the final row against, each with the event its row owes.

use crate::core::factor::{self, given_up_event_type, kind};
use serde_json::Value;
use std::collections::HashMap;

/// The guarded columns of a session row, as a trigger reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardedColumns {
    pub organization_id: Option<String>,
    pub member_id: Option<String>,
    pub token: Option<String>,
    pub factors: Value,
}

/// What an UPDATE of a session row does to its guarded columns.
#[derive(Debug, PartialEq)]
pub enum UpdateRequest<'a> {
    /// No guarded column changes.
    Nothing,
    /// The organization or the member would change: refused.
    IdentityChange,
    /// The factors column would be written directly: refused.
    FactorsWritten,
    /// The token column is emptied; nothing else changes.
    TokenCleared,
    /// A new token is presented: a step-up.
    StepUp(&'a str),
}

/// Classifies an UPDATE from the row before and the row the statement (and the triggers before
/// the gate) proposes.
pub fn classify_update<'a>(old: &GuardedColumns, new: &'a GuardedColumns) -> UpdateRequest<'a> {
    if old.organization_id != new.organization_id || old.member_id != new.member_id {
        return UpdateRequest::IdentityChange;
    }
    match (&new.token, old.token == new.token) {
        // The factors a step-up brings replace whatever the statement wrote into the column.
        (Some(token), false) => UpdateRequest::StepUp(token),
        _ if old.factors != new.factors => UpdateRequest::FactorsWritten,
        (None, false) => UpdateRequest::TokenCleared,
        _ => UpdateRequest::Nothing,
    }
}

/// The session's factors after a step-up: each proven factor replaces an earlier one of the same
/// kind (so its `last_authenticated_at` is the fresh one) and the others stay. A column that is not
/// an array (NULL, or a row written before the table was guarded) counts as no factors.
pub fn merge_factors(existing: &Value, proven: &[Value]) -> Value {
    let mut merged: Vec<Value> = existing
        .as_array()
        .map(|factors| {
            factors
                .iter()
                .filter(|f| !proven.iter().any(|p| kind(p) == kind(f)))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    merged.extend(proven.iter().cloned());
    Value::Array(merged)
}

/// The factors a step-up proved, each keeping the first authentication of the session's factor
/// of its kind that it replaces (Stytch's `created_at`: when the factor was first authenticated),
/// stored only where it is earlier than the new `last_authenticated_at` (`factor::answered`
/// reads it). `verified` are the session's factors whose seal verifies: the time of a factor
/// without one is nobody's word, and the step-up's seal must not vouch for it.
pub fn first_authentications(verified: &[Value], proven: Vec<Value>) -> Vec<Value> {
    proven
        .into_iter()
        .map(|mut new| {
            let earlier = verified.iter().find(|f| kind(f) == kind(&new));
            if let (Some(earlier), Value::Object(object)) = (earlier, &mut new) {
                let first = factor::created_at(earlier).clone();
                if !first.is_null() && Some(&first) != object.get("last_authenticated_at") {
                    object.insert("created_at".into(), first);
                }
            }
            new
        })
        .collect()
}

/// The audit event of a decision that consumed a token: the session's (`session.allowed`, or
/// `session.stepped_up`), written once its row is; the login given up (`SessionEvent::given_up`)
/// when the row never is.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEvent {
    /// The request that decided.
    pub request_id: String,
    pub organization_id: String,
    pub member_id: String,
    /// A step-up's: the session table it was presented to. `None`: a new session.
    pub step_up_table: Option<String>,
    /// The login's story (`factor::login_story`).
    pub story: Value,
}

/// What `SessionEvent::given_up` writes.
#[derive(Debug, PartialEq)]
pub struct GivenUp {
    pub event_type: &'static str,
    pub request_id: String,
    pub details: Value,
}

impl SessionEvent {
    /// The event of a decision whose row was never written (an upsert met a conflict, a later
    /// trigger skipped the row): its token was consumed, so the login ends there. Like every login
    /// given up, under the request id of its start (the deciding request's when the story names
    /// none), with its story and `session_row_written: false`.
    pub fn given_up(self) -> GivenUp {
        let request_id = match self.story["request_ids"].get(0).and_then(Value::as_str) {
            Some(start) => start.to_string(),
            None => self.request_id,
        };
        let mut details = self.story;
        if let Value::Object(details) = &mut details {
            if let Some(table) = &self.step_up_table {
                details.insert("session_table".into(), Value::from(table.as_str()));
            }
            details.insert("session_row_written".into(), Value::Bool(false));
        }
        GivenUp {
            event_type: given_up_event_type(self.step_up_table.is_some()),
            request_id,
            details,
        }
    }
}

/// Where a decision is looked up: the table, the row event an UPDATE's decision is bound to (its
/// old tuple's position and contents; none for an INSERT), the session's identity and its
/// token's hash. An UPDATE's
/// decision serves only that row: one a later trigger skipped cannot be claimed by another row.
type TicketKey = (
    u32,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
);

/// The subtransaction id of the top-level transaction (PostgreSQL's `TopSubTransactionId`): what
/// is done at this level is undone only with the whole transaction.
pub const TOP_LEVEL: u32 = 1;

/// A BEFORE trigger's decision: the factors it wrote, the subtransaction it was made in, the one
/// in which a row claimed it, and the event its row owes (none for a token cleared: nothing was
/// consumed).
#[derive(Debug)]
struct Decision {
    made_in: u32,
    claimed_in: Option<u32>,
    factors: Value,
    event: Option<SessionEvent>,
}

/// A decision a row claimed: the event the row now owes.
#[derive(Debug, PartialEq)]
pub struct Claimed {
    pub event: Option<SessionEvent>,
}

/// The decisions the BEFORE triggers of this transaction made. A subtransaction that aborts takes
/// its decisions with it (its token consumption was undone too) and gives back the claims its rows
/// made (those rows and their events are gone); the decisions unclaimed at the end of the
/// transaction are rows that never landed.
#[derive(Debug, Default)]
pub struct DecisionBook {
    open: HashMap<TicketKey, Vec<Decision>>,
}

impl DecisionBook {
    /// Records a decision: the row of `table` must end as `(organization_id, member_id, token
    /// hash, factors)`, and then owes `event`.
    pub fn record(
        &mut self,
        table: u32,
        updated_row: Option<Vec<u8>>,
        row: &GuardedColumns,
        token_hash: Option<Vec<u8>>,
        subtransaction: u32,
        event: Option<SessionEvent>,
    ) {
        self.open
            .entry((
                table,
                updated_row,
                row.organization_id.clone(),
                row.member_id.clone(),
                token_hash,
            ))
            .or_default()
            .push(Decision {
                made_in: subtransaction,
                claimed_in: None,
                factors: row.factors.clone(),
                event,
            });
    }

    /// Claims, for a row written in `subtransaction`, an unclaimed decision that the final row
    /// matches exactly; `None` when there is none (a trigger that ran after the gate changed the
    /// row, or the row never passed a gate).
    pub fn claim(
        &mut self,
        table: u32,
        updated_row: Option<Vec<u8>>,
        row: &GuardedColumns,
        token_hash: Option<Vec<u8>>,
        subtransaction: u32,
    ) -> Option<Claimed> {
        let key = (
            table,
            updated_row,
            row.organization_id.clone(),
            row.member_id.clone(),
            token_hash,
        );
        let decisions = self.open.get_mut(&key)?;
        let at = decisions
            .iter()
            .position(|d| d.claimed_in.is_none() && d.factors == row.factors)?;
        if subtransaction != TOP_LEVEL {
            // Kept until the end: the claim is undone if this subtransaction aborts.
            let decision = &mut decisions[at];
            decision.claimed_in = Some(subtransaction);
            return Some(Claimed {
                event: decision.event.clone(),
            });
        }
        let decision = decisions.swap_remove(at);
        if decisions.is_empty() {
            self.open.remove(&key);
        }
        Some(Claimed {
            event: decision.event,
        })
    }

    /// Subtransaction `aborted` rolled back, and with it the subtransactions it contained (their
    /// ids are larger: ids only grow within a transaction, and one released into it is among
    /// them): their decisions are void, and the decisions their rows claimed are unclaimed again.
    pub fn abort_subtransaction(&mut self, aborted: u32) {
        self.open.retain(|_, decisions| {
            decisions.retain(|d| d.made_in < aborted);
            for decision in decisions.iter_mut() {
                if decision
                    .claimed_in
                    .is_some_and(|claimed| claimed >= aborted)
                {
                    decision.claimed_in = None;
                }
            }
            !decisions.is_empty()
        });
    }

    /// Empties the book: the events owed by decisions no row claimed (their rows never landed).
    pub fn take_unclaimed_events(&mut self) -> Vec<SessionEvent> {
        self.open
            .drain()
            .flat_map(|(_, decisions)| decisions)
            .filter(|d| d.claimed_in.is_none())
            .filter_map(|d| d.event)
            .collect()
    }

    /// The transaction ended.
    pub fn clear(&mut self) {
        self.open.clear();
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(org: &str, member: &str, token: Option<&str>, factors: Value) -> GuardedColumns {
        GuardedColumns {
            organization_id: Some(org.into()),
            member_id: Some(member.into()),
            token: token.map(str::to_string),
            factors,
        }
    }

    #[test]
    fn updates_are_classified_by_what_changes() {
        let f = json!([{"type": "password"}]);
        let old = row("o", "m", Some("t1"), f.clone());
        let same = old.clone();
        assert_eq!(classify_update(&old, &same), UpdateRequest::Nothing);
        assert_eq!(
            classify_update(&old, &row("o2", "m", Some("t1"), f.clone())),
            UpdateRequest::IdentityChange
        );
        assert_eq!(
            classify_update(&old, &row("o", "victim", Some("t2"), f.clone())),
            UpdateRequest::IdentityChange
        );
        assert_eq!(
            classify_update(&old, &row("o", "m", Some("t1"), json!([{"type": "totp"}]))),
            UpdateRequest::FactorsWritten
        );
        assert_eq!(
            classify_update(&old, &row("o", "m", None, f.clone())),
            UpdateRequest::TokenCleared
        );
        assert_eq!(
            classify_update(&old, &row("o", "m", None, json!([]))),
            UpdateRequest::FactorsWritten
        );
        // A step-up overrides whatever the statement wrote into the factors column.
        assert_eq!(
            classify_update(&old, &row("o", "m", Some("t2"), json!([{"type": "totp"}]))),
            UpdateRequest::StepUp("t2")
        );
    }

    #[test]
    fn a_step_up_refreshes_factors_of_its_kind_and_keeps_the_others() {
        let existing = json!([
            {"type": "password", "delivery_method": "password", "last_authenticated_at": "a"},
            {"type": "totp", "delivery_method": "authenticator_app", "last_authenticated_at": "b"}
        ]);
        let proven = [
            json!({"type": "totp", "delivery_method": "authenticator_app", "last_authenticated_at": "c"}),
        ];
        let merged = merge_factors(&existing, &proven);
        assert_eq!(
            merged,
            json!([
                {"type": "password", "delivery_method": "password", "last_authenticated_at": "a"},
                {"type": "totp", "delivery_method": "authenticator_app", "last_authenticated_at": "c"}
            ])
        );
        assert_eq!(merge_factors(&Value::Null, &proven), json!(proven));
    }

    #[test]
    fn a_step_up_keeps_the_first_authentication_of_a_factor_it_proves_again() {
        let totp = |at: &str| json!({"type": "totp", "delivery_method": "authenticator_app", "last_authenticated_at": at});
        let sms = json!({"type": "otp", "delivery_method": "sms", "last_authenticated_at": "c"});
        let verified = [
            json!({"type": "password", "delivery_method": "password", "last_authenticated_at": "a"}),
            totp("b"),
        ];
        let proven = first_authentications(&verified, vec![totp("c"), sms.clone()]);
        assert_eq!(proven[0]["created_at"], "b");
        // A factor new to the session stores nothing more.
        assert_eq!(proven[1], sms);
        // Again: the first authentication stays the first.
        let again = first_authentications(&proven, vec![totp("d")]);
        assert_eq!(again[0]["created_at"], "b");
        // Nothing verified of its kind: nothing carried.
        assert_eq!(first_authentications(&[], vec![totp("c")]), [totp("c")]);
    }

    fn event(member: &str, step_up_table: Option<&str>) -> SessionEvent {
        SessionEvent {
            request_id: format!("decided-{member}"),
            organization_id: "o".into(),
            member_id: member.into(),
            step_up_table: step_up_table.map(str::to_string),
            story: json!({"factors": ["password", "totp"], "authenticated_at": ["a", "b"],
                          "request_ids": ["start", "proof"]}),
        }
    }

    #[test]
    fn the_final_row_must_match_a_decision_exactly_once() {
        let mut book = DecisionBook::default();
        let decided = row("o", "m", Some("t"), json!([{"type": "totp"}]));
        book.record(7, None, &decided, Some(vec![1]), 1, Some(event("m", None)));
        // Rewritten after the decision: another member, other factors, another token, another table.
        let victim = row("o", "victim", Some("t"), json!([{"type": "totp"}]));
        assert!(book.claim(7, None, &victim, Some(vec![1]), 1).is_none());
        let other_factors = row("o", "m", Some("t"), json!([]));
        assert!(book
            .claim(7, None, &other_factors, Some(vec![1]), 1)
            .is_none());
        assert!(book.claim(7, None, &decided, Some(vec![2]), 1).is_none());
        assert!(book.claim(8, None, &decided, Some(vec![1]), 1).is_none());
        let claimed = book.claim(7, None, &decided, Some(vec![1]), 1).unwrap();
        assert_eq!(
            claimed.event,
            Some(event("m", None)),
            "the event its row owes"
        );
        assert!(
            book.claim(7, None, &decided, Some(vec![1]), 1).is_none(),
            "one decision, one row"
        );
        assert!(book.is_empty());
    }

    #[test]
    fn an_aborted_subtransaction_voids_its_decisions_and_its_childrens() {
        let mut book = DecisionBook::default();
        let a = row("o", "a", Some("t"), json!([]));
        let b = row("o", "b", Some("t"), json!([]));
        let c = row("o", "c", Some("t"), json!([]));
        book.record(1, None, &a, None, 1, None);
        book.record(1, None, &b, None, 2, None);
        book.record(1, None, &c, None, 3, None);
        book.abort_subtransaction(2);
        assert!(book.claim(1, None, &a, None, 1).is_some());
        assert!(book.claim(1, None, &b, None, 1).is_none());
        assert!(book.claim(1, None, &c, None, 1).is_none());
        book.record(1, None, &a, None, 4, None);
        book.clear();
        assert!(book.is_empty());
    }

    /// SAVEPOINT a (2); SAVEPOINT b (3); a row skipped; RELEASE b; then a sibling savepoint (4)
    /// rolls back, which keeps it, and a rolls back, which voids it.
    #[test]
    fn a_decision_released_into_a_savepoint_rolled_back_is_void() {
        let mut book = DecisionBook::default();
        let skipped = row("o", "m", Some("t"), json!([]));
        book.record(1, None, &skipped, None, 3, Some(event("m", None)));
        book.abort_subtransaction(4);
        assert!(!book.is_empty());
        book.abort_subtransaction(2);
        assert_eq!(book.take_unclaimed_events(), []);
    }

    /// A row skipped at the top level; its copy claims the decision inside savepoint 2, which
    /// rolls back: the row and its event are gone, so the decision owes its event again. A claim
    /// in savepoint 3 survives the abort of its sibling 4.
    #[test]
    fn a_claim_is_undone_with_its_subtransaction() {
        let mut book = DecisionBook::default();
        let skipped = row("o", "m", Some("t"), json!([]));
        book.record(1, None, &skipped, None, TOP_LEVEL, Some(event("m", None)));
        assert!(book.claim(1, None, &skipped, None, 2).is_some());
        assert!(book.claim(1, None, &skipped, None, 2).is_none(), "claimed");
        book.abort_subtransaction(2);
        assert!(
            book.claim(1, None, &skipped, None, 3).is_some(),
            "free again"
        );
        book.abort_subtransaction(4);
        assert!(
            book.claim(1, None, &skipped, None, 5).is_none(),
            "still claimed"
        );
        assert_eq!(book.take_unclaimed_events(), []);
        book.record(1, None, &skipped, None, TOP_LEVEL, Some(event("m", None)));
        assert!(book.claim(1, None, &skipped, None, 2).is_some());
        book.abort_subtransaction(2);
        assert_eq!(book.take_unclaimed_events(), [event("m", None)]);
    }

    #[test]
    fn the_decisions_no_row_matched_owe_their_events_at_the_end() {
        let mut book = DecisionBook::default();
        let landed = row("o", "a", Some("t1"), json!([]));
        book.record(1, None, &landed, None, 1, Some(event("a", None)));
        book.record(
            1,
            None,
            &row("o", "b", Some("t2"), json!([])),
            None,
            1,
            Some(event("b", None)),
        );
        // A token cleared consumed nothing and owes nothing.
        book.record(
            1,
            Some(vec![9]),
            &row("o", "c", None, json!([])),
            None,
            1,
            None,
        );
        assert!(book.claim(1, None, &landed, None, 1).is_some());
        assert_eq!(book.take_unclaimed_events(), [event("b", None)]);
        assert!(book.is_empty());
    }

    #[test]
    fn a_decision_given_up_is_told_under_its_start_without_a_row() {
        let given_up = event("m", None).given_up();
        assert_eq!(given_up.event_type, "login.abandoned");
        assert_eq!(given_up.request_id, "start");
        assert_eq!(
            given_up.details,
            json!({"factors": ["password", "totp"], "authenticated_at": ["a", "b"],
                   "request_ids": ["start", "proof"], "session_row_written": false})
        );
        let step_up = event("m", Some("app.sessions")).given_up();
        assert_eq!(step_up.event_type, "step_up.abandoned");
        assert_eq!(step_up.details["session_table"], "app.sessions");
        // A login of an earlier version names no request: the deciding one's.
        let mut legacy = event("m", None);
        legacy.story["request_ids"] = json!([]);
        assert_eq!(legacy.given_up().request_id, "decided-m");
    }
}
