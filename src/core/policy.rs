//! Organization MFA policy and the decisions made from it: the values, their validation, whether a
//! login needs a second factor, and whether the factors of a login satisfy the policy.
//! Pure logic; `store::organizations` keeps the policy, `flow::gate` applies the session decision.

use crate::error::{err, ErrorType, MfaResult};
use std::fmt;

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $error:expr, $what:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the exact (case-sensitive) value, as Stytch does.
            pub fn parse(value: &str) -> MfaResult<Self> {
                match value {
                    $($text => Ok($name::$variant),)+
                    other => err(
                        $error,
                        format!(
                            "{} must be one of {}; got {:?}.",
                            $what,
                            [$($text),+].join(", "),
                            crate::core::policy::truncate_for_message(other)
                        ),
                    ),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Whether an organization requires MFA of all members or leaves it to each.
    MfaPolicy, ErrorType::InvalidOrganizationMfaPolicy, "mfa_policy" {
        RequiredForAll => "REQUIRED_FOR_ALL",
        Optional => "OPTIONAL",
    }
);

text_enum!(
    /// Whether every MFA method is allowed or only `allowed_mfa_methods`.
    MfaMethods, ErrorType::InvalidOrganizationMfaMethods, "mfa_methods" {
        AllAllowed => "ALL_ALLOWED",
        Restricted => "RESTRICTED",
    }
);

text_enum!(
    /// A second-factor method a member can enroll.
    MfaMethod, ErrorType::InvalidOrganizationAllowedMfaMethods, "each of allowed_mfa_methods" {
        SmsOtp => "sms_otp",
        Totp => "totp",
        Webauthn => "webauthn",
    }
);

/// The kinds of primary factor the application may report to `primary_authenticate` (by these
/// names or Stytch's, see `PrimaryFactor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimaryMethod {
    Password,
    MagicLink,
    EmailOtp,
    Sso,
    Oauth,
    Passkey,
    Impersonation,
}

impl PrimaryMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PrimaryMethod::Password => "password",
            PrimaryMethod::MagicLink => "magic_link",
            PrimaryMethod::EmailOtp => "email_otp",
            PrimaryMethod::Sso => "sso",
            PrimaryMethod::Oauth => "oauth",
            PrimaryMethod::Passkey => "passkey",
            PrimaryMethod::Impersonation => "impersonation",
        }
    }
}

/// A primary factor as the application reports it to `primary_authenticate`: the kind, and the
/// delivery method its factor carries, as Stytch writes them (`password` / `knowledge`,
/// `magic_link` / `email`, `sso` / `sso_saml`, `oauth` / `oauth_google`, …). The application may
/// name either: ours, or Stytch's delivery method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryFactor {
    pub method: PrimaryMethod,
    pub delivery_method: &'static str,
}

/// Every name `primary_authenticate` accepts, with the factor it stands for.
const PRIMARY_FACTORS: [(&str, PrimaryMethod, &str); 22] = [
    ("password", PrimaryMethod::Password, "knowledge"),
    ("knowledge", PrimaryMethod::Password, "knowledge"),
    ("magic_link", PrimaryMethod::MagicLink, "email"),
    ("email", PrimaryMethod::MagicLink, "email"),
    ("email_otp", PrimaryMethod::EmailOtp, "email"),
    ("sso", PrimaryMethod::Sso, "sso"),
    ("sso_saml", PrimaryMethod::Sso, "sso_saml"),
    ("sso_oidc", PrimaryMethod::Sso, "sso_oidc"),
    ("oauth", PrimaryMethod::Oauth, "oauth"),
    ("oauth_google", PrimaryMethod::Oauth, "oauth_google"),
    ("oauth_microsoft", PrimaryMethod::Oauth, "oauth_microsoft"),
    ("oauth_apple", PrimaryMethod::Oauth, "oauth_apple"),
    ("oauth_github", PrimaryMethod::Oauth, "oauth_github"),
    ("oauth_gitlab", PrimaryMethod::Oauth, "oauth_gitlab"),
    ("oauth_slack", PrimaryMethod::Oauth, "oauth_slack"),
    ("oauth_hubspot", PrimaryMethod::Oauth, "oauth_hubspot"),
    ("oauth_salesforce", PrimaryMethod::Oauth, "oauth_salesforce"),
    ("oauth_discord", PrimaryMethod::Oauth, "oauth_discord"),
    ("passkey", PrimaryMethod::Passkey, "webauthn_registration"),
    (
        "impersonation",
        PrimaryMethod::Impersonation,
        "impersonation",
    ),
    (
        "impersonated",
        PrimaryMethod::Impersonation,
        "impersonation",
    ),
    ("embedded", PrimaryMethod::MagicLink, "embedded"),
];

impl PrimaryFactor {
    /// Parses the exact (case-sensitive) name.
    pub fn parse(value: &str) -> MfaResult<PrimaryFactor> {
        match PRIMARY_FACTORS.iter().find(|(name, _, _)| *name == value) {
            Some(&(_, method, delivery_method)) => Ok(PrimaryFactor {
                method,
                delivery_method,
            }),
            None => err(
                ErrorType::InvalidPrimaryAuthenticationMethod,
                format!(
                    "the primary authentication method must be one of {}; got {:?}.",
                    PRIMARY_FACTORS.map(|(name, _, _)| name).join(", "),
                    truncate_for_message(value)
                ),
            ),
        }
    }
}

text_enum!(
    /// `set_mfa_enrollment` of the authenticate functions.
    SetMfaEnrollment, ErrorType::InvalidSetMfaEnrollment, "set_mfa_enrollment" {
        Enroll => "enroll",
        Unenroll => "unenroll",
    }
);

/// Which application identifier a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Organization,
    Member,
}

/// Identifiers are the application's own: 1–128 characters, no control characters.
pub fn validate_id(value: Option<&str>, kind: IdKind) -> MfaResult<&str> {
    let (error_type, field) = match kind {
        IdKind::Organization => (ErrorType::InvalidOrganizationId, "organization_id"),
        IdKind::Member => (ErrorType::InvalidMemberId, "member_id"),
    };
    match value {
        None => err(error_type, format!("{field} is required.")),
        Some(v) if v.is_empty() || v.chars().count() > 128 => err(
            error_type,
            format!("{field} must be 1 to 128 characters long."),
        ),
        Some(v) if v.chars().any(char::is_control) => err(
            error_type,
            format!("{field} cannot contain control characters."),
        ),
        Some(v) => Ok(v),
    }
}

/// Keeps error messages short even when a caller sends a megabyte.
pub fn truncate_for_message(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    }
}

/// Parses the default method, with the error type Stytch uses for it.
pub fn parse_default_method(value: &str) -> MfaResult<MfaMethod> {
    MfaMethod::parse(value).map_err(|mut e| {
        e.error_type = ErrorType::InvalidMfaDefaultMethod;
        e.message = e
            .message
            .replacen("each of allowed_mfa_methods", "default_mfa_method", 1);
        e
    })
}

/// The MFA settings of an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationPolicy {
    pub mfa_policy: MfaPolicy,
    pub mfa_methods: MfaMethods,
    pub allowed_mfa_methods: Vec<MfaMethod>,
    /// How long a device a member chose to remember skips MFA; 0: devices are not remembered.
    pub remember_device_days: i32,
}

/// The longest an organization may remember a device.
pub const MAX_REMEMBER_DEVICE_DAYS: i32 = 90;

impl Default for OrganizationPolicy {
    fn default() -> Self {
        OrganizationPolicy {
            mfa_policy: MfaPolicy::Optional,
            mfa_methods: MfaMethods::AllAllowed,
            allowed_mfa_methods: Vec::new(),
            remember_device_days: 0,
        }
    }
}

impl OrganizationPolicy {
    /// Applies an upsert's arguments (`None` keeps the current value) and validates the result.
    pub fn updated(
        &self,
        mfa_policy: Option<&str>,
        mfa_methods: Option<&str>,
        allowed_mfa_methods: Option<Vec<Option<String>>>,
        remember_device_days: Option<i32>,
    ) -> MfaResult<OrganizationPolicy> {
        let mut next = self.clone();
        if let Some(days) = remember_device_days {
            if !(0..=MAX_REMEMBER_DEVICE_DAYS).contains(&days) {
                return err(
                    ErrorType::InvalidRememberDeviceDays,
                    format!("remember_device_days must be 0 (off) to {MAX_REMEMBER_DEVICE_DAYS}; got {days}."),
                );
            }
            next.remember_device_days = days;
        }
        if let Some(p) = mfa_policy {
            next.mfa_policy = MfaPolicy::parse(p)?;
        }
        if let Some(m) = mfa_methods {
            next.mfa_methods = MfaMethods::parse(m)?;
        }
        if let Some(list) = allowed_mfa_methods {
            let mut methods = Vec::new();
            for item in list {
                let Some(item) = item else {
                    return err(
                        ErrorType::InvalidOrganizationAllowedMfaMethods,
                        "allowed_mfa_methods cannot contain NULL.",
                    );
                };
                let method = MfaMethod::parse(&item)?;
                if !methods.contains(&method) {
                    methods.push(method);
                }
            }
            methods.sort();
            next.allowed_mfa_methods = methods;
        }
        if next.mfa_methods == MfaMethods::Restricted && next.allowed_mfa_methods.is_empty() {
            return err(
                ErrorType::AllowedMfaMethodsRequiredForRestricted,
                "allowed_mfa_methods must name at least one method when mfa_methods is RESTRICTED.",
            );
        }
        Ok(next)
    }

    /// Whether a member may use `method`. Breakglass members ignore the method restriction.
    pub fn allows(&self, method: MfaMethod, is_breakglass: bool) -> bool {
        is_breakglass
            || self.mfa_methods == MfaMethods::AllAllowed
            || self.allowed_mfa_methods.contains(&method)
    }

    /// Whether a member may use recovery codes: they stand in for the factors they were minted
    /// with, an authenticator app or a passkey.
    pub fn allows_recovery_codes(&self, is_breakglass: bool) -> bool {
        self.allows(MfaMethod::Totp, is_breakglass)
            || self.allows(MfaMethod::Webauthn, is_breakglass)
    }

    /// Refuses the use of a method the organization does not allow.
    pub fn require_allowed(&self, method: MfaMethod, is_breakglass: bool) -> MfaResult<()> {
        if self.allows(method, is_breakglass) {
            Ok(())
        } else {
            err(
                ErrorType::OperationRestrictedByOrganizationMfaMethods,
                format!(
                    "The organization restricts MFA to {{{}}}; {method} is not allowed.",
                    self.allowed_names().join(",")
                ),
            )
        }
    }

    pub fn remembers_devices(&self) -> bool {
        self.remember_device_days > 0
    }

    pub fn allowed_names(&self) -> Vec<&'static str> {
        self.allowed_mfa_methods
            .iter()
            .map(|m| m.as_str())
            .collect()
    }
}

/// A second factor proven during a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    SmsOtp,
    Totp,
    /// A passkey (WebAuthn): the only phishing-resistant one.
    Webauthn,
    /// Recovery codes stand in for the authenticator app or passkey they were minted with, so
    /// under a method restriction they count when either is allowed.
    RecoveryCode,
}

impl SecondFactor {
    /// The method of this factor; recovery codes are none of their own.
    pub fn method(self) -> Option<MfaMethod> {
        match self {
            SecondFactor::SmsOtp => Some(MfaMethod::SmsOtp),
            SecondFactor::Totp => Some(MfaMethod::Totp),
            SecondFactor::Webauthn => Some(MfaMethod::Webauthn),
            SecondFactor::RecoveryCode => None,
        }
    }

    /// Whether the organization lets a member prove themselves with this factor.
    pub fn allowed_by(self, policy: &OrganizationPolicy, is_breakglass: bool) -> bool {
        match self.method() {
            Some(method) => policy.allows(method, is_breakglass),
            None => policy.allows_recovery_codes(is_breakglass),
        }
    }

    /// Refuses a factor the organization does not allow.
    pub fn require_allowed(
        self,
        policy: &OrganizationPolicy,
        is_breakglass: bool,
    ) -> MfaResult<()> {
        match self.method() {
            Some(method) => policy.require_allowed(method, is_breakglass),
            None if policy.allows_recovery_codes(is_breakglass) => Ok(()),
            None => err(
                ErrorType::OperationRestrictedByOrganizationMfaMethods,
                format!(
                    "The organization restricts MFA to {{{}}}; recovery codes stand in for totp or webauthn only.",
                    policy.allowed_names().join(",")
                ),
            ),
        }
    }
}

/// What a member's login must prove, from the organization's policy and the member's own choice.
/// SSO does not exempt a login. A breakglass member is exempt from the organization's requirement
/// (only their own enrollment requires MFA of them) and from its method restriction.
pub fn mfa_required(policy: &OrganizationPolicy, mfa_enrolled: bool, is_breakglass: bool) -> bool {
    mfa_enrolled || (policy.mfa_policy == MfaPolicy::RequiredForAll && !is_breakglass)
}

/// Decides whether the factors proven in a login let a session be created. `remembered_device`:
/// the login presented a device the member remembered after an earlier second factor, and the
/// device is still honoured (unexpired, unrevoked, the organization still remembers devices).
pub fn session_allowed(
    policy: &OrganizationPolicy,
    mfa_enrolled: bool,
    is_breakglass: bool,
    factors: &[SecondFactor],
    remembered_device: bool,
) -> MfaResult<()> {
    if !mfa_required(policy, mfa_enrolled, is_breakglass) || remembered_device {
        return Ok(());
    }
    if factors.iter().any(|f| f.allowed_by(policy, is_breakglass)) {
        return Ok(());
    }
    if factors.is_empty() {
        err(
            ErrorType::InsufficientFactors,
            "This login needs a second factor (SMS code, authenticator app, passkey or recovery code) before a session can be created.",
        )
    } else {
        err(
            ErrorType::InsufficientFactors,
            format!(
                "The factors of this login are not allowed by the organization, which restricts MFA to {{{}}}.",
                policy.allowed_names().join(",")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(policy: &str, methods: &str, allowed: &[&str]) -> OrganizationPolicy {
        OrganizationPolicy::default()
            .updated(
                Some(policy),
                Some(methods),
                Some(allowed.iter().map(|s| Some(s.to_string())).collect()),
                None,
            )
            .unwrap()
    }

    #[test]
    fn ids_are_validated() {
        assert_eq!(
            validate_id(Some("org-1"), IdKind::Organization),
            Ok("org-1")
        );
        assert_eq!(
            validate_id(Some(&"é".repeat(128)), IdKind::Member)
                .unwrap()
                .chars()
                .count(),
            128
        );
        for bad in [None, Some(""), Some("a\nb"), Some(&"x".repeat(129) as &str)] {
            assert_eq!(
                validate_id(bad, IdKind::Member).unwrap_err().error_type,
                ErrorType::InvalidMemberId
            );
        }
        assert_eq!(
            validate_id(None, IdKind::Organization)
                .unwrap_err()
                .error_type,
            ErrorType::InvalidOrganizationId
        );
    }

    #[test]
    fn defaults_are_stytchs() {
        let d = OrganizationPolicy::default();
        assert_eq!(d.mfa_policy.as_str(), "OPTIONAL");
        assert_eq!(d.mfa_methods.as_str(), "ALL_ALLOWED");
        assert!(d.allowed_mfa_methods.is_empty());
    }

    #[test]
    fn values_are_validated_exactly() {
        let d = OrganizationPolicy::default();
        let e = d
            .updated(Some("required_for_all"), None, None, None)
            .unwrap_err();
        assert_eq!(e.error_type, ErrorType::InvalidOrganizationMfaPolicy);
        let e = d.updated(None, Some("SOME"), None, None).unwrap_err();
        assert_eq!(e.error_type, ErrorType::InvalidOrganizationMfaMethods);
        let e = d
            .updated(None, None, Some(vec![Some("email".into())]), None)
            .unwrap_err();
        assert_eq!(
            e.error_type,
            ErrorType::InvalidOrganizationAllowedMfaMethods
        );
        let e = d.updated(None, None, Some(vec![None]), None).unwrap_err();
        assert_eq!(
            e.error_type,
            ErrorType::InvalidOrganizationAllowedMfaMethods
        );
        let e = d.updated(None, Some("RESTRICTED"), None, None).unwrap_err();
        assert_eq!(
            e.error_type,
            ErrorType::AllowedMfaMethodsRequiredForRestricted
        );
        let e = d
            .updated(None, Some("RESTRICTED"), Some(vec![]), None)
            .unwrap_err();
        assert_eq!(
            e.error_type,
            ErrorType::AllowedMfaMethodsRequiredForRestricted
        );
        let e = parse_default_method("sms").unwrap_err();
        assert_eq!(e.error_type, ErrorType::InvalidMfaDefaultMethod);
        assert!(
            e.message.starts_with("default_mfa_method must be one of"),
            "{}",
            e.message
        );
        let long = "x".repeat(1000);
        let e = MfaPolicy::parse(&long).unwrap_err();
        assert!(e.message.len() < 200);
    }

    #[test]
    fn null_keeps_and_duplicates_collapse() {
        let o = org(
            "REQUIRED_FOR_ALL",
            "RESTRICTED",
            &["totp", "sms_otp", "totp"],
        );
        assert_eq!(
            o.allowed_mfa_methods,
            vec![MfaMethod::SmsOtp, MfaMethod::Totp]
        );
        let kept = o.updated(None, None, None, None).unwrap();
        assert_eq!(kept, o);
        let e = o.updated(None, None, Some(vec![]), None).unwrap_err();
        assert_eq!(
            e.error_type,
            ErrorType::AllowedMfaMethodsRequiredForRestricted
        );
    }

    #[test]
    fn requirement_follows_policy_enrollment_and_breakglass() {
        let optional = org("OPTIONAL", "ALL_ALLOWED", &[]);
        let required = org("REQUIRED_FOR_ALL", "ALL_ALLOWED", &[]);
        assert!(!mfa_required(&optional, false, false));
        assert!(mfa_required(&optional, true, false));
        assert!(mfa_required(&required, false, false));
        assert!(!mfa_required(&required, false, true));
        assert!(mfa_required(&required, true, true));
    }

    #[test]
    fn restricted_methods_do_not_satisfy_the_policy() {
        let sms_only = org("REQUIRED_FOR_ALL", "RESTRICTED", &["sms_otp"]);
        assert!(session_allowed(&sms_only, false, false, &[SecondFactor::SmsOtp], false).is_ok());
        let e = session_allowed(&sms_only, false, false, &[SecondFactor::Totp], false).unwrap_err();
        assert_eq!(e.error_type, ErrorType::InsufficientFactors);
        assert!(session_allowed(
            &sms_only,
            false,
            false,
            &[SecondFactor::RecoveryCode],
            false
        )
        .is_err());
        assert!(session_allowed(&sms_only, true, true, &[SecondFactor::Totp], false).is_ok());
        let e = sms_only
            .require_allowed(MfaMethod::Totp, false)
            .unwrap_err();
        assert_eq!(
            e.error_type,
            ErrorType::OperationRestrictedByOrganizationMfaMethods
        );
        assert!(sms_only.require_allowed(MfaMethod::Totp, true).is_ok());
    }

    #[test]
    fn remembered_devices_are_off_by_default_and_at_most_90_days() {
        let d = OrganizationPolicy::default();
        assert!(!d.remembers_devices());
        assert_eq!(
            d.updated(None, None, None, Some(30))
                .unwrap()
                .remember_device_days,
            30
        );
        assert_eq!(
            d.updated(None, None, None, Some(90))
                .unwrap()
                .remember_device_days,
            90
        );
        let kept = d.updated(None, None, None, Some(7)).unwrap();
        assert_eq!(
            kept.updated(None, None, None, None)
                .unwrap()
                .remember_device_days,
            7
        );
        for bad in [-1, 91, i32::MAX] {
            assert_eq!(
                d.updated(None, None, None, Some(bad))
                    .unwrap_err()
                    .error_type,
                ErrorType::InvalidRememberDeviceDays
            );
        }
    }

    #[test]
    fn an_honoured_remembered_device_meets_the_policy() {
        let sms_only = org("REQUIRED_FOR_ALL", "RESTRICTED", &["sms_otp"]);
        assert!(session_allowed(&sms_only, true, false, &[], true).is_ok());
        assert!(session_allowed(&sms_only, true, false, &[], false).is_err());
    }

    #[test]
    fn no_factor_no_session_when_required() {
        let required = org("REQUIRED_FOR_ALL", "ALL_ALLOWED", &[]);
        assert!(session_allowed(&required, false, false, &[], false).is_err());
        assert!(session_allowed(
            &required,
            false,
            false,
            &[SecondFactor::RecoveryCode],
            false
        )
        .is_ok());
        let optional = OrganizationPolicy::default();
        assert!(session_allowed(&optional, false, false, &[], false).is_ok());
        assert!(session_allowed(&optional, true, false, &[], false).is_err());
    }
}
