//! The success of a second-factor attempt as one statement (`attempt_success.sql`). Failures do
//! not come here: the attempt ledger counts and audits them (`store::ledger`), so they outlive a
//! rolled-back caller.

use crate::core::policy::MfaMethod;
use crate::error::MfaResult;
use crate::store::audit::Event;
use crate::store::jsonb::Jsonb;
use crate::store::spi;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::JsonB;
use serde_json::Value;

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

impl Spend {
    fn method(&self) -> &'static str {
        match self {
            Spend::TotpStep(_) => MfaMethod::Totp.as_str(),
            Spend::SmsCode => MfaMethod::SmsOtp.as_str(),
            Spend::RecoveryCode => "recovery_code",
        }
    }
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
    let recorded = spi::typed_row(
        include_str!("sql/attempt_success.sql"),
        &[
            event.organization_id.into(),
            event.member_id.into(),
            event.request_id.into(),
            event.event_type.into(),
            Jsonb(event.details.clone()).into(),
            spend.method().into(),
            step.into(),
            login_token_hash.map(<[u8]>::to_vec).into(),
            // Recorded only on a login: not even converted without one.
            login_token_hash.map(|_| Jsonb(proven)).into(),
            member.changed.into(),
            member.mfa_enrolled.into(),
            member.default_mfa_method.into(),
            member.mfa_phone_number_verified.into(),
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
