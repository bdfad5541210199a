//! Authenticator apps and recovery codes: storing a registration and its codes, checking a TOTP
//! code or a recovery code.

use crate::core::factor::Factor;
use crate::core::ids;
use crate::core::totp::{
    new_recovery_code, normalize_recovery_code, step_at, verify_code, CodeRejection,
    RECOVERY_CODE_COUNT,
};
use crate::error::{err, ErrorType, MfaResult};
use crate::flow::attempt::{Attempt, Proof};
use crate::flow::keys;
use crate::server::settings;
use crate::store::attempts::Spend;
use crate::store::members::{Member, TotpRegistration};
use crate::store::totp;
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
        Err(CodeRejection::Invalid) => {
            return attempt.fail(ErrorType::InvalidTotpCode, "The TOTP code is not valid.")
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
        },
        json!({ "totp_registration_id": registration_id }),
    )
}

pub fn require_active_registration(member: &Member) -> MfaResult<&TotpRegistration> {
    match &member.totp {
        Some(r) if r.active => Ok(r),
        _ => err(
            ErrorType::RecoveryCodesNotFound,
            "The member has no active TOTP registration, so no recovery codes.",
        ),
    }
}

pub fn recover(attempt: Attempt, recovery_code: Option<&str>) -> MfaResult<Value> {
    let member = &attempt.member;
    require_active_registration(member)?;
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
    let Some(remaining) = totp::spend_recovery_code(member, candidates)? else {
        return attempt.fail(
            ErrorType::InvalidRecoveryCode,
            "The recovery code is not valid or was already used.",
        );
    };
    attempt.succeed(
        Proof {
            factor: Factor::RecoveryCode,
            spend: Spend::RecoveryCode,
            verifies_phone: false,
            activates_totp: false,
        },
        json!({ "recovery_codes_remaining": remaining }),
    )
}
