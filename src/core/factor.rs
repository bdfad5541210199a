//! The factors a login proves, typed, and their Stytch `authentication_factors` JSON: written at
//! the edge (the statement that records a factor, the answers), read back only to decide.

use crate::core::policy::{PrimaryMethod, SecondFactor};
use serde_json::{json, Value};

/// A factor proven with an intermediate session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Factor {
    /// The application's own primary check, reported to `primary_authenticate`.
    Primary(PrimaryMethod),
    /// A code from the member's authenticator app.
    Totp { totp_id: String },
    /// A code sent by SMS to the member's phone.
    SmsOtp {
        phone_id: Option<String>,
        phone_number: String,
    },
    /// One of the member's recovery codes.
    RecoveryCode,
    /// A device the member remembered after an earlier second factor. Not a second factor of
    /// its own: it meets the policy at the session gate, but never counts as a step-up, as the
    /// proof that enrolling a new factor needs, or in `mfa.last_mfa_at`.
    RememberedDevice { device_id: String },
}

impl Factor {
    /// Stytch's shape (without `last_authenticated_at`, which the recording statement adds from
    /// the clock).
    pub fn to_json(&self) -> Value {
        match self {
            Factor::Primary(method) => {
                json!({ "type": method.as_str(), "delivery_method": method.as_str() })
            }
            Factor::Totp { totp_id } => json!({
                "type": "totp",
                "delivery_method": "authenticator_app",
                "authenticator_app_factor": { "totp_id": totp_id },
            }),
            Factor::SmsOtp {
                phone_id,
                phone_number,
            } => json!({
                "type": "otp",
                "delivery_method": "sms",
                "phone_number_factor": { "phone_id": phone_id, "phone_number": phone_number },
            }),
            Factor::RecoveryCode => {
                json!({ "type": "recovery_codes", "delivery_method": "recovery_code" })
            }
            Factor::RememberedDevice { device_id } => json!({
                "type": "remembered_device",
                "delivery_method": "device_token",
                "remembered_device_factor": { "device_id": device_id },
            }),
        }
    }
}

/// The second factor a stored factor (`to_json`'s shape) is, by its `type` and `delivery_method`.
pub fn stored_second_factor(stored: &Value) -> Option<SecondFactor> {
    match (stored["type"].as_str(), stored["delivery_method"].as_str()) {
        (Some("otp"), Some("sms")) => Some(SecondFactor::SmsOtp),
        (Some("totp"), _) => Some(SecondFactor::Totp),
        (Some("recovery_codes"), _) => Some(SecondFactor::RecoveryCode),
        _ => None,
    }
}

/// The remembered device among a login's stored `authentication_factors`, by its id.
pub fn remembered_device_id(stored: &[Value]) -> Option<&str> {
    stored
        .iter()
        .find(|f| f["type"] == "remembered_device")
        .and_then(|f| f["remembered_device_factor"]["device_id"].as_str())
}

/// The second factors among a login's stored `authentication_factors`.
pub fn second_factors(stored: &[Value]) -> Vec<SecondFactor> {
    stored.iter().filter_map(stored_second_factor).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_factor_reads_back_as_what_it_is() {
        let factors = [
            Factor::Primary(PrimaryMethod::Password),
            Factor::Totp {
                totp_id: "t-1".into(),
            },
            Factor::SmsOtp {
                phone_id: Some("p-1".into()),
                phone_number: "+15555550123".into(),
            },
            Factor::RecoveryCode,
            Factor::RememberedDevice {
                device_id: "d-1".into(),
            },
        ];
        let stored: Vec<Value> = factors.iter().map(Factor::to_json).collect();
        assert_eq!(remembered_device_id(&stored), Some("d-1"));
        assert_eq!(remembered_device_id(&stored[..4]), None);
        assert_eq!(
            second_factors(&stored),
            [
                SecondFactor::Totp,
                SecondFactor::SmsOtp,
                SecondFactor::RecoveryCode
            ]
        );
    }

    #[test]
    fn stytch_shapes() {
        assert_eq!(
            Factor::Primary(PrimaryMethod::Sso).to_json(),
            json!({ "type": "sso", "delivery_method": "sso" })
        );
        assert_eq!(
            Factor::Totp {
                totp_id: "t".into()
            }
            .to_json()["authenticator_app_factor"]["totp_id"],
            "t"
        );
        // An SMS code's `type` is `otp`: a primary `email_otp` is not an SMS second factor.
        assert_eq!(
            stored_second_factor(&Factor::Primary(PrimaryMethod::EmailOtp).to_json()),
            None
        );
    }
}
