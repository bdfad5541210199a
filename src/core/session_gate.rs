//! The pure side of the session gate on a guarded table: what an UPDATE of a session row asks
//! for, how a step-up merges its factors into the session's, and the book of decisions that the
//! AFTER trigger checks the final row against.

use crate::core::factor::{self, kind};
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

/// The decisions the BEFORE triggers of this transaction made and no AFTER trigger has matched
/// yet. Each holds the factors the gate wrote and the subtransaction it was made in: a
/// subtransaction that aborts takes its decisions with it (its token consumption was undone too).
#[derive(Debug, Default)]
pub struct DecisionBook {
    open: HashMap<TicketKey, Vec<(u32, Value)>>,
}

impl DecisionBook {
    /// Records a decision: the row of `table` must end as `(organization_id, member_id, token
    /// hash, factors)`.
    pub fn record(
        &mut self,
        table: u32,
        updated_row: Option<Vec<u8>>,
        row: &GuardedColumns,
        token_hash: Option<Vec<u8>>,
        subtransaction: u32,
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
            .push((subtransaction, row.factors.clone()));
    }

    /// Takes the decision that the final row matches exactly; false when there is none (a trigger
    /// that ran after the gate changed the row, or the row never passed a gate).
    pub fn take(
        &mut self,
        table: u32,
        updated_row: Option<Vec<u8>>,
        row: &GuardedColumns,
        token_hash: Option<Vec<u8>>,
    ) -> bool {
        let key = (
            table,
            updated_row,
            row.organization_id.clone(),
            row.member_id.clone(),
            token_hash,
        );
        let Some(decisions) = self.open.get_mut(&key) else {
            return false;
        };
        let Some(at) = decisions.iter().position(|(_, f)| *f == row.factors) else {
            return false;
        };
        decisions.swap_remove(at);
        if decisions.is_empty() {
            self.open.remove(&key);
        }
        true
    }

    /// Subtransaction `aborted` rolled back: its decisions, and those of the subtransactions it
    /// contained (their ids are larger: ids only grow within a transaction), are void.
    pub fn abort_subtransaction(&mut self, aborted: u32) {
        self.open.retain(|_, decisions| {
            decisions.retain(|(sub, _)| *sub < aborted);
            !decisions.is_empty()
        });
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

    #[test]
    fn the_final_row_must_match_a_decision_exactly_once() {
        let mut book = DecisionBook::default();
        let decided = row("o", "m", Some("t"), json!([{"type": "totp"}]));
        book.record(7, None, &decided, Some(vec![1]), 1);
        // Rewritten after the decision: another member, other factors, another token, another table.
        assert!(!book.take(
            7,
            None,
            &row("o", "victim", Some("t"), json!([{"type": "totp"}])),
            Some(vec![1])
        ));
        assert!(!book.take(7, None, &row("o", "m", Some("t"), json!([])), Some(vec![1])));
        assert!(!book.take(7, None, &decided, Some(vec![2])));
        assert!(!book.take(8, None, &decided, Some(vec![1])));
        assert!(book.take(7, None, &decided, Some(vec![1])));
        assert!(
            !book.take(7, None, &decided, Some(vec![1])),
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
        book.record(1, None, &a, None, 1);
        book.record(1, None, &b, None, 2);
        book.record(1, None, &c, None, 3);
        book.abort_subtransaction(2);
        assert!(book.take(1, None, &a, None));
        assert!(!book.take(1, None, &b, None));
        assert!(!book.take(1, None, &c, None));
        book.record(1, None, &a, None, 4);
        book.clear();
        assert!(book.is_empty());
    }
}
