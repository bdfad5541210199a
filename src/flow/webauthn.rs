//! Passkeys (WebAuthn) as a second factor: the project's allowed origins, the two ceremonies
//! (options for the browser, then the verification of its response, in the same transaction as
//! the login it proves), and the member's list of passkeys.

use crate::core::crypto::{random_bytes, sha256};
use crate::core::factor::Factor;
use crate::core::ids;
use crate::core::policy::{truncate_for_message, MfaMethod};
use crate::core::webauthn::{
    self, creation_options, normalize_origin, presented, request_options, rp_id_valid,
    CreationOptions, Expectation, Refusal, StoredCredential,
};
use crate::error::{err, ErrorType, MfaError, MfaResult};
use crate::flow::attempt::{Attempt, Proof};
use crate::flow::member::{self, Load};
use crate::flow::removal::{self, Removing};
use crate::flow::{answer, token, totp};
use crate::server::settings;
use crate::store::attempts::Spend;
use crate::store::audit::Request;
use crate::store::members::Member;
use crate::store::totp as stored_totp;
use crate::store::webauthn::{
    self as store, Ceremony, Challenge, IssuedChallenge, NewRegistration,
};
use serde_json::{json, Value};

/// How long a browser has to answer a challenge.
const CHALLENGE_SECONDS: i32 = 300;
/// What the options ask of user verification: a passkey is the second factor by possession, so
/// a PIN or a biometric is welcome but not required.
const USER_VERIFICATION: &str = "preferred";

/// The allowed origins, normalized as browsers serialize them.
pub fn allowed_origins_set(origins: Option<Vec<Option<String>>>) -> MfaResult<Vec<String>> {
    let request = Request::new();
    let mut wanted = Vec::new();
    for origin in origins.unwrap_or_default() {
        let Some(origin) = origin else {
            return err(
                ErrorType::InvalidWebauthnAllowedOrigins,
                "origins cannot contain NULL.",
            );
        };
        if origin.len() > 512 {
            return err(
                ErrorType::InvalidWebauthnAllowedOrigins,
                "An origin is at most 512 characters.",
            );
        }
        let origin = normalize_origin(&origin)
            .map_err(|why| MfaError::new(ErrorType::InvalidWebauthnAllowedOrigins, why))?;
        if !wanted.contains(&origin) {
            wanted.push(origin);
        }
    }
    wanted.sort();
    let before = store::allowed_origins()?;
    store::replace_allowed_origins(&wanted)?;
    request.audit(
        "",
        None,
        "webauthn_allowed_origins.set",
        json!({ "before": before, "after": wanted }),
    )?;
    Ok(wanted)
}

pub fn allowed_origins_get() -> MfaResult<Vec<String>> {
    store::allowed_origins()
}

/// The allowed origins, when `domain` is a relying-party id one of them may use.
fn origins_for(domain: Option<&str>) -> MfaResult<(String, Vec<String>)> {
    let domain = domain.unwrap_or_default();
    let origins = store::allowed_origins()?;
    if origins.is_empty() {
        return err(
            ErrorType::InvalidWebauthnDomain,
            "No origin may use passkeys yet: mfa_admin sets them with mfa.webauthn_allowed_origins_set.",
        );
    }
    if !rp_id_valid(domain, &origins) {
        return err(
            ErrorType::InvalidWebauthnDomain,
            format!(
                "{:?} is not the host of an allowed origin nor a registrable suffix of one.",
                truncate_for_message(domain)
            ),
        );
    }
    Ok((domain.to_ascii_lowercase(), origins))
}

fn check_authenticator_type(value: Option<&str>) -> MfaResult<Option<&str>> {
    match value {
        None | Some("platform") | Some("cross-platform") => Ok(value),
        Some(other) => err(
            ErrorType::InvalidAuthenticatorType,
            format!(
                "authenticator_type must be platform, cross-platform or NULL; got {:?}.",
                truncate_for_message(other)
            ),
        ),
    }
}

fn check_user_agent(value: Option<&str>) -> MfaResult<Option<&str>> {
    match value {
        Some(agent) if agent.chars().count() > 512 || agent.chars().any(char::is_control) => err(
            ErrorType::InvalidArgument,
            "user_agent must be at most 512 characters, without control characters.",
        ),
        _ => Ok(value),
    }
}

/// A fresh challenge for `member`, stored (as its hash) bound to `ceremony` and the login.
fn issue(
    member: &Member,
    ceremony: Ceremony,
    login: Option<&[u8]>,
    asked: Asked,
) -> MfaResult<Vec<u8>> {
    let challenge = random_bytes::<32>().to_vec();
    store::issue_challenge(
        member,
        &Challenge {
            challenge_hash: sha256(&challenge).to_vec(),
            ceremony,
            token_hash: login.map(<[u8]>::to_vec),
            domain: asked.domain,
            user_verification: USER_VERIFICATION,
            authenticator_type: asked.authenticator_type,
            user_agent: asked.user_agent,
            timeout_seconds: CHALLENGE_SECONDS,
        },
    )?;
    Ok(challenge)
}

/// What a ceremony's start was asked.
struct Asked<'a> {
    domain: &'a str,
    authenticator_type: Option<&'a str>,
    user_agent: Option<&'a str>,
}

/// Options for `navigator.credentials.create`: a member adds a passkey. A member who already
/// has an active factor needs a token that carries a second factor proven with it.
pub fn register_start(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    domain: Option<&str>,
    intermediate_session_token: Option<&str>,
    authenticator_type: Option<&str>,
    user_agent: Option<&str>,
) -> MfaResult<Value> {
    let request = Request::new();
    let authenticator_type = check_authenticator_type(authenticator_type)?;
    let user_agent = check_user_agent(user_agent)?;
    let (member, org) = member::load_with_policy(organization_id, member_id, Load::Lock)?;
    org.require_allowed(MfaMethod::Webauthn, member.is_breakglass)?;
    let login = token::find_optional(&member, intermediate_session_token)?;
    token::require_step_up_for_new_factor(&member, intermediate_session_token)?;
    let (domain, _) = origins_for(domain)?;
    let user_handle = store::user_handle(&member, random_bytes::<32>().to_vec())?;
    let exclude = store::credential_ids(&member, false)?;
    let challenge = issue(
        &member,
        Ceremony::Registration,
        login.as_ref().map(|l| l.token_hash.as_slice()),
        Asked {
            domain: &domain,
            authenticator_type,
            user_agent,
        },
    )?;
    let options = creation_options(&CreationOptions {
        challenge: &challenge,
        rp_id: &domain,
        rp_name: &settings::totp_issuer(),
        user_handle: &user_handle,
        user_name: &member.member_id,
        user_display_name: &member.member_id,
        exclude_credentials: &exclude,
        authenticator_attachment: authenticator_type,
        user_verification: USER_VERIFICATION,
        timeout_ms: CHALLENGE_SECONDS as u64 * 1000,
    });
    request.audit(
        &member.organization_id,
        Some(&member.member_id),
        "webauthn.registration_started",
        json!({ "domain": domain, "with_intermediate_session": login.is_some() }),
    )?;
    Ok(answer::about(
        &request,
        &member,
        json!({ "public_key_credential_creation_options": options }),
    ))
}

/// The browser's answer to a challenge, found before anything is verified: the credential id
/// and the challenge its client data answers. A malformed answer is the caller's mistake.
fn presented_or_raise(credential: &Value) -> MfaResult<(Vec<u8>, Vec<u8>)> {
    presented(credential)
        .map_err(|refusal| MfaError::new(ErrorType::InvalidPublicKeyCredential, refusal.message()))
}

/// The issued challenge `challenge` names, consumed; `None` when it was not issued to this
/// member for this ceremony and login, is spent or has expired.
fn consume(
    attempt: &Attempt,
    ceremony: Ceremony,
    challenge: &[u8],
) -> MfaResult<Option<IssuedChallenge>> {
    let issued = store::consume_challenge(&attempt.member, ceremony, sha256(challenge).to_vec())?;
    let login = attempt.session.as_ref().map(|s| s.token_hash.as_slice());
    Ok(issued.filter(|c| !c.expired && c.token_hash.as_deref() == login))
}

/// A refusal of the verification: malformed input raises (the check stays counted), the rest
/// is a counted failure.
fn refused(attempt: &Attempt, refusal: Refusal) -> MfaResult<Value> {
    if refusal.is_malformed() {
        return Err(MfaError::new(
            ErrorType::InvalidPublicKeyCredential,
            refusal.message(),
        ));
    }
    attempt.fail(ErrorType::UnableToAuthWebauthn, &refusal.message())
}

fn challenge_refused(attempt: &Attempt) -> MfaResult<Value> {
    attempt.fail(
        ErrorType::InvalidWebauthnChallenge,
        "The credential answers no live challenge of this login: start the ceremony again.",
    )
}

/// Verifies a `RegistrationResponseJSON` and stores the passkey. With a token, the passkey's
/// signature over the login's challenge is a second factor of that login. Recovery codes come
/// with the member's first passkey when they have none.
pub fn register(
    attempt: Attempt,
    credential: &Value,
    intermediate_session_token: Option<&str>,
) -> MfaResult<Value> {
    token::require_step_up_for_new_factor(&attempt.member, intermediate_session_token)?;
    let (_, challenge) = presented_or_raise(credential)?;
    if let Some(refusal) = attempt.admit(None)? {
        return Ok(refusal);
    }
    let Some(issued) = consume(&attempt, Ceremony::Registration, &challenge)? else {
        return challenge_refused(&attempt);
    };
    let origins = store::allowed_origins()?;
    let new = match webauthn::verify_registration(
        credential,
        &Expectation {
            challenge: &challenge,
            allowed_origins: &origins,
            rp_id: &issued.domain,
            user_verification_required: issued.user_verification == "required",
        },
    ) {
        Ok(new) => new,
        Err(refusal) => return refused(&attempt, refusal),
    };
    let member = &attempt.member;
    let registration_id = ids::new_uuid();
    let stored = store::insert_registration(
        member,
        &NewRegistration {
            webauthn_registration_id: &registration_id,
            credential_id: &new.credential_id,
            public_key: &new.public_key,
            algorithm: new.algorithm as i32,
            sign_count: i64::from(new.sign_count),
            domain: &issued.domain,
            user_agent: issued.user_agent.as_deref(),
            authenticator_type: issued.authenticator_type.as_deref(),
            aaguid: uuid::Uuid::from_bytes(new.aaguid).to_string(),
            attestation_format: &new.attestation_format,
            transports: new.transports.clone(),
            user_verified: new.user_verified,
            backup_eligible: new.backup_eligible,
            backed_up: new.backed_up,
        },
    )?;
    if !stored {
        return err(
            ErrorType::DuplicateWebauthnRegistration,
            "This passkey is registered already.",
        );
    }
    // Codes that no active factor stood behind (an app started but never activated, by
    // whoever held the application's role, say) are replaced: only the member's first real
    // factor mints the codes that stand in for it.
    let codes_backed = member.totp_registration_id.is_some() || member.webauthn_registrations > 0;
    totp::discard_pending(member)?;
    let recovery_codes = if !codes_backed || stored_totp::recovery_codes_left(member)?.0 == 0 {
        Some(totp::mint_recovery_codes(member)?)
    } else {
        None
    };
    let factor = Factor::Webauthn {
        registration_id: registration_id.clone(),
        domain: issued.domain.clone(),
        user_agent: issued.user_agent.clone(),
        backup_eligible: new.backup_eligible,
        user_verified: new.user_verified,
        registration: true,
    };
    let mut extra = json!({ "webauthn_registration_id": registration_id });
    if let Some(codes) = recovery_codes {
        extra["recovery_codes"] = json!(codes);
    }
    attempt.succeed(
        Proof {
            factor,
            spend: Spend::Passkey,
            verifies_phone: false,
            activates_totp: false,
            enrolls: true,
        },
        extra,
    )
}

/// Options for `navigator.credentials.get`: the member's passkeys, for a login or a step-up.
pub fn authenticate_start(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    domain: Option<&str>,
    intermediate_session_token: Option<&str>,
) -> MfaResult<Value> {
    let request = Request::new();
    let (member, org) = member::load_with_policy(organization_id, member_id, Load::Read)?;
    org.require_allowed(MfaMethod::Webauthn, member.is_breakglass)?;
    let Some(login) = token::find_optional(&member, intermediate_session_token)? else {
        return Err(token::token_not_found());
    };
    let allowed = store::credential_ids(&member, true)?;
    if allowed.is_empty() {
        return err(
            ErrorType::WebauthnRegistrationNotFound,
            "The member has no usable passkey.",
        );
    }
    let (domain, _) = origins_for(domain)?;
    let challenge = issue(
        &member,
        Ceremony::Authentication,
        Some(&login.token_hash),
        Asked {
            domain: &domain,
            authenticator_type: None,
            user_agent: None,
        },
    )?;
    Ok(answer::about(
        &request,
        &member,
        json!({
            "public_key_credential_request_options": request_options(
                &challenge,
                &domain,
                &allowed,
                USER_VERIFICATION,
                CHALLENGE_SECONDS as u64 * 1000,
            ),
        }),
    ))
}

/// Verifies an `AuthenticationResponseJSON` from one of the member's passkeys, for the login
/// (or step-up) of `attempt`'s token.
pub fn authenticate(attempt: Attempt, credential: &Value) -> MfaResult<Value> {
    if attempt.session.is_none() {
        return Err(token::token_not_found());
    }
    if attempt.member.webauthn_registrations == 0 {
        return err(
            ErrorType::WebauthnRegistrationNotFound,
            "The member has no passkey.",
        );
    }
    let (credential_id, challenge) = presented_or_raise(credential)?;
    if let Some(refusal) = attempt.admit(None)? {
        return Ok(refusal);
    }
    let Some(issued) = consume(&attempt, Ceremony::Authentication, &challenge)? else {
        return challenge_refused(&attempt);
    };
    let member = &attempt.member;
    let Some(registration) = store::registration_for(member, &credential_id)? else {
        return attempt.fail(
            ErrorType::UnableToAuthWebauthn,
            "The credential is not one of the member's passkeys.",
        );
    };
    if registration.clone_suspected {
        return attempt.fail(
            ErrorType::WebauthnCloneSuspected,
            "This passkey is suspected of having been cloned and is refused; the member must register a new one.",
        );
    }
    if registration.domain != issued.domain {
        return attempt.fail(
            ErrorType::UnableToAuthWebauthn,
            "The passkey was registered for another domain.",
        );
    }
    let origins = store::allowed_origins()?;
    let verified = webauthn::verify_assertion(
        credential,
        &Expectation {
            challenge: &challenge,
            allowed_origins: &origins,
            rp_id: &issued.domain,
            user_verification_required: issued.user_verification == "required",
        },
        &StoredCredential {
            credential_id: &registration.credential_id,
            public_key: &registration.public_key,
            sign_count: u32::try_from(registration.sign_count).unwrap_or(u32::MAX),
            user_handle: &registration.user_handle,
        },
    );
    let assertion = match verified {
        Ok(assertion) => assertion,
        // An answer to a challenge issued before the passkey's latest sign-in (two tabs, or an
        // answer held back) is stale: its counter is behind for an honest reason.
        Err(Refusal::CounterNotIncreased { .. })
            if registration
                .last_authenticated_at
                .is_some_and(|last| issued.created_at < last) =>
        {
            return challenge_refused(&attempt);
        }
        Err(Refusal::CounterNotIncreased { stored, presented }) => {
            store::flag_clone_suspected(
                &member.organization_id,
                &registration.webauthn_registration_id,
            )?;
            attempt.request.audit(
                &member.organization_id,
                Some(&member.member_id),
                "webauthn.clone_suspected",
                json!({ "webauthn_registration_id": registration.webauthn_registration_id,
                        "stored_sign_count": stored, "presented_sign_count": presented }),
            )?;
            return attempt.fail(
                ErrorType::WebauthnCloneSuspected,
                "The passkey's signature counter did not increase: it may have been cloned, and is refused from now on.",
            );
        }
        Err(refusal) => return refused(&attempt, refusal),
    };
    store::record_use(
        &member.organization_id,
        &registration.webauthn_registration_id,
        i64::from(assertion.sign_count),
        assertion.backed_up,
    )?;
    let registration_id = registration.webauthn_registration_id.clone();
    attempt.succeed(
        Proof {
            factor: Factor::Webauthn {
                registration_id: registration_id.clone(),
                domain: registration.domain,
                user_agent: registration.user_agent,
                backup_eligible: registration.backup_eligible,
                user_verified: assertion.user_verified,
                registration: false,
            },
            spend: Spend::Passkey,
            verifies_phone: false,
            activates_totp: false,
            enrolls: false,
        },
        json!({ "webauthn_registration_id": registration_id }),
    )
}

/// The member's passkeys (no key material).
pub fn registrations_get(
    organization_id: Option<&str>,
    member_id: Option<&str>,
) -> MfaResult<Value> {
    let request = Request::new();
    let member = member::load(organization_id, member_id, Load::Read)?;
    Ok(answer::about(
        &request,
        &member,
        json!({ "webauthn_registrations": store::registrations(&member)? }),
    ))
}

fn registration_id(value: Option<&str>) -> MfaResult<&str> {
    match value {
        Some(v) if uuid::Uuid::parse_str(v).is_ok() => Ok(v),
        _ => err(
            ErrorType::WebauthnRegistrationNotFound,
            "webauthn_registration_id is not the id of one of the member's passkeys.",
        ),
    }
}

fn not_found() -> MfaError {
    MfaError::new(
        ErrorType::WebauthnRegistrationNotFound,
        "The member has no passkey with this webauthn_registration_id.",
    )
}

/// Names one of the member's passkeys (1–200 characters).
pub fn registration_update(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    webauthn_registration_id: Option<&str>,
    name: Option<&str>,
) -> MfaResult<Value> {
    let request = Request::new();
    let id = registration_id(webauthn_registration_id)?;
    let name = match name {
        Some(n) if (1..=200).contains(&n.chars().count()) && !n.chars().any(char::is_control) => n,
        _ => {
            return err(
                ErrorType::InvalidArgument,
                "name must be 1 to 200 characters, without control characters.",
            )
        }
    };
    let member = member::load(organization_id, member_id, Load::Lock)?;
    if !store::rename_registration(&member, id, name)? {
        return Err(not_found());
    }
    request.audit(
        &member.organization_id,
        Some(&member.member_id),
        "webauthn.registration_updated",
        json!({ "webauthn_registration_id": id }),
    )?;
    Ok(answer::about(
        &request,
        &member,
        json!({ "webauthn_registrations": store::registrations(&member)? }),
    ))
}

/// Removes one of the member's passkeys; their remembered devices go with it. `mfa_admin`'s to
/// do, or the member's with a fresh second factor (`flow::removal`).
pub fn registration_delete(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    webauthn_registration_id: Option<&str>,
    intermediate_session_token: Option<&str>,
) -> MfaResult<Value> {
    let request = Request::new();
    let id = registration_id(webauthn_registration_id)?;
    let (member, org) = member::load_with_policy(organization_id, member_id, Load::Lock)?;
    let remover = removal::authorize(&member, intermediate_session_token)?;
    removal::refuse_last_factor(remover, &member, &org, Removing::Passkey)?;
    if !store::delete_registration(&member, id)? {
        return Err(not_found());
    }
    removal::factor_gone(&request, &member, "webauthn_registration_deleted")?;
    request.audit(
        &member.organization_id,
        Some(&member.member_id),
        "webauthn.registration_deleted",
        json!({ "webauthn_registration_id": id, "by": removal::by(remover),
                "factor_removed": "webauthn" }),
    )?;
    Ok(answer::about(
        &request,
        &member,
        json!({ "member": answer::member_now(&member.organization_id, &member.member_id)? }),
    ))
}
