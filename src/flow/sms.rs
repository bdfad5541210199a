//! SMS codes: the allowlist in force, the send limits, sending a code (queued in the outbox,
//! encrypted) and checking one.

use crate::core::crypto::constant_time_eq;
use crate::core::factor::Factor;
use crate::core::phone::{check_sms_country, normalize_allowlist, parse_phone_number, ParsedPhone};
use crate::core::policy::MfaMethod;
use crate::core::sms::{
    lifetime_minutes, message_text, new_code, outbox_associated_data, Locale, CODE_PLACEHOLDER,
};
use crate::error::{err, ErrorType, MfaError, MfaResult};
use crate::flow::attempt::{Attempt, Proof};
use crate::flow::keys;
use crate::flow::member::{self, Load};
use crate::flow::totp::discard_pending;
use crate::flow::{answer, token};
use crate::server::settings;
use crate::store::attempts::Spend;
use crate::store::audit::Request;
use crate::store::members::Member;
use crate::store::members::{self};
use crate::store::sms::{self, QueuedCode, SendLimits};
use serde_json::{json, Value};
const DEFAULT_ALLOWLIST: [&str; 2] = ["CA", "US"];

/// The allowlist in force: the stored one, or the default while none was set.
pub fn in_force(stored: Vec<String>) -> Vec<String> {
    if stored.is_empty() {
        DEFAULT_ALLOWLIST.iter().map(|s| s.to_string()).collect()
    } else {
        stored
    }
}

/// The allowlist in force.
pub fn allowlist() -> MfaResult<Vec<String>> {
    Ok(in_force(sms::stored_allowlist()?))
}

/// Refuses a send that would exceed the limits against SMS pumping and harassment: a minimum
/// interval and an hourly count per member, an hourly count per number and per block of 10,000
/// numbers.
pub fn check_limits(limits: &SendLimits) -> MfaResult<()> {
    let refuse = |what: String| {
        Err(MfaError::new(ErrorType::TooManyRequests, what)
            .with_hint("Wait before sending another code."))
    };
    if settings::SMS_MIN_INTERVAL_SECONDS.get() > 0 && limits.member_recent > 0 {
        return refuse(format!(
            "A code was sent to this member less than {} seconds ago.",
            settings::SMS_MIN_INTERVAL_SECONDS.get()
        ));
    }
    if limits.member_hour >= settings::SMS_SENDS_PER_MEMBER_PER_HOUR.get() as i64 {
        return refuse("Too many codes were sent to this member in the last hour.".into());
    }
    if limits.number_hour >= settings::SMS_SENDS_PER_NUMBER_PER_HOUR.get() as i64 {
        return refuse("Too many codes were sent to this number in the last hour.".into());
    }
    if limits.prefix_hour >= settings::SMS_SENDS_PER_PREFIX_PER_HOUR.get() as i64 {
        return refuse(
            "Too many codes were sent to numbers of this range in the last hour.".into(),
        );
    }
    Ok(())
}

/// Issues a new code to the member's phone (the previous code dies) and queues its message. The
/// message and the NOTIFY exist only if the caller's transaction commits. `block_locked`: the
/// member was loaded with `Load::LockForSending` for this number.
pub fn send_code(
    request: &Request,
    member: &Member,
    phone: Option<&ParsedPhone>,
    locale: Locale,
    block_locked: bool,
) -> MfaResult<()> {
    let stored;
    let phone = match phone {
        Some(p) => p,
        None => {
            stored = stored_phone(member)?;
            &stored
        }
    };
    let to_verified_number =
        member.mfa_phone_number_verified && member.mfa_phone_number.as_ref() == Some(&phone.e164);
    let mut limits = sms::read_send_limits(
        member,
        phone,
        to_verified_number,
        settings::SMS_MIN_INTERVAL_SECONDS.get() as f64,
        block_locked,
    )?;
    check_sms_country(
        phone,
        &in_force(std::mem::take(&mut limits.stored_allowlist)),
    )?;
    check_limits(&limits)?;
    let code = new_code();
    let lifetime = settings::SMS_CODE_LIFETIME_SECONDS.get();
    let keys = keys::current()?;
    let body = message_text(locale, CODE_PLACEHOLDER, lifetime_minutes(lifetime));
    sms::queue_code(
        &request.event(
            &member.organization_id,
            Some(&member.member_id),
            "sms_otp.sent",
            json!({
                "mfa_phone_number": phone.masked(),
                "country_code": phone.country_code,
                "locale": locale.as_str(),
            }),
        ),
        QueuedCode {
            phone,
            locale: locale.as_str(),
            body: &body,
            lifetime_seconds: lifetime as f64,
            code_ciphertext: keys.encrypt(
                code.as_bytes(),
                &outbox_associated_data(&member.organization_id, &member.member_id, &phone.e164),
            ),
            code_hash: keys.hash_code(&sms_context(member), &code),
            key_id: &keys.fingerprint_hex(),
            to_verified_number,
            notify_workers: settings::SMS_OUTBOX_NOTIFY.get(),
        },
    )
}

/// The member's stored number: its country was found when it was stored, so it is not parsed
/// again (numbers stored before the country was kept are).
pub fn stored_phone(member: &Member) -> MfaResult<ParsedPhone> {
    match (&member.mfa_phone_number, &member.mfa_phone_country) {
        (Some(number), Some(country)) => Ok(ParsedPhone {
            e164: number.clone(),
            country_code: country.clone(),
        }),
        (Some(number), None) => parse_phone_number(number),
        (None, _) => err(
            ErrorType::MemberPhoneNumberNotFound,
            "The member has no phone number.",
        ),
    }
}

/// Codes are hashed with the member they belong to, so a hash is useless for anyone else.
pub fn sms_context(member: &Member) -> String {
    format!("sms\0{}\0{}", member.organization_id, member.member_id)
}

pub fn authenticate(attempt: Attempt, presented: &str) -> MfaResult<Value> {
    let member = &attempt.member;
    let live = member
        .sms_code
        .as_ref()
        .filter(|c| Some(&c.phone_number) == member.mfa_phone_number.as_ref());
    if let Some(refusal) = attempt.admit(live.map(|c| c.code_hash.as_slice()))? {
        return Ok(refusal);
    }
    let Some(live) = live else {
        return attempt.fail(
            ErrorType::OtpCodeNotFound,
            "No SMS code was sent to this member, or it was replaced.",
        );
    };
    if live.used {
        return attempt.fail(
            ErrorType::UnableToAuthOtpCode,
            "This SMS code was already used.",
        );
    }
    if live.expired {
        return attempt.fail(
            ErrorType::OtpCodeExpired,
            "This SMS code has expired; send a new one.",
        );
    }
    // Hashed by a key that may no longer encrypt (a rotation since the send): the code's own key,
    // or, for codes sent before keys were recorded, every known key.
    let keys = match &live.key_id {
        Some(key_id) => vec![keys::by_fingerprint(key_id)?],
        None => keys::known()?.into_iter().map(|k| k.keys).collect(),
    };
    let matches = keys.iter().fold(false, |found, keys| {
        found
            | constant_time_eq(
                &keys.hash_code(&sms_context(member), presented),
                &live.code_hash,
            )
    });
    if !matches {
        return attempt.fail(ErrorType::UnableToAuthOtpCode, "The SMS code is not valid.");
    }
    let factor = Factor::SmsOtp {
        phone_id: member.phone_id.clone(),
        phone_number: live.phone_number.clone(),
    };
    // The code is used up, and the phone it reached is verified: a first verified phone ends
    // a pending authenticator app (see `totp::discard_pending`).
    if !member.mfa_phone_number_verified {
        discard_pending(member)?;
    }
    attempt.succeed(
        Proof {
            factor,
            spend: Spend::SmsCode,
            verifies_phone: true,
            activates_totp: false,
            enrolls: false,
        },
        json!({}),
    )
}

/// Sends a new code by SMS (through the outbox). Never returns the code.
pub fn otp_sms_send(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    mfa_phone_number: Option<&str>,
    locale: Option<&str>,
    intermediate_session_token: Option<&str>,
) -> MfaResult<Value> {
    let request = Request::new();
    let token = intermediate_session_token;
    let requested = mfa_phone_number.map(parse_phone_number).transpose()?;
    let locale = Locale::from_tag(locale.unwrap_or("en"));
    let (member, org) = member::load_with_policy(
        organization_id,
        member_id,
        Load::LockForSending {
            to: requested.as_ref().map(|p| p.e164.as_str()),
        },
    )?;
    org.require_allowed(MfaMethod::SmsOtp, member.is_breakglass)?;
    token::find_optional(&member, token)?;
    // A locked member cannot authenticate: a code would only cost a message (and could be sent
    // again and again at the member's expense).
    if member.is_locked {
        return err(
            ErrorType::UserLockLimitReached,
            "The member is locked after too many failed attempts; no code is sent until the lock ends.",
        );
    }
    let mut linked = false;
    if let Some(phone) = &requested {
        // A number is passed only to link a first phone. A member who has one is sent to it
        // without passing it; passing one is refused whatever it is, so that the answer never
        // tells whether a guessed number is the member's (their masked number would otherwise
        // be found in a few hundred guesses).
        if member.mfa_phone_number.is_some() {
            return Err(MfaError::new(
                ErrorType::DuplicateMemberPhoneNumber,
                "The member already has a phone number: send without mfa_phone_number to use it, or delete it before linking another.",
            ));
        }
        // Linking a new phone is adding a factor: a member who already has one must have
        // proven it in this login.
        token::require_step_up_for_new_factor(&member, token)?;
        check_sms_country(phone, &allowlist()?)?;
        members::link_phone(&member, phone)?;
        linked = true;
    }
    send_code(&request, &member, requested.as_ref(), locale, true)?;
    // A send changes the member only when it linked the phone. Sent during a login, before any
    // second factor: the number is masked.
    let object = if linked {
        answer::member_before_mfa_now(&member.organization_id, &member.member_id)?
    } else {
        answer::member_before_mfa(&member)
    };
    Ok(answer::about(
        &request,
        &member,
        json!({ "member": object, "organization": answer::organization(&member, &org) }),
    ))
}

pub fn country_code_allowlist_set(
    country_codes: Option<Vec<Option<String>>>,
) -> MfaResult<Vec<String>> {
    let request = Request::new();
    let codes = country_codes.unwrap_or_default();
    let wanted = normalize_allowlist(codes.iter().map(|c| c.as_deref()))?;
    let before = allowlist()?;
    sms::replace_allowlist(&wanted)?;
    request.audit(
        "",
        None,
        "country_code_allowlist.set",
        json!({ "before": before, "after": wanted }),
    )?;
    Ok(wanted)
}
