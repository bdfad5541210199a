//! The success of a second-factor attempt as one statement (`attempt_success.sql`). Failures do
//! not come here: the attempt ledger counts and audits them (`server::ledger`), so they outlive a
//! rolled-back caller.

use crate::error::MfaResult;
use crate::store::audit::Event;
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

/// The statement of one shape of success: `attempt_success.sql` with the parts it needs.
fn success_statement(spend: &Spend, with_login: bool, member_changes: bool) -> &'static str {
    static STATEMENTS: LazyLock<Vec<String>> = LazyLock::new(|| {
        let mut statements = Vec::with_capacity(12);
        for spend in ["spend_totp", "spend_sms_code", ""] {
            for with_login in [false, true] {
                for member_changes in [false, true] {
                    statements.push(shape(spend, with_login, member_changes));
                }
            }
        }
        statements
    });
    let spend = match spend {
        Spend::TotpStep(_) => 0,
        Spend::SmsCode => 1,
        Spend::RecoveryCode => 2,
    };
    &STATEMENTS[spend * 4 + usize::from(with_login) * 2 + usize::from(member_changes)]
}

/// `attempt_success.sql` with the spend part named `spend` (none when empty), the login part and
/// the member part when asked for, and the audit part; what the final SELECT reads of a part left
/// out is NULL.
fn shape(spend: &str, with_login: bool, member_changes: bool) -> String {
    let file = include_str!("sql/attempt_success.sql");
    let (head, rest) = file
        .split_once("WITH\n")
        .expect("the statement starts with WITH");
    let (parts, select) = rest
        .rsplit_once("\nSELECT ")
        .expect("the statement ends with its SELECT");
    let wanted = |name: &str| match name {
        "spend_totp" | "spend_sms_code" => name == spend,
        "login" => with_login,
        "member" => member_changes,
        _ => true,
    };
    let kept: Vec<&str> = parts
        .split("-- part ")
        .filter(|part| !part.trim().is_empty())
        .filter(|part| wanted(part.split([':', '\n']).next().unwrap_or_default()))
        .map(|part| part.trim_end().trim_end_matches(','))
        .collect();
    let mut select = format!("SELECT {select}");
    if !with_login {
        select = select.replace("(SELECT factors FROM proven)", "NULL::jsonb");
    }
    if !member_changes {
        select = select.replace("(SELECT updated_at FROM changed)", "NULL::timestamptz");
    }
    let kept: Vec<String> = kept.iter().map(|part| format!("-- part {part}")).collect();
    format!("{head}WITH\n{}\n{select}", kept.join(",\n"))
}

/// Records a success: `proven` (Stytch JSON) goes onto the login whose token hashes to
/// `login_token_hash`, if any.
pub fn record_success(
    event: &Event,
    spend: &Spend,
    login_token_hash: Option<&[u8]>,
    proven: Value,
    member: &MemberChange,
) -> MfaResult<Recorded> {
    let step = match spend {
        Spend::TotpStep(step) => Some(*step),
        _ => None,
    };
    let statement = success_statement(spend, login_token_hash.is_some(), member.changed);
    let recorded = spi::typed_row(
        statement,
        &[
            event.organization_id.into(),
            event.member_id.into(),
            event.request_id.into(),
            event.event_type.into(),
            Jsonb(event.details.clone()).into(),
            step.into(),
            login_token_hash.map(<[u8]>::to_vec).into(),
            // Recorded only on a login: not even converted without one.
            login_token_hash.map(|_| Jsonb(proven)).into(),
            member.mfa_enrolled.into(),
            member.default_mfa_method.into(),
            member.mfa_phone_number_verified.into(),
            spi::clock().into(),
        ],
        |row| {
            Ok(Recorded {
                factors: row.get_by_name::<JsonB, _>("factors")?.map(|JsonB(f)| f),
                updated_at: row.get_by_name::<TimestampWithTimeZone, _>("updated_at")?,
            })
        },
    )?;
    Ok(recorded.expect("one row"))
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
                    let statement = code(success_statement(&spend, with_login, member_changes));
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
                    assert_eq!(statement.matches("INTO mfa.events").count(), 1);
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
