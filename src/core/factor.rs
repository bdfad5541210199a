//! The factors a login proves, typed, and their Stytch `authentication_factors` JSON: written at
//! the edge (the statement that records a factor, the answers), read back only to decide.

use crate::core::policy::{PrimaryFactor, SecondFactor};
use serde_json::{json, Value};

/// A factor proven with an intermediate session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Factor {
    /// The application's own primary check, reported to `primary_authenticate`.
    Primary(PrimaryFactor),
    /// A code from the member's authenticator app.
    Totp { totp_id: String },
    /// A code sent by SMS to the member's phone.
    SmsOtp {
        phone_id: Option<String>,
        phone_number: String,
    },
    /// A signature from one of the member's passkeys (WebAuthn).
    Webauthn {
        registration_id: String,
        domain: String,
        user_agent: Option<String>,
        /// The passkey may be synced to other devices (backup eligible).
        backup_eligible: bool,
        user_verified: bool,
        /// A new passkey's first signature: it proves the key, not that the member who enrolled
        /// it earlier is here, so it is no phishing-resistant sign-in.
        registration: bool,
    },
    /// One of the member's recovery codes: which one (`core::ids::recovery_code_id`).
    RecoveryCode { recovery_code_id: String },
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
            Factor::Primary(primary) => {
                json!({ "type": primary.method.as_str(), "delivery_method": primary.delivery_method })
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
            Factor::Webauthn {
                registration_id,
                domain,
                user_agent,
                backup_eligible,
                user_verified,
                registration,
            } => json!({
                "type": "webauthn",
                "delivery_method": "webauthn_registration",
                "webauthn_factor": {
                    "webauthn_registration_id": registration_id,
                    "domain": domain,
                    "user_agent": user_agent,
                    "backup_eligible": backup_eligible,
                    "user_verified": user_verified,
                    "ceremony": if *registration { "registration" } else { "authentication" },
                },
            }),
            Factor::RecoveryCode { recovery_code_id } => json!({
                "type": "recovery_codes",
                "delivery_method": "recovery_code",
                "recovery_code_factor": { "totp_recovery_code_id": recovery_code_id },
            }),
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
        (Some("webauthn"), _) => Some(SecondFactor::Webauthn),
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

/// What makes two factors the same one of a session: their type and delivery method (a step-up
/// that proves a factor again replaces the earlier one of its kind).
pub fn kind(factor: &Value) -> (Option<&str>, Option<&str>) {
    (factor["type"].as_str(), factor["delivery_method"].as_str())
}

/// Stytch's `created_at`: when the factor was first authenticated (in the session). Stored only
/// where it differs from `last_authenticated_at` — on a factor a step-up authenticated again —
/// and otherwise that time: a factor authenticated once was first and last authenticated at once.
pub fn created_at(factor: &Value) -> &Value {
    match &factor["created_at"] {
        Value::Null => &factor["last_authenticated_at"],
        stored => stored,
    }
}

/// The factors as answered: each with Stytch's `created_at` (the first authentication of its
/// kind among `stored`, which keeps the order they were proven in) and `updated_at` (when it
/// last changed: a factor of a session changes only when it is authenticated again, so its
/// `last_authenticated_at`). Computed here rather than stored, so that a login's rows and a
/// session's sealed column carry no more than `last_authenticated_at`.
pub fn answered(stored: &[Value]) -> Vec<Value> {
    stored
        .iter()
        .map(|factor| {
            let Value::Object(mut object) = factor.clone() else {
                return factor.clone();
            };
            let first = stored
                .iter()
                .find(|earlier| kind(earlier) == kind(factor))
                .map(created_at)
                .unwrap_or(&Value::Null)
                .clone();
            let updated = factor["last_authenticated_at"].clone();
            object.insert("created_at".into(), first);
            object.insert("updated_at".into(), updated);
            Value::Object(object)
        })
        .collect()
}

/// A login's story, the details of its one audit event (the session's, or its `login.abandoned`
/// when it ends without one): the type of each factor, when it was proven and the request that
/// proved it, in order (`request_ids` holds one for each factor of `stored`). Never a secret:
/// types, times and request ids only.
pub fn login_story(stored: &[Value], request_ids: &[String]) -> Value {
    serde_json::json!({
        "factors": stored.iter().map(|f| f["type"].clone()).collect::<Vec<_>>(),
        "authenticated_at": stored
            .iter()
            .map(|f| f["last_authenticated_at"].clone())
            .collect::<Vec<_>>(),
        "request_ids": request_ids,
    })
}

/// The event of a login that ended without a session (`login.abandoned`), or of a step-up whose
/// proven factors were never applied to one (`step_up.abandoned`).
pub fn given_up_event_type(step_up: bool) -> &'static str {
    if step_up {
        "step_up.abandoned"
    } else {
        "login.abandoned"
    }
}

/// Whether the newest second factor among `stored` is a sign-in with a registered passkey:
/// phishing-resistant (the browser bound its signature to the site's origin), as NIST SP
/// 800-63B and CISA ask of MFA. A passkey registered in the login does not count: whoever
/// phished the login's other factor could have registered it. Factors are stored in the order
/// they were proven (a step-up appends), so the newest is the last.
pub fn phishing_resistant(stored: &[Value]) -> bool {
    stored
        .iter()
        .rev()
        .find(|f| stored_second_factor(f).is_some())
        .is_some_and(|f| {
            stored_second_factor(f) == Some(SecondFactor::Webauthn)
                && f["webauthn_factor"]["ceremony"] == "authentication"
        })
}

/// The authentication method references (RFC 8176) of a session's factors, for an OIDC `amr`
/// claim: `pwd` (a password), `otp` (a one-time code: email OTP, authenticator app, recovery
/// code), `sms`, `swk` (a passkey: without a trusted attestation nothing proves its key is held
/// in hardware, so `hwk` is never claimed), `user` (a registered passkey's user verification),
/// `mfa` (more than one kind of factor). Sorted, no repeats.
pub fn amr(stored: &[Value]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    let mut kinds = 0;
    for factor in stored {
        match (factor["type"].as_str(), factor["delivery_method"].as_str()) {
            (Some("password"), _) => out.push("pwd"),
            (Some("email_otp"), _) | (Some("totp"), _) | (Some("recovery_codes"), _) => {
                out.push("otp")
            }
            (Some("otp"), Some("sms")) => out.push("sms"),
            (Some("webauthn"), _) => {
                let passkey = &factor["webauthn_factor"];
                out.push("swk");
                if passkey["user_verified"].as_bool() == Some(true)
                    && passkey["ceremony"] == "authentication"
                {
                    out.push("user");
                }
            }
            _ => {}
        }
        // Every factor but a remembered device (which stands in for an earlier one) is a kind
        // of proof of its own, named in `amr` or not (SSO, a magic link).
        if factor["type"]
            .as_str()
            .is_some_and(|t| t != "remembered_device")
        {
            kinds += 1;
        }
    }
    if kinds >= 2 {
        out.push("mfa");
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_login_story_names_each_factor_its_time_and_request_only() {
        let stored = [
            serde_json::json!({"type": "password", "delivery_method": "knowledge",
                               "last_authenticated_at": "2026-12-06T08:00:00+00:00"}),
            serde_json::json!({"type": "totp", "delivery_method": "authenticator_app",
                               "authenticator_app_factor": {"totp_id": "t-1"},
                               "last_authenticated_at": "2026-12-06T08:00:05+00:00", "mfa_seal": "x"}),
        ];
        let story = super::login_story(&stored, &["r1".into(), "r2".into()]);
        assert_eq!(
            story,
            serde_json::json!({"factors": ["password", "totp"],
                               "authenticated_at": ["2026-12-06T08:00:00+00:00", "2026-12-06T08:00:05+00:00"],
                               "request_ids": ["r1", "r2"]})
        );
    }

    use super::*;

    fn primary(name: &str) -> PrimaryFactor {
        PrimaryFactor::parse(name).unwrap()
    }

    #[test]
    fn every_factor_reads_back_as_what_it_is() {
        let factors = [
            Factor::Primary(primary("password")),
            Factor::Totp {
                totp_id: "t-1".into(),
            },
            Factor::SmsOtp {
                phone_id: Some("p-1".into()),
                phone_number: "+15555550123".into(),
            },
            Factor::RecoveryCode {
                recovery_code_id: "r-1".into(),
            },
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

    fn webauthn(registration: bool, user_verified: bool) -> Value {
        Factor::Webauthn {
            registration_id: "w-1".into(),
            domain: "example.com".into(),
            user_agent: None,
            backup_eligible: true,
            user_verified,
            registration,
        }
        .to_json()
    }

    #[test]
    fn phishing_resistance_is_the_newest_second_factor() {
        let password = Factor::Primary(primary("password")).to_json();
        let totp = Factor::Totp {
            totp_id: "t".into(),
        }
        .to_json();
        let passkey = webauthn(false, true);
        assert!(!phishing_resistant(std::slice::from_ref(&password)));
        // A passkey registered in the login proves a new key only.
        assert!(!phishing_resistant(&[
            password.clone(),
            totp.clone(),
            webauthn(true, true)
        ]));
        assert!(!phishing_resistant(&[password.clone(), totp.clone()]));
        assert!(phishing_resistant(&[password.clone(), passkey.clone()]));
        // A step-up by TOTP after a passkey: the session's newest proof can be phished.
        assert!(!phishing_resistant(&[
            password.clone(),
            passkey.clone(),
            totp.clone()
        ]));
        assert!(phishing_resistant(&[password, totp, passkey]));
    }

    #[test]
    fn authentication_method_references() {
        let password = Factor::Primary(primary("password")).to_json();
        let sso = Factor::Primary(primary("sso")).to_json();
        let sms = Factor::SmsOtp {
            phone_id: None,
            phone_number: "+15555550123".into(),
        }
        .to_json();
        assert_eq!(amr(std::slice::from_ref(&password)), ["pwd"]);
        assert_eq!(amr(&[password.clone(), sms]), ["mfa", "pwd", "sms"]);
        assert_eq!(
            amr(&[password.clone(), webauthn(false, true)]),
            ["mfa", "pwd", "swk", "user"]
        );
        assert_eq!(
            amr(&[password.clone(), webauthn(true, true)]),
            ["mfa", "pwd", "swk"]
        );
        assert_eq!(amr(&[sso.clone(), webauthn(false, false)]), ["mfa", "swk"]);
        assert_eq!(amr(&[sso]), Vec::<&str>::new());
        let device = Factor::RememberedDevice {
            device_id: "d".into(),
        }
        .to_json();
        assert_eq!(amr(&[password, device]), ["pwd"]);
    }

    fn at(mut factor: Value, time: &str) -> Value {
        factor["last_authenticated_at"] = time.into();
        factor
    }

    #[test]
    fn answered_times_are_stytch_s() {
        let password = at(Factor::Primary(primary("password")).to_json(), "t1");
        let totp = Factor::Totp {
            totp_id: "t".into(),
        }
        .to_json();
        // Once each: first and last authentication and last change are the one time.
        let once = answered(&[password.clone(), at(totp.clone(), "t2")]);
        for (factor, time) in once.iter().zip(["t1", "t2"]) {
            assert_eq!(factor["created_at"], time);
            assert_eq!(factor["updated_at"], time);
            assert_eq!(factor["last_authenticated_at"], time);
        }
        // Proven twice in one login: the second carries the first's creation.
        let twice = answered_twice(&totp);
        assert_eq!(twice[1]["created_at"], "t2");
        assert_eq!(twice[1]["updated_at"], "t3");
        // A session's factor a step-up authenticated again stores its creation.
        let mut stepped = at(totp, "t4");
        stepped["created_at"] = "t2".into();
        let again = answered(&[password, stepped]);
        assert_eq!(again[1]["created_at"], "t2");
        assert_eq!(again[1]["updated_at"], "t4");
    }

    fn answered_twice(totp: &Value) -> Vec<Value> {
        answered(&[at(totp.clone(), "t2"), at(totp.clone(), "t3")])
    }

    #[test]
    fn stytch_shapes() {
        assert_eq!(
            Factor::Primary(primary("sso")).to_json(),
            json!({ "type": "sso", "delivery_method": "sso" })
        );
        assert_eq!(
            Factor::Totp {
                totp_id: "t".into()
            }
            .to_json()["authenticator_app_factor"]["totp_id"],
            "t"
        );
        assert_eq!(
            Factor::RecoveryCode {
                recovery_code_id: "r".into()
            }
            .to_json(),
            json!({ "type": "recovery_codes", "delivery_method": "recovery_code",
                    "recovery_code_factor": { "totp_recovery_code_id": "r" } })
        );
        // An SMS code's `type` is `otp`: a primary `email_otp` is not an SMS second factor.
        assert_eq!(
            stored_second_factor(&Factor::Primary(primary("email_otp")).to_json()),
            None
        );
    }
}
