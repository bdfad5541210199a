//! The error contract, implemented once.
//!
//! Two kinds of failure (see the design): a caller's mistake *raises* an ERROR whose message starts
//! with the Stytch `error_type` and whose SQLSTATE fits the mistake; a failed authentication attempt
//! is *returned* as a `{status_code, error_type, error_message}` object, so that its attempt counter
//! and audit event commit with the caller's transaction instead of being rolled back.

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::fmt;

/// Every `error_type` this extension produces, named as Stytch names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    // Values that are not valid.
    InvalidArgument,
    InvalidOrganizationId,
    InvalidMemberId,
    InvalidOrganizationMfaPolicy,
    InvalidOrganizationMfaMethods,
    InvalidOrganizationAllowedMfaMethods,
    AllowedMfaMethodsRequiredForRestricted,
    InvalidMfaDefaultMethod,
    DefaultMfaMemberMissingFactor,
    InvalidPhoneNumber,
    InvalidPhoneNumberCountryCode,
    InvalidExpirationMinutes,
    InvalidTotpSecret,
    InvalidPrimaryAuthenticationMethod,
    InvalidSetMfaEnrollment,
    InvalidRememberDeviceDays,
    CountryCodeAllowlistInvalidCountryCodes,
    CountryCodeAllowlistEmpty,
    InvalidWebauthnAllowedOrigins,
    InvalidWebauthnDomain,
    InvalidPublicKeyCredential,
    InvalidAuthenticatorType,
    /// A report's filter that is not an object of known filters with values of their kind.
    InvalidSearchQuery,
    /// A report's cursor that is not one of its `next_cursor`s.
    InvalidCursor,
    /// A report's page size outside 1–1000.
    InvalidPageSize,
    // Things that do not exist.
    OrganizationNotFound,
    MemberNotFound,
    MemberPhoneNumberNotFound,
    TotpNotFound,
    /// Recovery codes asked of a member without an active factor they stand for (an active
    /// authenticator app or a passkey).
    NoActiveRecoveryCodeBackedFactor,
    OtpCodeNotFound,
    IntermediateSessionNotFound,
    WebauthnRegistrationNotFound,
    /// A worker finishing a message it does not hold (wrong or expired receipt).
    SmsMessageNotHeld,
    // States that forbid the operation.
    DuplicateMemberPhoneNumber,
    ActiveTotpExists,
    PendingTotpExists,
    /// member_upsert replacing a verified number without saying so.
    ActiveMfaPhoneNumberExists,
    DuplicateWebauthnRegistration,
    /// A member removing the last factor their organization requires (mfa_admin may).
    CannotRemoveLastMfaFactor,
    OperationRestrictedByOrganizationMfaMethods,
    // Authorization.
    InvalidIntermediateSessionTokenForOrganization,
    InsufficientFactors,
    /// A tenant's SMS worker asking for another organization's messages.
    SmsWorkerOrganizationNotGranted,
    /// `remembered_device_create` in an organization that does not remember devices.
    RememberedDevicesNotAllowed,
    // Limits.
    TooManyRequests,
    /// `PREPARE TRANSACTION` of a transaction that called mfa (its locks would outlive it).
    CannotPrepareTransaction,
    // Returned (not raised) authentication failures.
    UnableToAuthOtpCode,
    OtpCodeExpired,
    /// A code that is no TOTP code (not six digits).
    InvalidTotpCode,
    /// Six digits that are not the authenticator app's code now.
    UnableToAuthenticateTotp,
    ExpiredTotp,
    TotpCodeAlreadyAuthenticated,
    InvalidRecoveryCode,
    /// A passkey's response that does not verify (signature, origin, flags…).
    UnableToAuthWebauthn,
    /// A passkey's response to a challenge that was not issued for this login, or is spent or
    /// expired.
    InvalidWebauthnChallenge,
    /// A passkey whose signature counter went backwards: refused from then on.
    WebauthnCloneSuspected,
    UserLockLimitReached,
    /// The library is not in shared_preload_libraries: no attempt can be counted.
    NotPreloaded,
    /// The attempt ledger or its queue has no room: refused rather than uncounted.
    AttemptLedgerFull,
    // Configuration of the server.
    EncryptionKeyMismatch,
    InvalidEncryptionKey,
    /// On a Citus cluster every node must encrypt with one configured master key: the
    /// per-database key (each node would make its own) is refused.
    ClusterNeedsServerKey,
    /// An attempt reached a node of a Citus cluster that does not hold the organization's data:
    /// the attempt ledger counts a member's attempts on one node only.
    OrganizationNotOnThisNode,
    /// A bug or a broken installation (an SPI call that failed as no statement should).
    InternalServerError,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        use ErrorType::*;
        match self {
            InvalidArgument => "invalid_argument",
            InvalidOrganizationId => "invalid_organization_id",
            InvalidMemberId => "invalid_member_id",
            InvalidOrganizationMfaPolicy => "invalid_organization_mfa_policy",
            InvalidOrganizationMfaMethods => "invalid_organization_mfa_methods",
            InvalidOrganizationAllowedMfaMethods => "invalid_organization_allowed_mfa_methods",
            AllowedMfaMethodsRequiredForRestricted => "allowed_mfa_methods_required_for_restricted",
            InvalidMfaDefaultMethod => "invalid_mfa_default_method",
            DefaultMfaMemberMissingFactor => "default_mfa_member_missing_factor",
            InvalidPhoneNumber => "invalid_phone_number",
            InvalidPhoneNumberCountryCode => "invalid_phone_number_country_code",
            InvalidExpirationMinutes => "invalid_expiration_minutes",
            InvalidTotpSecret => "invalid_totp_secret",
            InvalidPrimaryAuthenticationMethod => "invalid_primary_authentication_method",
            InvalidSetMfaEnrollment => "invalid_set_mfa_enrollment",
            InvalidRememberDeviceDays => "invalid_remember_device_days",
            CountryCodeAllowlistInvalidCountryCodes => {
                "country_code_allowlist_invalid_country_codes"
            }
            CountryCodeAllowlistEmpty => "country_code_allowlist_empty",
            InvalidWebauthnAllowedOrigins => "invalid_webauthn_allowed_origins",
            InvalidWebauthnDomain => "invalid_webauthn_domain",
            InvalidPublicKeyCredential => "invalid_public_key_credential",
            InvalidAuthenticatorType => "invalid_authenticator_type",
            WebauthnRegistrationNotFound => "webauthn_registration_not_found",
            DuplicateWebauthnRegistration => "duplicate_webauthn_registration",
            CannotRemoveLastMfaFactor => "cannot_remove_last_mfa_factor",
            UnableToAuthWebauthn => "unable_to_auth_webauthn",
            InvalidWebauthnChallenge => "invalid_webauthn_challenge",
            WebauthnCloneSuspected => "webauthn_clone_suspected",
            InvalidSearchQuery => "invalid_search_query",
            InvalidCursor => "invalid_cursor",
            InvalidPageSize => "invalid_page_size",
            OrganizationNotFound => "organization_not_found",
            MemberNotFound => "member_not_found",
            MemberPhoneNumberNotFound => "member_phone_number_not_found",
            TotpNotFound => "totp_not_found",
            NoActiveRecoveryCodeBackedFactor => "no_active_recovery_code_backed_factor",
            OtpCodeNotFound => "otp_code_not_found",
            IntermediateSessionNotFound => "intermediate_session_not_found",
            SmsMessageNotHeld => "sms_message_not_held",
            SmsWorkerOrganizationNotGranted => "sms_worker_organization_not_granted",
            RememberedDevicesNotAllowed => "remembered_devices_not_allowed",
            DuplicateMemberPhoneNumber => "duplicate_member_phone_number",
            ActiveTotpExists => "active_totp_exists",
            ActiveMfaPhoneNumberExists => "active_mfa_phone_number_exists",
            PendingTotpExists => "pending_totp_exists",
            OperationRestrictedByOrganizationMfaMethods => {
                "operation_restricted_by_organization_mfa_methods"
            }
            InvalidIntermediateSessionTokenForOrganization => {
                "invalid_intermediate_session_token_for_organization"
            }
            InsufficientFactors => "insufficient_factors",
            TooManyRequests => "too_many_requests",
            CannotPrepareTransaction => "cannot_prepare_transaction",
            UnableToAuthOtpCode => "unable_to_auth_otp_code",
            OtpCodeExpired => "otp_code_expired",
            InvalidTotpCode => "invalid_totp_code",
            UnableToAuthenticateTotp => "unable_to_authenticate_totp",
            ExpiredTotp => "expired_totp",
            TotpCodeAlreadyAuthenticated => "totp_code_already_authenticated",
            InvalidRecoveryCode => "invalid_recovery_code",
            UserLockLimitReached => "user_lock_limit_reached",
            NotPreloaded => "mfa_not_preloaded",
            AttemptLedgerFull => "attempt_ledger_full",
            EncryptionKeyMismatch => "encryption_key_mismatch",
            ClusterNeedsServerKey => "cluster_needs_server_key",
            OrganizationNotOnThisNode => "organization_not_on_this_node",
            InvalidEncryptionKey => "invalid_encryption_key",
            InternalServerError => "internal_server_error",
        }
    }

    /// The HTTP-like status Stytch attaches to this error type.
    pub fn status_code(self) -> u16 {
        use ErrorType::*;
        match self {
            OrganizationNotFound
            | MemberNotFound
            | MemberPhoneNumberNotFound
            | TotpNotFound
            | NoActiveRecoveryCodeBackedFactor
            | OtpCodeNotFound
            | IntermediateSessionNotFound
            | WebauthnRegistrationNotFound => 404,
            DuplicateMemberPhoneNumber
            | ActiveTotpExists
            | ActiveMfaPhoneNumberExists
            | PendingTotpExists
            | DuplicateWebauthnRegistration
            | CannotRemoveLastMfaFactor
            | SmsMessageNotHeld => 409,
            SmsWorkerOrganizationNotGranted | RememberedDevicesNotAllowed => 403,
            InvalidIntermediateSessionTokenForOrganization
            | InsufficientFactors
            | OperationRestrictedByOrganizationMfaMethods
            | UnableToAuthOtpCode
            | OtpCodeExpired
            | InvalidTotpCode
            | UnableToAuthenticateTotp
            | ExpiredTotp
            | TotpCodeAlreadyAuthenticated
            | InvalidRecoveryCode
            | UnableToAuthWebauthn
            | InvalidWebauthnChallenge
            | WebauthnCloneSuspected => 401,
            TooManyRequests | UserLockLimitReached => 429,
            EncryptionKeyMismatch
            | InvalidEncryptionKey
            | ClusterNeedsServerKey
            | NotPreloaded
            | InternalServerError => 500,
            OrganizationNotOnThisNode => 421,
            AttemptLedgerFull => 503,
            _ => 400,
        }
    }

    /// The SQLSTATE of the ERROR raised for this type.
    pub fn sqlstate(self) -> PgSqlErrorCode {
        use ErrorType::*;
        if self == CannotPrepareTransaction {
            // As PostgreSQL's own refusals to prepare (temporary objects, NOTIFY).
            return PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED;
        }
        match self.status_code() {
            404 => PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            409 => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            401 if self == OperationRestrictedByOrganizationMfaMethods => {
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE
            }
            401 => PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
            500 if self == InternalServerError => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            403 => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            429 => PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            500 => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            503 => PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
            421 => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            _ => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure of any `mfa` operation: its type and a message for people (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaError {
    pub error_type: ErrorType,
    pub message: String,
    pub hint: Option<String>,
}

pub type MfaResult<T> = Result<T, MfaError>;

impl MfaError {
    pub fn new(error_type: ErrorType, message: impl Into<String>) -> Self {
        MfaError {
            error_type,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The returned-failure object of an authentication attempt.
    pub fn to_failure_json(&self, request_id: &str) -> Value {
        json!({
            "status_code": self.error_type.status_code(),
            "request_id": request_id,
            "error_type": self.error_type.as_str(),
            "error_message": self.message,
        })
    }

    /// Raises this error as a PostgreSQL ERROR; the transaction aborts. Only where no `Result`
    /// can carry it out: triggers and hooks (a `#[pg_extern]` returns `SqlResult`).
    pub fn raise(self) -> ! {
        ErrorReport::from(self).report(PgLogLevel::ERROR);
        unreachable!("an ERROR report does not return")
    }
}

/// The ERROR a failure raises at the SQL boundary: the message starts with the `error_type`, the
/// SQLSTATE fits the mistake, the hint goes along.
impl From<MfaError> for ErrorReport {
    fn from(e: MfaError) -> ErrorReport {
        let report = ErrorReport::new(
            e.error_type.sqlstate(),
            format!("{}: {}", e.error_type, e.message),
            "mfa",
        );
        match e.hint {
            Some(hint) => report.set_hint(hint),
            None => report,
        }
    }
}

/// What a `#[pg_extern]` returns: `?` turns an `MfaError` into the raised ERROR.
pub type SqlResult<T> = Result<T, ErrorReport>;

impl fmt::Display for MfaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl std::error::Error for MfaError {}

/// Shorthand constructor used throughout the crate, for an `MfaResult` or, at the SQL boundary,
/// a `SqlResult`.
pub fn err<T, E: From<MfaError>>(
    error_type: ErrorType,
    message: impl Into<String>,
) -> Result<T, E> {
    Err(MfaError::new(error_type, message).into())
}

/// An SPI failure is a bug or a broken installation, never the caller's mistake. (A statement's
/// own ERROR does not come this way: PostgreSQL raises it and the transaction aborts.)
impl From<pgrx::spi::Error> for MfaError {
    fn from(e: pgrx::spi::Error) -> Self {
        MfaError::new(
            ErrorType::InternalServerError,
            format!("internal SPI failure: {e}"),
        )
    }
}

/// Rust's backtraces stay out of every ERROR, whatever the server's environment: pgrx captures one
/// into the DETAIL of any error that crosses Rust code (a lock timeout in a statement, say) when
/// `RUST_BACKTRACE` is set, which would hand the client the extension's internals. Called in
/// `_PG_init`, before any error could capture one (the setting is read once, at the first capture).
pub fn keep_backtraces_out_of_errors() {
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_json_has_stytch_shape() {
        let e = MfaError::new(ErrorType::InvalidTotpCode, "The code is not valid.");
        let j = e.to_failure_json("r-1");
        assert_eq!(j["status_code"], 401);
        assert_eq!(j["error_type"], "invalid_totp_code");
        assert_eq!(j["error_message"], "The code is not valid.");
        assert_eq!(j["request_id"], "r-1");
    }

    #[test]
    fn sqlstates_follow_the_design() {
        use ErrorType::*;
        let code = |t: ErrorType| t.sqlstate();
        assert_eq!(
            code(InvalidPhoneNumber),
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
        );
        assert_eq!(code(MemberNotFound), PgSqlErrorCode::ERRCODE_NO_DATA_FOUND);
        assert_eq!(
            code(InsufficientFactors),
            PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION
        );
        assert_eq!(
            code(TooManyRequests),
            PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED
        );
        assert_eq!(
            code(ActiveTotpExists),
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
        );
        assert_eq!(UserLockLimitReached.status_code(), 429);
        assert_eq!(
            code(CannotPrepareTransaction),
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED
        );
    }
}
