//! One second-factor authentication attempt (TOTP, SMS code, passkey, recovery code): what every factor
//! checks first, and how it ends — a returned failure that the attempt ledger counts toward the
//! lock, or a success that resets it, applies the enrollment rules and records the factor on the
//! login.

use crate::core::attempts::Admission;
use crate::core::factor::Factor;
use crate::core::ids;
use crate::core::metrics::{Counter, Outcome};
use crate::core::policy::{
    MfaMethod, MfaPolicy, OrganizationPolicy, SecondFactor, SetMfaEnrollment,
};
use crate::error::{ErrorType, MfaError, MfaResult};
use crate::flow::member::{self, Load};
use crate::flow::{answer, token};
use crate::server::settings;
use crate::server::{counters, ledger};
use crate::store::attempts::{self, MemberChange, Spend};
use crate::store::audit::Request;
use crate::store::members::Member;
use crate::store::sessions::IntermediateSession;
use crate::store::{cluster, spi};
use serde_json::{json, Value};

pub struct Attempt {
    pub request: Request,
    pub member: Member,
    pub org: OrganizationPolicy,
    pub session: Option<IntermediateSession>,
    factor: SecondFactor,
    event_type: &'static str,
    set_mfa_enrollment: Option<SetMfaEnrollment>,
    set_default_mfa: bool,
    /// The check charged in the attempt ledger (`admit`), settled by `fail` or `succeed`.
    charge: std::cell::RefCell<Option<ledger::Charge>>,
}

/// What a successful attempt proved.
pub struct Proof {
    pub factor: Factor,
    pub spend: Spend,
    /// The factor reached the member's phone: the number is verified.
    pub verifies_phone: bool,
    /// The factor was a code from a pending authenticator app, which is now active.
    pub activates_totp: bool,
    /// The factor was enrolled by this attempt (a new passkey): like an app's first code, it
    /// says nothing of who the member is, so the answer shows their phone masked.
    pub enrolls: bool,
}

impl Attempt {
    /// Validates the arguments, locks the member with their factors, checks the token and that
    /// the organization allows `factor`. These are the caller's mistakes: they raise.
    pub fn begin(
        organization_id: Option<&str>,
        member_id: Option<&str>,
        token: Option<&str>,
        factor: SecondFactor,
        event_type: &'static str,
        set_mfa_enrollment: Option<&str>,
        set_default_mfa: bool,
    ) -> MfaResult<Attempt> {
        let request = Request::new();
        let set_mfa_enrollment = set_mfa_enrollment
            .map(SetMfaEnrollment::parse)
            .transpose()?;
        // An SMS code attempt reads (and locks) the member's code; the others do not touch it.
        let load = match factor {
            SecondFactor::SmsOtp => Load::LockWithSmsCode,
            _ => Load::Lock,
        };
        let (member, org) = member::load_with_policy(organization_id, member_id, load)?;
        let session = token::find_optional(&member, token)?;
        factor.require_allowed(&org, member.is_breakglass)?;
        Ok(Attempt {
            request,
            member,
            org,
            session,
            factor,
            event_type,
            set_mfa_enrollment,
            set_default_mfa,
            charge: Default::default(),
        })
    }

    /// Asks the attempt ledger whether a code may be checked, before anything is: charges the
    /// check (it counts as a failure until it succeeds), or returns the refusal of a locked or
    /// throttled member, or of a dead SMS code. `sms_code_hash` is the stored hash of the SMS
    /// code about to be checked.
    pub fn admit(&self, sms_code_hash: Option<&[u8]>) -> MfaResult<Option<Value>> {
        cluster::require_organization_here(&self.member.organization_id)?;
        let key = member::ledger_key(&self.member)?;
        let tag = sms_code_hash.map(|hash| {
            let digest = <sha2::Sha256 as sha2::Digest>::digest(hash);
            u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
        });
        let refusal = match ledger::admit(
            key,
            &self.member.attempts,
            &settings::attempt_limits(),
            tag,
            &self.event_context(),
        )? {
            Ok(charge) => {
                *self.charge.borrow_mut() = Some(charge);
                return Ok(None);
            }
            Err((refusal, _)) => refusal,
        };
        counters::add(Counter::SecondFactor(self.factor, Outcome::Refused));
        let failure = match refusal {
            Admission::Locked => return self.locked().map(Some),
            Admission::Throttled { .. } => MfaError::new(
                ErrorType::TooManyRequests,
                "Too many attempts for this member in the last second; try again in a moment.",
            ),
            Admission::SmsCodeSpent | Admission::Check => MfaError::new(
                ErrorType::UnableToAuthOtpCode,
                "This SMS code had too many wrong attempts; send a new one.",
            ),
        };
        Ok(Some(failure.to_failure_json(&self.request.id)))
    }

    /// The answer to an attempt by a locked member, whatever the code.
    fn locked(&self) -> MfaResult<Value> {
        let failure = MfaError::new(
            ErrorType::UserLockLimitReached,
            "Too many failed attempts: the member is locked. Try again later or ask an administrator to unlock.",
        );
        self.request.audit(
            &self.member.organization_id,
            Some(&self.member.member_id),
            self.event_type,
            json!({ "outcome": "failure", "error_type": failure.error_type.as_str(), "locked": true }),
        )?;
        Ok(failure.to_failure_json(&self.request.id))
    }

    /// Who the ledger's audit events of this attempt are about.
    fn event_context(&self) -> ledger::EventContext {
        ledger_event(
            &self.request,
            &self.member.organization_id,
            &self.member.member_id,
            self.event_type,
        )
    }

    /// A failed attempt: counted and audited by the attempt ledger (both outlive the caller's
    /// transaction), and returned.
    pub fn fail(&self, error_type: ErrorType, message: &str) -> MfaResult<Value> {
        let failure = MfaError::new(error_type, message);
        let charge = self.charge.take().expect("fail() follows admit()");
        charge.fail(
            &settings::attempt_limits(),
            &json!({ "outcome": "failure", "error_type": failure.error_type.as_str() }),
        );
        counters::add(Counter::SecondFactor(self.factor, Outcome::Failed));
        Ok(failure.to_failure_json(&self.request.id))
    }

    /// A successful attempt: spends the factor, records it on the login, resets the failure
    /// count, applies the enrollment rules and writes the audit event, all in one statement.
    /// `extra` fields are added to the answer.
    pub fn succeed(self, proof: Proof, extra: Value) -> MfaResult<Value> {
        // Under REQUIRED_FOR_ALL every member who proves a factor is enrolled; otherwise the
        // caller decides. The first successful method becomes the default (recovery codes are
        // no method of their own).
        let enrolled = if self.org.mfa_policy == MfaPolicy::RequiredForAll {
            Some(true)
        } else {
            self.set_mfa_enrollment
                .map(|e| e == SetMfaEnrollment::Enroll)
        };
        let default_method = self
            .factor
            .method()
            .filter(|_| self.set_default_mfa || self.member.default_mfa_method.is_none())
            .map(|method| method.as_str());
        let Attempt {
            request,
            mut member,
            org,
            session,
            factor,
            event_type,
            charge,
            ..
        } = self;
        // The member as the statement leaves them. Their row is locked since they were loaded,
        // so the statement writes it only when something changes.
        let mfa_enrolled = enrolled.unwrap_or(member.mfa_enrolled);
        let default_mfa_method = default_method
            .map(str::to_string)
            .or_else(|| member.default_mfa_method.clone());
        let verified = member.mfa_phone_number_verified || proof.verifies_phone;
        // A factor this success made active (NOTIFY mfa_events tells listeners of it).
        let factor_added = if proof.activates_totp {
            Some(MfaMethod::Totp.as_str())
        } else if proof.enrolls {
            Some(MfaMethod::Webauthn.as_str())
        } else if verified && !member.mfa_phone_number_verified {
            Some(MfaMethod::SmsOtp.as_str())
        } else {
            None
        };
        let changed = mfa_enrolled != member.mfa_enrolled
            || default_mfa_method != member.default_mfa_method
            || verified != member.mfa_phone_number_verified;
        member.mfa_enrolled = mfa_enrolled;
        member.default_mfa_method = default_mfa_method;
        member.mfa_phone_number_verified = verified;
        if proof.activates_totp {
            member.totp_registration_id =
                member.totp.as_ref().map(|t| t.totp_registration_id.clone());
        }
        // A factor proven in a login that changes nothing else (no enrollment, no new factor, no
        // recovery code used up) is told by the login's one event: its session's, or its
        // login.abandoned.
        let in_login_story =
            !changed && factor_added.is_none() && !matches!(proof.spend, Spend::RecoveryCode);
        let recorded = attempts::record_success(
            &request.event(
                &member.organization_id,
                Some(&member.member_id),
                event_type,
                json!({ "outcome": "success", "mfa_enrolled": enrolled,
                        "with_intermediate_session": session.is_some(),
                        "factor_added": factor_added }),
            ),
            in_login_story,
            &proof.spend,
            session.as_ref().map(|s| s.token_hash.as_slice()),
            proof.factor.to_json(),
            &MemberChange {
                changed,
                mfa_enrolled: member.mfa_enrolled,
                default_mfa_method: member.default_mfa_method.as_deref(),
                mfa_phone_number_verified: member.mfa_phone_number_verified,
            },
        )?;
        // The success resets the member's failures in the ledger once it is recorded.
        if let Some(charge) = charge.into_inner() {
            charge.succeed();
        }
        counters::add(Counter::SecondFactor(factor, Outcome::Succeeded));
        if let Some(updated_at) = recorded.updated_at {
            member.updated_at = updated_at;
        }
        let member_object = if proof.activates_totp || proof.enrolls {
            answer::member_before_mfa(&member)
        } else {
            answer::member(&member)
        };
        let mut answer = answer::about(
            &request,
            &member,
            json!({ "member": member_object, "organization": answer::organization(&member, &org) }),
        );
        if let Some(factors) = recorded.factors {
            answer["authentication_factors"] = answer::factors(factors);
        }
        if let (Some(obj), Value::Object(extra)) = (answer.as_object_mut(), extra) {
            obj.extend(extra);
        }
        Ok(answer)
    }
}

/// Who an audit event queued through the attempt ledger is about: the member, the caller's
/// session user, `event_type`, under `request`'s id.
pub fn ledger_event(
    request: &Request,
    organization_id: &str,
    member_id: &str,
    event_type: &'static str,
) -> ledger::EventContext {
    ledger::EventContext {
        organization_id: organization_id.to_string(),
        member_id: member_id.to_string(),
        actor: spi::session_user(),
        event_type,
        request_id: ids::request_id_bytes(&request.id),
    }
}
