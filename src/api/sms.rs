//! The SMS OTP SQL surface: `otp_sms_send`, `otp_sms_authenticate`, and the project-wide
//! `country_code_allowlist_get/set`.

use crate::core::sms::{
    lifetime_minutes, message_text, new_code, outbox_associated_data, Locale, CODE_PLACEHOLDER,
};
use crate::core::crypto::constant_time_eq;
use crate::store::spi::{self, Request};
use crate::error::{err, ErrorType, MfaError, MfaResult, OrRaise};
use crate::store::jsonb::Jsonb;
use crate::store::keyring;
use crate::api::members::{self, Load, Member};
use crate::core::phone::{self, check_sms_country, normalize_allowlist, parse_phone_number, ParsedPhone};
use crate::core::policy::MfaMethod;
use crate::api::login::{self, Attempt, Proof};
use crate::settings;
use pgrx::prelude::*;
use serde_json::{json, Value};

const DEFAULT_ALLOWLIST: [&str; 2] = ["CA", "US"];

/// The stored allowlist, as a text array (NULL when empty).
macro_rules! stored_allowlist {
    () => {
        "(SELECT array_agg(country_code ORDER BY country_code) FROM mfa.country_code_allowlist)"
    };
}

/// The allowlist in force: the stored one, or the default while none was set.
fn in_force(stored: Vec<String>) -> Vec<String> {
    if stored.is_empty() {
        DEFAULT_ALLOWLIST.iter().map(|s| s.to_string()).collect()
    } else {
        stored
    }
}

/// The allowlist in force.
pub fn allowlist() -> MfaResult<Vec<String>> {
    let stored = spi::typed_row(concat!("SELECT ", stored_allowlist!()), &[], |row| {
        row.get::<Vec<String>>(1)
    })?;
    Ok(in_force(stored.flatten().unwrap_or_default()))
}

/// What a send is checked against: the allowlist in force, the member's recent sends, and the
/// recent sends to the number and to its block of 10,000 numbers that the send must share the
/// guards with (see `read`).
struct SendingLimits {
    allowlist: Vec<String>,
    member_hour: i64,
    member_recent: i64,
    number_hour: i64,
    prefix_hour: i64,
}

impl SendingLimits {
    /// Sends to one block are serialized by the block's row lock, taken by an earlier statement
    /// than the counts (`block_locked`: by the member's load; otherwise here) so that the counts
    /// see every send committed before it was granted.
    ///
    /// The guards of a number and of its block count the organization's own sends, and, for a
    /// number the member has not proven, every organization's sends to unproven numbers: a member
    /// of another organization who links someone else's number can use up the unproven budget,
    /// never the budget of the number's owner, whose number is proven.
    fn read(
        member: &Member,
        phone: &ParsedPhone,
        to_verified_number: bool,
        block_locked: bool,
    ) -> MfaResult<SendingLimits> {
        let prefix = phone.rate_limit_prefix();
        if !block_locked {
            crate::store::sms::lock_number_block(prefix)?;
        }
        let limits = spi::typed_row(
            concat!(
                "SELECT ",
                stored_allowlist!(),
                ",
                    (SELECT count(*) FROM mfa.sms_outbox
                      WHERE organization_id = $4 AND member_id = $5
                        AND created_at > statement_timestamp() - interval '1 hour'),
                    (SELECT count(*) FROM mfa.sms_outbox
                      WHERE organization_id = $4 AND member_id = $5
                        AND created_at > statement_timestamp() - make_interval(secs => $3)),
                    (SELECT count(*) FROM mfa.sms_outbox
                      WHERE phone_number = $1 AND created_at > statement_timestamp() - interval '1 hour'
                        AND (organization_id = $4 OR NOT ($6 OR to_verified_number))),
                    (SELECT count(*) FROM mfa.sms_outbox
                      WHERE rate_limit_prefix = $2 AND created_at > statement_timestamp() - interval '1 hour'
                        AND (organization_id = $4 OR NOT ($6 OR to_verified_number)))"
            ),
            &[
                phone.e164.as_str().into(),
                prefix.into(),
                (settings::SMS_MIN_INTERVAL_SECONDS.get() as f64).into(),
                member.organization_id.as_str().into(),
                member.member_id.as_str().into(),
                to_verified_number.into(),
            ],
            |row| {
                Ok(SendingLimits {
                    allowlist: in_force(row.get::<Vec<String>>(1)?.unwrap_or_default()),
                    member_hour: row.get::<i64>(2)?.unwrap_or_default(),
                    member_recent: row.get::<i64>(3)?.unwrap_or_default(),
                    number_hour: row.get::<i64>(4)?.unwrap_or_default(),
                    prefix_hour: row.get::<i64>(5)?.unwrap_or_default(),
                })
            },
        )?;
        Ok(limits.expect("one row"))
    }

    /// Refuses a send that would exceed the limits against SMS pumping and harassment: a minimum
    /// interval and an hourly count per member, an hourly count per number and per block of
    /// 10,000 numbers.
    fn check(&self) -> MfaResult<()> {
        let refuse = |what: String| {
            Err(MfaError::new(ErrorType::TooManyRequests, what)
                .with_hint("Wait before sending another code."))
        };
        if settings::SMS_MIN_INTERVAL_SECONDS.get() > 0 && self.member_recent > 0 {
            return refuse(format!(
                "A code was sent to this member less than {} seconds ago.",
                settings::SMS_MIN_INTERVAL_SECONDS.get()
            ));
        }
        if self.member_hour >= settings::SMS_SENDS_PER_MEMBER_PER_HOUR.get() as i64 {
            return refuse("Too many codes were sent to this member in the last hour.".into());
        }
        if self.number_hour >= settings::SMS_SENDS_PER_NUMBER_PER_HOUR.get() as i64 {
            return refuse("Too many codes were sent to this number in the last hour.".into());
        }
        if self.prefix_hour >= settings::SMS_SENDS_PER_PREFIX_PER_HOUR.get() as i64 {
            return refuse(
                "Too many codes were sent to numbers of this range in the last hour.".into(),
            );
        }
        Ok(())
    }
}

/// The member's live code (replacing the previous one), its message and the audit event, in one
/// statement that ends with `$last` over the queued message.
macro_rules! queue_code {
    ($last:literal) => {
        concat!(
            "WITH live_code AS (
                 INSERT INTO mfa.sms_codes (organization_id, member_id, code_hash, key_id, phone_number, created_at, expires_at)
                 VALUES ($1, $2, $10, $13, $3, clock_timestamp(), clock_timestamp() + make_interval(secs => $8))
                 ON CONFLICT (organization_id, member_id) DO UPDATE
                    SET code_hash = EXCLUDED.code_hash, key_id = EXCLUDED.key_id, phone_number = EXCLUDED.phone_number,
                        created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, used_at = NULL),
             queued AS (
                 INSERT INTO mfa.sms_outbox (organization_id, member_id, phone_number, country_code,
                                             rate_limit_prefix, locale, body, code_ciphertext, created_at, expires_at,
                                             to_verified_number)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $9, clock_timestamp(), clock_timestamp() + make_interval(secs => $8), $14)
                 RETURNING message_id),
             audited AS (
                 INSERT INTO mfa.events (organization_id, request_id, event_type, member_id, details)
                 SELECT $1, $11::uuid, 'sms_otp.sent', $2, $12::jsonb || jsonb_build_object('message_id', message_id)
                   FROM queued) ",
            $last
        )
    };
}
/// A new code whose message wakes the workers when the transaction commits.
const QUEUE_CODE_AND_NOTIFY: &str =
    queue_code!("SELECT pg_notify('mfa_sms_outbox', message_id::text) FROM queued");
/// A new code whose message waits for the workers' polling (`mfa.sms_outbox_notify = off`).
const QUEUE_CODE: &str = queue_code!("SELECT message_id FROM queued");

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
    let limits = SendingLimits::read(member, phone, to_verified_number, block_locked)?;
    check_sms_country(phone, &limits.allowlist)?;
    limits.check()?;
    let code = new_code();
    let lifetime = settings::SMS_CODE_LIFETIME_SECONDS.get();
    let keys = keyring::current()?;
    let hash = keys.hash_code(&sms_context(member), &code);
    let code_ciphertext = keys.encrypt(
        code.as_bytes(),
        &outbox_associated_data(&member.organization_id, &member.member_id, &phone.e164),
    );
    spi::execute(
        if settings::SMS_OUTBOX_NOTIFY.get() {
            QUEUE_CODE_AND_NOTIFY
        } else {
            QUEUE_CODE
        },
        &[
            member.organization_id.as_str().into(),
            member.member_id.as_str().into(),
            phone.e164.as_str().into(),
            phone.country_code.as_str().into(),
            phone.rate_limit_prefix().into(),
            locale.as_str().into(),
            message_text(locale, CODE_PLACEHOLDER, lifetime_minutes(lifetime))
                .as_str()
                .into(),
            (lifetime as f64).into(),
            code_ciphertext.into(),
            hash.into(),
            request.id.as_str().into(),
            Jsonb(json!({
                "mfa_phone_number": phone.masked(),
                "country_code": phone.country_code,
                "locale": locale.as_str(),
            }))
            .into(),
            keys.fingerprint_hex().as_str().into(),
            to_verified_number.into(),
        ],
    )?;
    Ok(())
}

/// The member's stored number: its country was found when it was stored, so it is not parsed
/// again (numbers stored before the country was kept are).
fn stored_phone(member: &Member) -> MfaResult<ParsedPhone> {
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
fn sms_context(member: &Member) -> String {
    format!("sms\0{}\0{}", member.organization_id, member.member_id)
}

fn send(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    mfa_phone_number: Option<&str>,
    locale: Option<&str>,
    token: Option<&str>,
) -> MfaResult<Value> {
    let request = Request::new();
    let requested = mfa_phone_number.map(parse_phone_number).transpose()?;
    let locale = Locale::from_tag(locale.unwrap_or("en"));
    let (member, org) = members::load_with_policy(
        organization_id,
        member_id,
        Load::LockForSending {
            to: requested.as_ref().map(|p| p.e164.as_str()),
        },
    )?;
    org.require_allowed(MfaMethod::SmsOtp, member.is_breakglass)?;
    login::find_optional(&member, token)?;
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
        match &member.mfa_phone_number {
            Some(existing) if existing != &phone.e164 => return err(
                ErrorType::DuplicateMemberPhoneNumber,
                "The member already has another phone number; delete it before using a new one.",
            ),
            Some(_) => {}
            None => {
                // Linking a new phone is adding a factor: a member who already has one must have
                // proven it in this login.
                login::require_step_up_for_new_factor(&member, token)?;
                check_sms_country(phone, &allowlist()?)?;
                spi::execute(
                    "UPDATE mfa.members SET mfa_phone_number = $3, mfa_phone_country = $4, phone_id = gen_random_uuid(),
                            mfa_phone_number_verified = false, updated_at = now()
                      WHERE organization_id = $1 AND member_id = $2",
                    &[
                        member.organization_id.as_str().into(),
                        member.member_id.as_str().into(),
                        phone.e164.as_str().into(),
                        phone.country_code.as_str().into(),
                    ],
                )?;
                linked = true;
            }
        }
    }
    send_code(&request, &member, requested.as_ref(), locale, true)?;
    // A send changes the member only when it linked the phone.
    // Sent during a login, before any second factor: the number is masked.
    let object = if linked {
        members::object_before_mfa(&member.organization_id, &member.member_id)?
    } else {
        member.object_before_mfa()
    };
    Ok(members::answer(
        &request,
        &member,
        json!({ "member": object }),
    ))
}

/// Sends a new code by SMS (through the outbox). Never returns the code.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn otp_sms_send(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    mfa_phone_number: default!(Option<&str>, "NULL"),
    locale: default!(Option<&str>, "'en'"),
    intermediate_session_token: default!(Option<&str>, "NULL"),
) -> Jsonb {
    Jsonb(
        send(
            organization_id,
            member_id,
            mfa_phone_number,
            locale,
            intermediate_session_token,
        )
        .or_raise(),
    )
}

fn authenticate(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    code: Option<&str>,
    token: Option<&str>,
    set_mfa_enrollment: Option<&str>,
    set_default_mfa: bool,
) -> MfaResult<Value> {
    let attempt = Attempt::begin(
        organization_id,
        member_id,
        token,
        MfaMethod::SmsOtp,
        "sms_otp.authenticate",
        set_mfa_enrollment,
        set_default_mfa,
    )?;
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
        Some(key_id) => vec![keyring::by_fingerprint(key_id)?],
        None => keyring::known()?.into_iter().map(|k| k.keys).collect(),
    };
    let presented = code.unwrap_or("");
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
    let factor = login::factor(
        "otp",
        "sms",
        json!({ "phone_number_factor": { "phone_id": member.phone_id, "phone_number": live.phone_number } }),
    );
    // The code is used up, and the phone it reached is verified.
    attempt.succeed(
        Proof {
            factor,
            spend: Some((
                "UPDATE mfa.sms_codes SET used_at = now() WHERE organization_id = $1 AND member_id = $2",
                Option::<i64>::None.into(),
            )),
            verifies_phone: true,
            activates_totp: false,
        },
        json!({}),
    )
}

/// Verifies the member's SMS code. Failures are returned, not raised.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn otp_sms_authenticate(
    organization_id: Option<&str>,
    member_id: Option<&str>,
    code: Option<&str>,
    intermediate_session_token: default!(Option<&str>, "NULL"),
    set_mfa_enrollment: default!(Option<&str>, "NULL"),
    set_default_mfa: default!(Option<bool>, false),
) -> Jsonb {
    Jsonb(
        authenticate(
            organization_id,
            member_id,
            code,
            intermediate_session_token,
            set_mfa_enrollment,
            set_default_mfa.unwrap_or(false),
        )
        .or_raise(),
    )
}

/// The countries SMS codes may be sent to.
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn country_code_allowlist_get() -> Vec<String> {
    allowlist().or_raise()
}

/// Replaces the allowlist (ISO alpha-2, case-insensitive, de-duplicated).
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn country_code_allowlist_set(country_codes: Option<Vec<Option<String>>>) -> Vec<String> {
    let set = || -> MfaResult<Vec<String>> {
        let request = Request::new();
        let codes = country_codes.unwrap_or_default();
        let wanted = normalize_allowlist(codes.iter().map(|c| c.as_deref()))?;
        let before = allowlist()?;
        // Serializes concurrent changes: the table lock conflicts only with other writers.
        spi::execute(
            "LOCK TABLE mfa.country_code_allowlist IN SHARE ROW EXCLUSIVE MODE",
            &[],
        )?;
        spi::execute("DELETE FROM mfa.country_code_allowlist", &[])?;
        spi::execute(
            "INSERT INTO mfa.country_code_allowlist (country_code) SELECT unnest($1::text[])",
            &[wanted.clone().into()],
        )?;
        request.audit(
            "",
            None,
            "country_code_allowlist.set",
            json!({ "before": before, "after": wanted }),
        )?;
        Ok(wanted)
    };
    set().or_raise()
}

/// Whether SMS can ever be sent to a country (documentation helper for the unsupported list).
#[pg_extern(immutable, parallel_safe)]
fn sms_country_supported(country_code: &str) -> bool {
    let upper = country_code.trim().to_ascii_uppercase();
    phone::is_country_code(&upper) && !phone::is_sms_unsupported(&upper)
}
