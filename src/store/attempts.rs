//! The success of a second-factor attempt: one statement of `attempt_success.*.sql` parts, then
//! its audit event (`event_insert.sql`). Failures do
//! not come here: the attempt ledger counts and audits them (`server::ledger`), so they outlive a
//! rolled-back caller.

use crate::error::MfaResult;
use crate::store::audit::{self, Event};
use crate::store::jsonb::Jsonb;
use crate::store::spi;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::JsonB;
use serde_json::Value;
use std::sync::LazyLock;

/// How the proven factor is spent.
pub enum Spend {
    /// An authenticator-app code: the step it matched becomes the last used (a pending app is
    /// activated).
    TotpStep(i64),
    /// The member's live SMS code is used up.
    SmsCode,
    /// A recovery code, spent already by the statement that found it.
    RecoveryCode,
    /// A passkey's signature: its challenge was consumed and its counter moved by the
    /// statements that checked it.
    Passkey,
}

/// The member's fields a success writes, when `changed`.
pub struct MemberChange<'a> {
    pub changed: bool,
    pub mfa_enrolled: bool,
    pub default_mfa_method: Option<&'a str>,
    pub mfa_phone_number_verified: bool,
}

/// What the statement returns: the login's factors after this one (with a login), the member's
/// new `updated_at` (when they changed).
pub struct Recorded {
    pub factors: Option<Value>,
    pub updated_at: Option<TimestampWithTimeZone>,
}

/// The statement of one shape of success, made once; `None` for a success that writes nothing
/// but its event (a recovery code or a passkey, without a login, the member unchanged).
fn success_statement(
    spend: &Spend,
    with_login: bool,
    member_changes: bool,
) -> Option<&'static str> {
    static STATEMENTS: LazyLock<Vec<Option<String>>> = LazyLock::new(|| {
        let mut statements = Vec::with_capacity(12);
        for spend in [Spend::TotpStep(0), Spend::SmsCode, Spend::RecoveryCode] {
            for with_login in [false, true] {
                for member_changes in [false, true] {
                    statements.push(shape(&spend, with_login, member_changes));
                }
            }
        }
        statements
    });
    let spend = match spend {
        Spend::TotpStep(_) => 0,
        Spend::SmsCode => 1,
        Spend::RecoveryCode | Spend::Passkey => 2,
    };
    STATEMENTS[spend * 4 + usize::from(with_login) * 2 + usize::from(member_changes)].as_deref()
}

/// A successful second-factor attempt, in one statement: the factor is spent
/// (`attempt_success.spend_*.sql`; a recovery code was spent by the statement that found it),
/// recorded on the login when the attempt came with one (`attempt_success.login.sql`), and the
/// member's enrollment, default method and verified phone written when they change
/// (`attempt_success.member.sql`). Each success runs only the parts it needs: every table a
/// statement names costs a lock even when it writes nothing there, and a backend keeps only 16
/// in its fast path. What the final SELECT reads of a part left out is NULL.
/// The audit event is not a CTE of it but the next statement (`record_success`): on Citus an
/// INSERT in a CTE turns the statement into subplans with intermediate results; UPDATE CTEs that
/// all filter on the organization keep it one router query on the organization's shard.
///   $1 organization_id   $2 member_id   $3 request_id   $4 event_type   $5 event details
///   $6 the TOTP step the code matched   $7 the login's token hash   $8 the proven factor (Stytch
///   JSON)   $9 mfa_enrolled   $10 default_mfa_method   $11 mfa_phone_number_verified
///   $12 the clock
fn shape(spend: &Spend, with_login: bool, member_changes: bool) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    match spend {
        Spend::TotpStep(_) => parts.push(include_str!("sql/attempt_success.spend_totp.sql")),
        Spend::SmsCode => parts.push(include_str!("sql/attempt_success.spend_sms_code.sql")),
        Spend::RecoveryCode | Spend::Passkey => {}
    }
    if with_login {
        parts.push(include_str!("sql/attempt_success.login.sql"));
    }
    if member_changes {
        parts.push(include_str!("sql/attempt_success.member.sql"));
    }
    if parts.is_empty() {
        return None;
    }
    let factors = match with_login {
        true => "(SELECT factors FROM proven)",
        false => "NULL::jsonb",
    };
    let updated_at = match member_changes {
        true => "(SELECT updated_at FROM changed)",
        false => "NULL::timestamptz",
    };
    let parts: Vec<&str> = parts.iter().map(|part| part.trim_end()).collect();
    Some(format!(
        "WITH\n{}\nSELECT {factors} AS factors, {updated_at} AS updated_at",
        parts.join(",\n")
    ))
}

/// Records a success: `proven` (Stytch JSON) goes onto the login whose token hashes to
/// `login_token_hash`, if any (with the request that proved it); then its event, in the same
/// transaction (a caller that fails after it undoes both), unless `in_login_story`: the success
/// changed nothing but the login, whose own event will tell of it.
pub fn record_success(
    event: &Event,
    in_login_story: bool,
    spend: &Spend,
    login_token_hash: Option<&[u8]>,
    proven: Value,
    member: &MemberChange,
) -> MfaResult<Recorded> {
    let step = match spend {
        Spend::TotpStep(step) => Some(*step),
        _ => None,
    };
    let recorded = match success_statement(spend, login_token_hash.is_some(), member.changed) {
        None => Recorded {
            factors: None,
            updated_at: None,
        },
        Some(statement) => {
            // $1–$5 stay the event's (unused by the statement's parts but for $1, $2): the
            // parts keep their parameter numbers.
            let mut args = Vec::from(event.args());
            args.extend([
                step.into(),
                login_token_hash.map(<[u8]>::to_vec).into(),
                // Recorded only on a login: not even converted without one.
                login_token_hash.map(|_| Jsonb(proven)).into(),
                member.mfa_enrolled.into(),
                member.default_mfa_method.into(),
                member.mfa_phone_number_verified.into(),
                spi::clock().into(),
            ]);
            let recorded = spi::typed_row(statement, &args, |row| {
                Ok(Recorded {
                    factors: row.get_by_name::<JsonB, _>("factors")?.map(|JsonB(f)| f),
                    updated_at: row.get_by_name::<TimestampWithTimeZone, _>("updated_at")?,
                })
            })?;
            recorded.expect("one row")
        }
    };
    if !(in_login_story && login_token_hash.is_some()) {
        audit::write(event)?;
    }
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::without_comments as code;

    #[test]
    fn each_shape_has_exactly_its_parts() {
        for (spend, name) in [
            (Spend::TotpStep(1), "mfa.totp_registrations"),
            (Spend::SmsCode, "mfa.sms_codes"),
            (Spend::RecoveryCode, ""),
        ] {
            for with_login in [false, true] {
                for member_changes in [false, true] {
                    let Some(statement) = success_statement(&spend, with_login, member_changes)
                    else {
                        // Only a success that writes nothing but its event has no statement.
                        assert!(name.is_empty() && !with_login && !member_changes);
                        continue;
                    };
                    let statement = code(statement);
                    let tables = [
                        "mfa.totp_registrations",
                        "mfa.sms_codes",
                        "mfa.intermediate_sessions",
                        "mfa.members",
                    ];
                    let expected = [
                        name == tables[0],
                        name == tables[1],
                        with_login,
                        member_changes,
                    ];
                    for (table, expected) in tables.iter().zip(expected) {
                        assert_eq!(statement.contains(table), expected, "{table}: {statement}");
                    }
                    // The event is a statement of its own (router queries on Citus).
                    assert!(!statement.contains("INTO mfa.events"), "{statement}");
                    assert_eq!(statement.contains("FROM proven"), with_login);
                    assert_eq!(statement.contains("FROM changed"), member_changes);
                    // No dangling comma before the SELECT or after WITH.
                    assert!(!statement.contains(",\n\nSELECT") && !statement.contains("WITH\n,"));
                    let (parts, _) = statement.rsplit_once("\nSELECT ").expect("a SELECT");
                    assert!(parts.trim_end().ends_with(')'), "{statement}");
                }
            }
        }
    }
}
