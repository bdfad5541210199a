//! Authenticator apps and recovery codes: storing a registration and its codes, checking a TOTP
//! code or a recovery code.

use crate::core::factor::Factor;
use crate::core::ids;
use crate::core::policy::{MfaMethod, OrganizationPolicy};
use crate::core::qr::qr_code_data_url;
use crate::core::totp::{
    new_recovery_code, new_secret, normalize_recovery_code, otpauth_uri, secret_from_base32,
    secret_to_base32, step_at, verify_code, CodeRejection, RECOVERY_CODE_COUNT,
};
use crate::error::{err, ErrorType, MfaError, MfaResult};
use crate::flow::attempt::{Attempt, Proof};
use crate::flow::keys;
use crate::flow::member::{self, Load};
use crate::flow::removal::{self, Removing};
use crate::flow::{answer, token};
use crate::server::settings;
use crate::store::attempts::Spend;
use crate::store::audit::Request;
use crate::store::members::Member;
use crate::store::members::{self};
use crate::store::totp;
use pgrx::datum::ToIsoString;
use serde_json::{json, Value};

/// The secret is bound to its row: a ciphertext copied onto another registration does not decrypt.
pub fn associated_data(member: &Member, registration_id: &str) -> Vec<u8> {
    secret_associated_data(&member.organization_id, &member.member_id, registration_id)
}

pub fn secret_associated_data(
    organization_id: &str,
    member_id: &str,
    registration_id: &str,
) -> Vec<u8> {
    [
        organization_id.as_bytes(),
        member_id.as_bytes(),
        registration_id.as_bytes(),
    ]
    .join(&0u8)
}

pub fn store_registration(
    member: &Member,
    secret: &[u8],
    pending_minutes: Option<i32>,
) -> MfaResult<String> {
    let registration_id = ids::new_uuid();
    let ciphertext = keys::current()?.encrypt(secret, &associated_data(member, &registration_id));
    totp::replace_registration(member, &registration_id, ciphertext, pending_minutes)?;
    Ok(registration_id)
}

/// Replaces the member's recovery codes with `codes` (stored as keyed hashes only).
pub fn store_recovery_codes(member: &Member, codes: &[String]) -> MfaResult<()> {
    let keys = keys::current()?;
    let hashes = codes
        .iter()
        .map(|c| keys.hash_code("recovery", c))
        .collect();
    totp::replace_recovery_codes(member, hashes, &keys.fingerprint_hex())
}

/// When a member's first factor of another kind becomes active, an authenticator app still
/// pending goes, with its recovery codes unless a passkey stands behind them: it was started
/// while anyone with the application's role could start one for the member, and activating it
/// later would add a factor without the step-up that adding one needs.
pub fn discard_pending(member: &Member) -> MfaResult<()> {
    if member.totp.as_ref().is_some_and(|t| !t.active) {
        totp::discard_pending(member)?;
    }
    Ok(())
}

pub fn mint_recovery_codes(member: &Member) -> MfaResult<Vec<String>> {
    let codes: Vec<String> = (0..RECOVERY_CODE_COUNT)
        .map(|_| new_recovery_code())
        .collect();
    store_recovery_codes(member, &codes)?;
    Ok(codes)
}

pub fn authenticate(attempt: Attempt, code: &str) -> MfaResult<Value> {
    let member = &attempt.member;
    let Some(registration) = &member.totp else {
        return err(
            ErrorType::TotpNotFound,
            "The member has no TOTP registration.",
        );
    };
    if let Some(refusal) = attempt.admit(None)? {
        return Ok(refusal);
    }
    if registration.expired {
        return attempt.fail(
            ErrorType::ExpiredTotp,
            "The pending TOTP registration has expired; create a new one.",
        );
    }
    let secret = keys::decrypt(
        &registration.secret_ciphertext,
        &associated_data(member, &registration.totp_registration_id),
    )?;
    let step = match verify_code(
        &secret,
        code,
        step_at(ids::unix_seconds()),
        settings::TOTP_SKEW_STEPS.get() as u64,
        registration.last_used_step.map(|s| s as u64),
    ) {
        Ok(step) => step,
        Err(CodeRejection::Malformed) => {
            return attempt.fail(
                ErrorType::InvalidTotpCode,
                "That is no TOTP code: a TOTP code is six digits.",
            )
        }
        Err(CodeRejection::Invalid) => {
            return attempt.fail(
                ErrorType::UnableToAuthenticateTotp,
                "The TOTP code is not the authenticator app's.",
            )
        }
        Err(CodeRejection::AlreadyUsed) => {
            return attempt.fail(
                ErrorType::TotpCodeAlreadyAuthenticated,
                "This TOTP code was already used; wait for the next one.",
            )
        }
    };
    let registration_id = registration.totp_registration_id.clone();
    let activates_totp = !registration.active;
    attempt.succeed(
        Proof {
            factor: Factor::Totp {
                totp_id: registration_id.clone(),
            },
            spend: Spend::TotpStep(step as i64),
            verifies_phone: false,
            activates_totp,
            enrolls: false,
        },
        json!({ "totp_registration_id": registration_id }),
    )
}

/// Recovery codes stand in for an active authenticator app or a passkey: without either, a
/// member has none to use.
pub fn require_recovery_backed_factor(member: &Member) -> MfaResult<()> {
    if member.totp_registration_id.is_some() || member.webauthn_registrations > 0 {
        return Ok(());
    }
    err(
        ErrorType::NoActiveRecoveryCodeBackedFactor,
        "The member has no active TOTP registration nor passkey, so no recovery codes.",
    )
}

/// Recovery codes count for a factor of the member's that the organization allows: codes
/// minted with an authenticator app do not open an organization restricted to passkeys for a
/// member without one.
fn require_allowed_backing(member: &Member, org: &OrganizationPolicy) -> MfaResult<()> {
    let backs = |method: MfaMethod| {
        member.has_factor_for(method) && org.allows(method, member.is_breakglass)
    };
    if backs(MfaMethod::Totp) || backs(MfaMethod::Webauthn) {
        return Ok(());
    }
    err(
        ErrorType::OperationRestrictedByOrganizationMfaMethods,
        format!(
            "The organization restricts MFA to {{{}}}: the member's recovery codes stand for none of their factors it allows.",
            org.allowed_names().join(",")
        ),
    )
}

pub fn recover(attempt: Attempt, recovery_code: Option<&str>) -> MfaResult<Value> {
    let member = &attempt.member;
    require_recovery_backed_factor(member)?;
    require_allowed_backing(member, &attempt.org)?;
    if let Some(refusal) = attempt.admit(None)? {
        return Ok(refusal);
    }
    let candidates: Vec<Vec<u8>> = match recovery_code.and_then(normalize_recovery_code) {
        Some(code) => totp::recovery_code_keys(member)?
            .iter()
            .map(|id| keys::by_fingerprint(id).map(|k| k.hash_code("recovery", &code)))
            .collect::<MfaResult<_>>()?,
        None => Vec::new(),
    };
    let Some((remaining, code_hash)) = totp::spend_recovery_code(member, candidates)? else {
        return attempt.fail(
            ErrorType::InvalidRecoveryCode,
            "The recovery code is not valid or was already used.",
        );
    };
    attempt.succeed(
        Proof {
            factor: Factor::RecoveryCode {
                recovery_code_id: ids::recovery_code_id(&code_hash),
            },
            spend: Spend::RecoveryCode,
            verifies_phone: false,
            activates_totp: false,
            enrolls: false,
        },
        json!({ "recovery_codes_remaining": remaining }),
    )
}

/// Starts an authenticator-app registration, pending until its first code is authenticated.
pub fn totp_create(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    expiration_minutes: Option<i32>,
    intermediate_session_token: Option<&str>,
) -> MfaResult<Value> {
    let request = Request::new();
    let expiration_minutes = expiration_minutes.unwrap_or(60);
    if !(5..=1440).contains(&expiration_minutes) {
        return err(
            ErrorType::InvalidExpirationMinutes,
            "expiration_minutes must be between 5 and 1440.",
        );
    }
    let (member, org) = member::load_with_policy(organization_id, member_id, Load::Lock)?;
    org.require_allowed(MfaMethod::Totp, member.is_breakglass)?;
    token::find_optional(&member, intermediate_session_token)?;
    if let Some(existing) = &member.totp {
        if existing.active {
            return err(
                ErrorType::ActiveTotpExists,
                "The member already has an active TOTP registration.",
            );
        }
        if !existing.expired {
            return err(
                ErrorType::PendingTotpExists,
                "The member has a pending TOTP registration; authenticate a code from it, or wait until it expires.",
            );
        }
    }
    token::require_step_up_for_new_factor(&member, intermediate_session_token)?;
    let secret = new_secret();
    let registration_id = store_registration(&member, &secret, Some(expiration_minutes))?;
    let recovery_codes = mint_recovery_codes(&member)?;
    let uri = otpauth_uri(&settings::totp_issuer(), &member.member_id, &secret);
    request.audit(
        &member.organization_id,
        Some(&member.member_id),
        "totp.created",
        json!({ "totp_registration_id": registration_id, "expiration_minutes": expiration_minutes }),
    )?;
    Ok(answer::about(
        &request,
        &member,
        json!({
            "totp_registration_id": registration_id,
            "secret": secret_to_base32(&secret),
            "otpauth_uri": uri,
            "qr_code": qr_code_data_url(&uri)?,
            "recovery_codes": recovery_codes,
            "member": answer::member_before_mfa_now(&member.organization_id, &member.member_id)?,
            "organization": answer::organization(&member, &org),
        }),
    ))
}

/// Imports an existing authenticator (active at once) and its recovery codes, or mints new ones
/// (returned this once) when none are given and the member has none.
pub fn totp_migrate(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    secret: Option<&str>,
    recovery_codes: Option<Vec<Option<String>>>,
) -> MfaResult<Value> {
    let request = Request::new();
    let secret = secret_from_base32(secret.unwrap_or(""))?;
    let mut codes = recovery_codes
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            c.as_deref()
                .and_then(normalize_recovery_code)
                .ok_or_else(|| {
                    MfaError::new(
                        ErrorType::InvalidRecoveryCode,
                        "A recovery code to import is not valid.",
                    )
                })
        })
        .collect::<MfaResult<Vec<String>>>()?;
    // The same code twice is stored once: the count answered is what is stored.
    codes.sort();
    codes.dedup();
    let (member, org) = member::load_with_policy(organization_id, member_id, Load::Lock)?;
    if member.totp.as_ref().is_some_and(|r| r.active) {
        return err(
            ErrorType::ActiveTotpExists,
            "The member already has an active TOTP registration.",
        );
    }
    let registration_id = store_registration(&member, &secret, None)?;
    // Imported codes replace the member's; without any, the member gets new ones (shown this
    // once) unless a passkey's still stand.
    let (remaining, minted) = if !codes.is_empty() {
        store_recovery_codes(&member, &codes)?;
        (codes.len() as i64, None)
    } else {
        match totp::recovery_codes_left(&member)?.0 {
            0 => {
                let minted = mint_recovery_codes(&member)?;
                (minted.len() as i64, Some(minted))
            }
            left => (left, None),
        }
    };
    request.audit(
        &member.organization_id,
        Some(&member.member_id),
        "totp.migrated",
        json!({ "totp_registration_id": registration_id, "recovery_codes_imported": codes.len(),
                "recovery_codes_minted": minted.as_ref().map(Vec::len), "factor_added": "totp" }),
    )?;
    let mut answer = json!({
        "status_code": 200,
        "request_id": request.id,
        "totp_registration_id": registration_id,
        "recovery_codes_remaining": remaining,
        "member": answer::member_now(&member.organization_id, &member.member_id)?,
        "organization": answer::organization(&member, &org),
    });
    if let Some(codes) = minted {
        answer["recovery_codes"] = json!(codes);
    }
    Ok(answer)
}

/// Removes the member's authenticator app and its recovery codes (those of a passkey stay):
/// `mfa_admin`'s to do, or the member's with a fresh second factor (`flow::removal`).
pub fn member_delete_totp(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    intermediate_session_token: Option<&str>,
) -> MfaResult<Value> {
    let request = Request::new();
    let (member, org) = member::load_with_policy(organization_id, member_id, Load::Lock)?;
    let Some(registration) = &member.totp else {
        return err(
            ErrorType::TotpNotFound,
            "The member has no TOTP registration.",
        );
    };
    let remover = removal::authorize(&member, intermediate_session_token)?;
    removal::refuse_last_factor(remover, &member, &org, Removing::Totp)?;
    members::remove_totp(&member)?;
    removal::factor_gone(&request, &member, "totp_deleted")?;
    request.audit(
        &member.organization_id,
        Some(&member.member_id),
        "totp.deleted",
        json!({ "totp_registration_id": registration.totp_registration_id,
                "by": removal::by(remover),
                "factor_removed": registration.active.then_some("totp") }),
    )?;
    answer::member_with_organization_now(&member.organization_id, &member.member_id)
}

/// How many recovery codes remain and when they were minted (the codes themselves are stored
/// hashed and were shown only once).
pub fn recovery_codes_get(
    organization_id: Option<&str>,
    member_id: Option<&str>,
) -> MfaResult<Value> {
    let request = Request::new();
    let (member, org) = member::load_with_policy(organization_id, member_id, Load::Read)?;
    let (remaining, created_at) = totp::recovery_codes_left(&member)?;
    Ok(answer::about(
        &request,
        &member,
        json!({
            "recovery_codes_remaining": remaining,
            "recovery_codes_created_at": created_at.map(|t| t.to_iso_string()),
            "organization": answer::organization(&member, &org),
        }),
    ))
}

/// Invalidates every recovery code and returns a new set (shown this once). Minting codes is
/// adding a factor: the intermediate session token (of a login or a step-up) must carry a second
/// factor proven with it, or whoever holds the application's role could mint codes and log in
/// with them.
pub fn recovery_codes_rotate(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    intermediate_session_token: Option<&str>,
) -> MfaResult<Value> {
    let request = Request::new();
    let (member, org) = member::load_with_policy(organization_id, member_id, Load::Lock)?;
    require_recovery_backed_factor(&member)?;
    match token::find_optional(&member, intermediate_session_token)? {
        Some(session) if token::has_second_factor(&session) => {}
        _ => {
            return err(
                ErrorType::InsufficientFactors,
                "Rotating recovery codes needs an intermediate session token that carries a second factor proven with it (a login's, or step_up_start's).",
            )
        }
    }
    let codes = mint_recovery_codes(&member)?;
    request.audit(
        &member.organization_id,
        Some(&member.member_id),
        "recovery_codes.rotated",
        json!({}),
    )?;
    Ok(answer::about(
        &request,
        &member,
        json!({
            "recovery_codes": codes,
            "organization": answer::organization(&member, &org),
        }),
    ))
}
