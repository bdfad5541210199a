//! The login flow and the session policy gate: `primary_authenticate`, intermediate session tokens
//! and the factors proven with them, `check_session_policy`, and the `enforce_session_policy`
//! trigger that keeps a session row out of the application's table until the policy is met.

use crate::core::crypto::{new_token, token_hash};
use crate::store::spi::{self, Request};
use crate::error::{err, ErrorType, MfaError, MfaResult, OrRaise};
use crate::store::jsonb::Jsonb;
use crate::api::members::{self, Load, Member};
use crate::api::organizations;
use crate::core::policy::{self, validate_id, IdKind, PrimaryMethod, SecondFactor};

use crate::core::attempts::Admission;
use crate::settings;
use crate::store::ledger;
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

/// A login in progress, found by its token.
#[derive(Debug, Clone)]
pub struct IntermediateSession {
    pub organization_id: String,
    pub member_id: String,
    pub token_hash: Vec<u8>,
    pub factors: Vec<Value>,
    pub live: bool,
}

impl IntermediateSession {
    pub fn has_second_factor(&self) -> bool {
        !second_factors(&self.factors).is_empty()
    }
}

/// The second factors among a login's `authentication_factors`.
pub fn second_factors(factors: &[Value]) -> Vec<SecondFactor> {
    factors
        .iter()
        .filter_map(
            |f| match (f["type"].as_str(), f["delivery_method"].as_str()) {
                (Some("otp"), Some("sms")) => Some(SecondFactor::SmsOtp),
                (Some("totp"), _) => Some(SecondFactor::Totp),
                (Some("recovery_codes"), _) => Some(SecondFactor::RecoveryCode),
                _ => None,
            },
        )
        .collect()
}

pub fn token_not_found() -> MfaError {
    MfaError::new(
        ErrorType::IntermediateSessionNotFound,
        "The intermediate session token is unknown, expired or already used.",
    )
}

/// Finds the live login `token` belongs to and checks it is this member's. A token of another
/// organization is `invalid_intermediate_session_token_for_organization`; an unknown, expired or
/// consumed one, or one of another member, is `intermediate_session_not_found`. The row stays
/// locked until the end of the transaction.
pub fn find(member: &Member, token: &str) -> MfaResult<IntermediateSession> {
    find_for(&member.organization_id, &member.member_id, token)
}

/// `find` by the member's ids.
pub fn find_for(
    organization_id: &str,
    member_id: &str,
    token: &str,
) -> MfaResult<IntermediateSession> {
    let hash = token_hash(token);
    let found = spi::typed_row(
        "SELECT organization_id, member_id, factors, consumed_at IS NULL AND expires_at > clock_timestamp()
           FROM mfa.intermediate_sessions WHERE token_hash = $1 FOR UPDATE",
        &[hash.clone().into()],
        |row| {
            Ok(IntermediateSession {
                organization_id: row.get::<String>(1)?.unwrap_or_default(),
                member_id: row.get::<String>(2)?.unwrap_or_default(),
                token_hash: hash.clone(),
                factors: row
                    .get::<JsonB>(3)?
                    .and_then(|f| serde_json::from_value(f.0).ok())
                    .unwrap_or_default(),
                live: row.get::<bool>(4)?.unwrap_or(false),
            })
        },
    )?;
    let Some(found) = found else {
        return Err(token_not_found());
    };
    if found.organization_id != organization_id {
        return err(
            ErrorType::InvalidIntermediateSessionTokenForOrganization,
            "The intermediate session token belongs to another organization.",
        );
    }
    if found.member_id != member_id || !found.live {
        return Err(token_not_found());
    }
    Ok(found)
}

/// `find` for an optional token argument.
pub fn find_optional(
    member: &Member,
    token: Option<&str>,
) -> MfaResult<Option<IntermediateSession>> {
    token.map(|t| find(member, t)).transpose()
}

/// Adding a factor when the member already has an active one needs a token that already carries
/// an MFA factor: otherwise whoever knows the password could enroll their own phone or app.
pub fn require_step_up_for_new_factor(member: &Member, token: Option<&str>) -> MfaResult<()> {
    if !member.has_active_factor() {
        return Ok(());
    }
    match find_optional(member, token)? {
        Some(session) if session.has_second_factor() => Ok(()),
        _ => err(
            ErrorType::InsufficientFactors,
            "The member already has an active MFA factor: adding another needs an intermediate session token that carries an MFA factor.",
        ),
    }
}

/// One second-factor authentication attempt: what every factor (TOTP, SMS code, recovery code)
/// checks first, and how it ends — a returned failure that counts toward the lock, or a success
/// that resets it, applies the enrollment rules and records the factor on the login.
pub struct Attempt {
    pub request: Request,
    pub member: Member,
    pub org: policy::OrganizationPolicy,
    pub session: Option<IntermediateSession>,
    method: policy::MfaMethod,
    event_type: &'static str,
    set_mfa_enrollment: Option<policy::SetMfaEnrollment>,
    set_default_mfa: bool,
    /// The check charged in the attempt ledger (`admit`), settled by `fail` or `succeed`.
    charge: std::cell::RefCell<Option<ledger::Charge>>,
}

impl Attempt {
    /// Validates the arguments, locks the member, checks the token and that the organization
    /// allows `method`. These are the caller's mistakes: they raise.
    pub fn begin(
        organization_id: Option<&str>,
        member_id: Option<&str>,
        token: Option<&str>,
        method: policy::MfaMethod,
        event_type: &'static str,
        set_mfa_enrollment: Option<&str>,
        set_default_mfa: bool,
    ) -> MfaResult<Attempt> {
        let request = Request::new();
        let set_mfa_enrollment = set_mfa_enrollment
            .map(policy::SetMfaEnrollment::parse)
            .transpose()?;
        // The factor the attempt proves is locked with the member.
        let load = match method {
            policy::MfaMethod::SmsOtp => Load::LockWithSmsCode,
            policy::MfaMethod::Totp => Load::LockWithTotp,
        };
        let (member, org) = members::load_with_policy(organization_id, member_id, load)?;
        let session = find_optional(&member, token)?;
        org.require_allowed(method, member.is_breakglass)?;
        Ok(Attempt {
            request,
            member,
            org,
            session,
            method,
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
        let key = self.member.ledger_key()?;
        let tag = sms_code_hash.map(|hash| {
            let digest = <sha2::Sha256 as sha2::Digest>::digest(hash);
            u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
        });
        let context = self.event_context();
        let refusal = match ledger::admit(
            key,
            &self.member.attempts,
            &settings::attempt_limits(),
            tag,
            &context,
        )? {
            Ok(charge) => {
                *self.charge.borrow_mut() = Some(charge);
                return Ok(None);
            }
            Err((refusal, _)) => refusal,
        };
        let failure = match refusal {
            Admission::Locked => {
                return members::locked_attempt(&self.request, &self.member, self.event_type)
                    .map(Some)
            }
            Admission::Throttled => MfaError::new(
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

    /// Who the ledger's audit events of this attempt are about.
    fn event_context(&self) -> ledger::EventContext {
        ledger::EventContext {
            organization_id: self.member.organization_id.clone(),
            member_id: self.member.member_id.clone(),
            actor: spi::session_user(),
            event_type: self.event_type,
            request_id: spi::request_id_bytes(&self.request.id),
        }
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
        Ok(failure.to_failure_json(&self.request.id))
    }

    /// A successful attempt: spends the factor, records it on the login, resets the failure
    /// count, applies the enrollment rules and writes the audit event, all in one statement.
    /// `extra` fields are added to the answer.
    pub fn succeed(self, proof: Proof, extra: Value) -> MfaResult<Value> {
        // Under REQUIRED_FOR_ALL every member who proves a factor is enrolled; otherwise the
        // caller decides. The first successful method becomes the default. The member row is
        // written only when something changes.
        let enrolled = if self.org.mfa_policy == policy::MfaPolicy::RequiredForAll {
            Some(true)
        } else {
            self.set_mfa_enrollment
                .map(|e| e == policy::SetMfaEnrollment::Enroll)
        };
        let default_method = (self.set_default_mfa || self.member.default_mfa_method.is_none())
            .then_some(self.method.as_str());
        // The member as the statement leaves them. Their row is locked since they were loaded,
        // so the statement writes it only when something changes.
        let Attempt {
            request,
            mut member,
            session,
            event_type,
            charge,
            ..
        } = self;
        let mfa_enrolled = enrolled.unwrap_or(member.mfa_enrolled);
        let default_mfa_method = default_method
            .map(str::to_string)
            .or_else(|| member.default_mfa_method.clone());
        let verified = member.mfa_phone_number_verified || proof.verifies_phone;
        let shown_change = mfa_enrolled != member.mfa_enrolled
            || default_mfa_method != member.default_mfa_method
            || verified != member.mfa_phone_number_verified;
        let writes_member = shown_change;
        member.mfa_enrolled = mfa_enrolled;
        member.default_mfa_method = default_mfa_method;
        member.mfa_phone_number_verified = verified;
        if proof.activates_totp {
            member.totp_registration_id =
                member.totp.as_ref().map(|t| t.totp_registration_id.clone());
        }
        // Only the parts this success needs: each part costs an executor node even when it
        // writes nothing.
        let mut parts = Vec::with_capacity(4);
        let spend_argument = match proof.spend {
            Some((statement, argument)) => {
                parts.push(format!("spent AS ({statement})"));
                argument
            }
            None => Option::<i64>::None.into(),
        };
        let session = session.as_ref();
        if session.is_some() {
            parts.push(
                "proven AS (
                     UPDATE mfa.intermediate_sessions
                        SET factors = factors || jsonb_build_array($5::jsonb || jsonb_build_object('last_authenticated_at', clock_timestamp()))
                      WHERE organization_id = $1 AND token_hash = $6
                  RETURNING factors)"
                    .into(),
            );
        }
        if writes_member {
            parts.push(
                "changed AS (
                     UPDATE mfa.members
                        SET mfa_enrolled = $3, default_mfa_method = $4,
                            mfa_phone_number_verified = $7,
                            updated_at = CASE WHEN $12 THEN now() ELSE updated_at END
                      WHERE organization_id = $1 AND member_id = $2
                  RETURNING updated_at)"
                    .into(),
            );
        }
        parts.push(
            "audited AS (
                 INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
                 VALUES ($1, $9::uuid, $10, $2, $11))"
                .into(),
        );
        let statement = format!(
            "WITH {} SELECT {}, {}",
            parts.join(", "),
            if session.is_some() {
                "(SELECT factors FROM proven)"
            } else {
                "NULL::jsonb"
            },
            if writes_member {
                "(SELECT updated_at FROM changed)"
            } else {
                "NULL::timestamptz"
            }
        );
        let (factors, updated_at) = spi::typed_row(
            &statement,
            &[
                member.organization_id.as_str().into(),
                member.member_id.as_str().into(),
                member.mfa_enrolled.into(),
                member.default_mfa_method.as_deref().into(),
                // Recorded only on a login: not even converted without one.
                session.map(|_| Jsonb(proof.factor)).into(),
                session.map(|s| s.token_hash.clone()).into(),
                member.mfa_phone_number_verified.into(),
                spend_argument,
                request.id.as_str().into(),
                event_type.into(),
                Jsonb(json!({ "outcome": "success", "mfa_enrolled": enrolled,
                              "with_intermediate_session": session.is_some() }))
                .into(),
                shown_change.into(),
            ],
            |row| Ok((row.get::<JsonB>(1)?, row.get::<TimestampWithTimeZone>(2)?)),
        )?
        .expect("one row");
        // The success resets the member's failures in the ledger once it is recorded.
        if let Some(charge) = charge.into_inner() {
            charge.succeed();
        }
        if let Some(updated_at) = updated_at {
            member.updated_at = updated_at;
        }
        let mut answer = members::answer(&request, &member, json!({ "member": member.object() }));
        if let Some(JsonB(factors)) = factors {
            answer["authentication_factors"] = factors;
        }
        if let (Some(obj), Value::Object(extra)) = (answer.as_object_mut(), extra) {
            obj.extend(extra);
        }
        Ok(answer)
    }
}

/// What a successful attempt proved.
pub struct Proof<'a> {
    /// The factor, in Stytch's `authentication_factors` shape (see `factor`).
    pub factor: Value,
    /// The statement that spends the factor, run as a CTE of the success statement: `$1` is the
    /// organization, `$2` the member, `$8` the argument given here. `None` when the factor was
    /// spent already.
    pub spend: Option<(&'static str, DatumWithOid<'a>)>,
    /// The factor reached the member's phone: the number is verified.
    pub verifies_phone: bool,
    /// The factor was a code from a pending authenticator app, which is now active.
    pub activates_totp: bool,
}

/// A factor in Stytch's `authentication_factors` shape.
pub fn factor(factor_type: &str, delivery_method: &str, extra: Value) -> Value {
    // last_authenticated_at is added by the statement that records the factor.
    let mut f = json!({ "type": factor_type, "delivery_method": delivery_method });
    if let (Some(obj), Some(extra)) = (f.as_object_mut(), extra.as_object()) {
        obj.extend(extra.clone());
    }
    f
}

/// What a new intermediate session token is for.
#[derive(Clone, Copy, PartialEq)]
enum Start {
    /// A login: the application checked this primary factor.
    Login(PrimaryMethod),
    /// A step-up of an existing session: no primary factor, so it can never create a session;
    /// the factors proven with it raise a session's assurance (see `api::gate`).
    StepUp,
}

fn start(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    start: Start,
    locale: &str,
) -> MfaResult<Value> {
    let request = Request::new();
    let locale = crate::core::sms::Locale::from_tag(locale);
    let (member, org) = members::load_with_policy(organization_id, member_id, Load::Lock)?;
    let token = new_token();
    let primary_method = match start {
        Start::Login(method) => Some(method.as_str()),
        Start::StepUp => None,
    };
    spi::execute(
        "INSERT INTO mfa.intermediate_sessions
                (organization_id, token_hash, member_id, primary_factor, locale, factors, expires_at)
         VALUES ($1, $2, $3, $4, $5,
                 CASE WHEN $4 IS NULL THEN '[]'::jsonb
                      ELSE jsonb_build_array($6::jsonb || jsonb_build_object('last_authenticated_at', clock_timestamp())) END,
                 clock_timestamp() + make_interval(mins => $7))",
        &[
            member.organization_id.as_str().into(),
            token_hash(&token).into(),
            member.member_id.as_str().into(),
            primary_method.into(),
            locale.as_str().into(),
            primary_method
                .map(|m| Jsonb(factor(m, m, json!({}))))
                .into(),
            settings::INTERMEDIATE_SESSION_MINUTES.get().into(),
        ],
    )?;
    // A step-up always asks for a second factor: that is what it is for.
    let mfa_required = start == Start::StepUp
        || policy::mfa_required(&org, member.mfa_enrolled, member.is_breakglass);
    // When SMS is how this member proves themselves, the code goes out at once.
    let sms_first = mfa_required
        && member.mfa_phone_number_verified
        && org.allows(policy::MfaMethod::SmsOtp, member.is_breakglass)
        && (member.default_mfa_method.as_deref() == Some("sms_otp")
            || member.totp_registration_id.is_none());
    // A send refused by the limits or the allowlist must not fail the login: the member can still
    // use another factor or ask for a code later.
    let secondary_auth_initiated = if sms_first && !member.is_locked {
        match crate::api::sms::send_code(&request, &member, None, locale, false) {
            Ok(()) => Some("sms_otp"),
            Err(e)
                if matches!(
                    e.error_type,
                    ErrorType::TooManyRequests | ErrorType::InvalidPhoneNumberCountryCode
                ) =>
            {
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let (event_type, details) = match primary_method {
        Some(method) => (
            "login.primary_authenticated",
            json!({ "primary_factor": method, "mfa_required": mfa_required,
                    "secondary_auth_initiated": secondary_auth_initiated }),
        ),
        None => (
            "step_up.started",
            json!({ "secondary_auth_initiated": secondary_auth_initiated }),
        ),
    };
    request.audit(
        &member.organization_id,
        Some(&member.member_id),
        event_type,
        details,
    )?;
    Ok(members::answer(
        &request,
        &member,
        json!({
            "member_authenticated": !mfa_required,
            "intermediate_session_token": token,
            "mfa_required": if mfa_required {
                json!({
                    "member_options": {
                        "mfa_phone_number": member.mfa_phone_number.as_deref().map(crate::core::phone::mask_e164),
                        "totp_registration_id": member.totp_registration_id,
                    },
                    "secondary_auth_initiated": secondary_auth_initiated,
                })
            } else {
                Value::Null
            },
            "member": if mfa_required { member.object_before_mfa() } else { member.object() },
        }),
    ))
}

/// Starts a login after the application's own primary check.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn primary_authenticate(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    method: default!(Option<&str>, "'password'"),
    locale: default!(Option<&str>, "'en'"),
) -> Jsonb {
    let result = PrimaryMethod::parse(method.unwrap_or("password")).and_then(|method| {
        start(
            organization_id,
            member_id,
            Start::Login(method),
            locale.unwrap_or("en"),
        )
    });
    Jsonb(result.or_raise())
}

/// Starts a step-up of an existing session: a token that carries no primary factor, for the
/// factor functions; presented in a guarded sessions table's token column, it raises the
/// session's assurance.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn step_up_start(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    locale: default!(Option<&str>, "'en'"),
) -> Jsonb {
    Jsonb(
        start(
            organization_id,
            member_id,
            Start::StepUp,
            locale.unwrap_or("en"),
        )
        .or_raise(),
    )
}

/// A session the gate allowed: the request that decided it and the login's factors.
pub struct Allowed {
    pub request: Request,
    pub factors: Vec<Value>,
}

/// The decision of the session gate for a new session: passes (consuming the token) or fails
/// with `insufficient_factors`.
///
/// The token is consumed and the event written first, the policy decided after: a denial is an
/// error, which undoes both with the caller's (sub)transaction. Callers must raise it.
pub fn decide(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    token: Option<&str>,
) -> MfaResult<Allowed> {
    let request = Request::new();
    let organization_id = validate_id(organization_id, IdKind::Organization)?;
    let member_id = validate_id(member_id, IdKind::Member)?;
    // The member's side of the decision, and the token consumed with its event, in one statement.
    // Expiry is decided on the clock, not at the start of the caller's transaction.
    let (enrolled, breakglass, org, consumed, has_primary) = spi::typed_row(
        "WITH member AS (
             SELECT m.mfa_enrolled, m.is_breakglass, o.mfa_policy, o.mfa_methods, o.allowed_mfa_methods
               FROM mfa.members m JOIN mfa.organizations o ON o.organization_id = m.organization_id
              WHERE m.organization_id = $1 AND m.member_id = $2),
         consumed AS (
             UPDATE mfa.intermediate_sessions SET consumed_at = clock_timestamp()
              WHERE organization_id = $1 AND token_hash = $3 AND member_id = $2
                AND consumed_at IS NULL AND expires_at > clock_timestamp() AND EXISTS (SELECT FROM member)
          RETURNING factors, primary_factor IS NOT NULL AS has_primary),
         audited AS (
             INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
             SELECT $1, $4::uuid, 'session.allowed', $2,
                    jsonb_build_object('factors', jsonb_path_query_array(factors, '$[*].type'))
               FROM consumed)
         SELECT member.*, (SELECT factors FROM consumed), (SELECT has_primary FROM consumed) FROM member",
        &[
            organization_id.into(),
            member_id.into(),
            token.map(token_hash).into(),
            request.id.as_str().into(),
        ],
        |row| {
            let policy = organizations::read_policy(row, 3)?;
            Ok((
                row.get::<bool>(1)?.unwrap_or(false),
                row.get::<bool>(2)?.unwrap_or(false),
                policy,
                row.get::<JsonB>(6)?,
                row.get::<bool>(7)?.unwrap_or(false),
            ))
        },
    )?
    .ok_or_else(|| members::not_found(organization_id, member_id))?;
    let insufficient = |e: MfaError| {
        MfaError::new(
            ErrorType::InsufficientFactors,
            format!("{}: {}", e.error_type, e.message),
        )
    };
    let decision = (|| -> MfaResult<Vec<Value>> {
        let Some(token) = token else {
            return err(
                ErrorType::InsufficientFactors,
                "A session needs the login's intermediate session token.",
            );
        };
        let Some(JsonB(Value::Array(factors))) = consumed else {
            // Which of the token's problems it is, for the message.
            find_for(organization_id, member_id, token).map_err(insufficient)?;
            return Err(insufficient(token_not_found()));
        };
        if !has_primary {
            return err(
                ErrorType::InsufficientFactors,
                "A step-up token carries no primary factor: it raises an existing session's assurance and cannot create a session.",
            );
        }
        policy::session_allowed(&org, enrolled, breakglass, &second_factors(&factors))?;
        Ok(factors)
    })();
    match decision {
        Ok(factors) => Ok(Allowed { request, factors }),
        Err(denied) => {
            // The raised error rolls the caller's transaction back, audit event included; the denial
            // is logged so it is not lost.
            pgrx::log!(
                "mfa: session denied (request {}) for member {:?} of organization {:?}: {}",
                request.id,
                member_id,
                organization_id,
                denied.error_type
            );
            Err(denied)
        }
    }
}

/// `decide`, answered as `check_session_policy` answers.
fn check(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    token: Option<&str>,
) -> MfaResult<Value> {
    let Allowed { request, factors } = decide(organization_id, member_id, token)?;
    Ok(members::answer_for(
        &request,
        organization_id.unwrap_or_default(),
        member_id.unwrap_or_default(),
        json!({ "authentication_factors": factors }),
    ))
}

/// The policy check a session-creating transaction calls before inserting its session.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn check_session_policy(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    intermediate_session_token: Option<&str>,
) -> Jsonb {
    Jsonb(check(organization_id, member_id, intermediate_session_token).or_raise())
}

/// `BEFORE INSERT` trigger for the application's sessions table. Arguments: the names of the
/// organization id, member id and token columns, and optionally of a jsonb column to fill with the
/// login's factors. The token in the row is consumed by then, so it can never serve again.
#[pg_trigger]
fn enforce_session_policy<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, PgTriggerError> {
    let fail =
        |message: String| -> ! { MfaError::new(ErrorType::InvalidArgument, message).raise() };
    let args = trigger
        .extra_args()
        .unwrap_or_else(|e| fail(format!("enforce_session_policy: {e}")));
    if !(3..=4).contains(&args.len()) {
        fail(
            "enforce_session_policy(organization_column, member_column, token_column [, factors_column]) takes 3 or 4 column names".into(),
        );
    }
    if !trigger.event().fired_before()
        || !trigger.event().fired_by_insert()
        || !trigger.event().fired_for_row()
    {
        fail("enforce_session_policy must be a BEFORE INSERT … FOR EACH ROW trigger".into());
    }
    let mut row = trigger
        .new()
        .ok_or(PgTriggerError::NotTrigger)?
        .into_owned();
    let text_column = |name: &str| -> Option<String> {
        row.get_by_name::<String>(name)
            .unwrap_or_else(|e| fail(format!("enforce_session_policy: column {name:?}: {e}")))
    };
    let organization_id = text_column(&args[0]);
    let member_id = text_column(&args[1]);
    let token = text_column(&args[2]);
    let allowed = decide(
        organization_id.as_deref(),
        member_id.as_deref(),
        token.as_deref(),
    )
    .or_raise();
    if let Some(factors_column) = args.get(3) {
        row.set_by_name(factors_column, Jsonb(Value::Array(allowed.factors)))
            .unwrap_or_else(|e| {
                fail(format!(
                    "enforce_session_policy: column {factors_column:?}: {e}"
                ))
            });
    }
    Ok(Some(row))
}
