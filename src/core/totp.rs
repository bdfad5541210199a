//! TOTP (RFC 6238) for authenticator apps: secrets, codes, the key URI and recovery codes. Pure
//! logic; `store::totp` stores them, `flow::totp` uses them, `api::totp` is the SQL surface.

use crate::core::crypto::{constant_time_eq, random_bytes, random_string};
use crate::error::{err, ErrorType, MfaResult};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use totp_rs::{Algorithm, TOTP};

/// The interoperable parameters every common authenticator app supports.
pub const DIGITS: usize = 6;
pub const PERIOD_SECONDS: u64 = 30;
pub const SECRET_BYTES: usize = 20;

/// A new 160-bit secret, as RFC 4226 recommends.
pub fn new_secret() -> Vec<u8> {
    random_bytes::<SECRET_BYTES>().to_vec()
}

pub fn secret_to_base32(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// Parses an existing authenticator's base32 secret (case, spaces and padding ignored). At least
/// 80 bits, the size many existing deployments used; at most 512.
pub fn secret_from_base32(text: &str) -> MfaResult<Vec<u8>> {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != '=')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let bytes = data_encoding::BASE32_NOPAD
        .decode(cleaned.as_bytes())
        .map_err(|_| {
            crate::error::MfaError::new(
                ErrorType::InvalidTotpSecret,
                "The secret is not valid base32.",
            )
        })?;
    if !(10..=64).contains(&bytes.len()) {
        return err(
            ErrorType::InvalidTotpSecret,
            "The secret must be between 80 and 512 bits long.",
        );
    }
    Ok(bytes)
}

/// The HOTP value (RFC 4226) of `secret` at `counter`, `digits` long.
pub fn hotp(algorithm: Algorithm, secret: &[u8], counter: u64, digits: usize) -> String {
    // totp-rs computes HOTP(secret, time / step); a step of 1 makes `time` the counter itself.
    TOTP::new_unchecked(algorithm, digits, 0, 1, secret.to_vec()).generate(counter)
}

/// The TOTP time step that contains `unix_seconds`.
pub fn step_at(unix_seconds: u64) -> u64 {
    unix_seconds / PERIOD_SECONDS
}

/// Why a presented code was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRejection {
    /// Not a TOTP code at all: not six digits.
    Malformed,
    /// Six digits that match no step in the window.
    Invalid,
    /// Matches a step that was already used (or an earlier one): a replay.
    AlreadyUsed,
}

/// Checks `code` against the steps `current - skew ..= current + skew`. Every step is computed and
/// compared in constant time, so the time taken does not tell which step (if any) matched. A step
/// at or before `last_used_step` is never accepted again.
pub fn verify_code(
    secret: &[u8],
    code: &str,
    current_step: u64,
    skew: u64,
    last_used_step: Option<u64>,
) -> Result<u64, CodeRejection> {
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CodeRejection::Malformed);
    }
    let mut matched = None;
    for step in current_step.saturating_sub(skew)..=current_step.saturating_add(skew) {
        let expected = hotp(Algorithm::SHA1, secret, step, DIGITS);
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) && matched.is_none() {
            matched = Some(step);
        }
    }
    match (matched, last_used_step) {
        (None, _) => Err(CodeRejection::Invalid),
        (Some(step), Some(last)) if step <= last => Err(CodeRejection::AlreadyUsed),
        (Some(step), _) => Ok(step),
    }
}

/// Characters escaped in a key-URI label part or parameter: everything but unreserved ones.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A label part may not contain ':' (it separates issuer and account); control characters would
/// confuse apps. Both are replaced, and the part is never empty.
fn label_part(s: &str, fallback: &str) -> String {
    let cleaned: String = s
        .trim()
        .chars()
        .map(|c| if c == ':' || c.is_control() { '_' } else { c })
        .collect();
    if cleaned.is_empty() {
        fallback.to_string()
    } else {
        cleaned
    }
}

/// The Key URI of Google Authenticator's format that every common app imports.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let issuer = label_part(issuer, "MFA");
    let account = label_part(account, "member");
    let issuer_enc = utf8_percent_encode(&issuer, URI_COMPONENT).to_string();
    format!(
        "otpauth://totp/{issuer_enc}:{}?secret={}&issuer={issuer_enc}&algorithm=SHA1&digits={DIGITS}&period={PERIOD_SECONDS}",
        utf8_percent_encode(&account, URI_COMPONENT),
        secret_to_base32(secret),
    )
}

pub const RECOVERY_CODE_COUNT: usize = 10;
const RECOVERY_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A recovery code shaped `xxxx-xxxx-xxxx` (about 62 random bits).
pub fn new_recovery_code() -> String {
    let raw = random_string(RECOVERY_ALPHABET, 12);
    format!("{}-{}-{}", &raw[0..4], &raw[4..8], &raw[8..12])
}

/// The canonical form of a presented or imported recovery code: lower case, no spaces; `None` when
/// it cannot be a recovery code at all.
pub fn normalize_recovery_code(code: &str) -> Option<String> {
    let lowered: String = code
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let valid = lowered.len() >= 8
        && lowered.len() <= 64
        && lowered
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    valid.then_some(lowered)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SHA1_KEY: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc4226_hotp_vectors() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(
                hotp(Algorithm::SHA1, RFC_SHA1_KEY, counter as u64, 6),
                *code
            );
        }
    }

    #[test]
    fn rfc6238_totp_vectors() {
        let sha256_key = b"12345678901234567890123456789012";
        let sha512_key = b"1234567890123456789012345678901234567890123456789012345678901234";
        let rows: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (t, sha1, sha256, sha512) in rows {
            let step = step_at(t);
            assert_eq!(
                hotp(Algorithm::SHA1, RFC_SHA1_KEY, step, 8),
                sha1,
                "SHA1 at {t}"
            );
            assert_eq!(
                hotp(Algorithm::SHA256, sha256_key, step, 8),
                sha256,
                "SHA256 at {t}"
            );
            assert_eq!(
                hotp(Algorithm::SHA512, sha512_key, step, 8),
                sha512,
                "SHA512 at {t}"
            );
        }
    }

    #[test]
    fn window_and_replay() {
        let secret = new_secret();
        let now = 1_000_000;
        let code_at = |s: u64| hotp(Algorithm::SHA1, &secret, s, 6);
        assert_eq!(verify_code(&secret, &code_at(now), now, 1, None), Ok(now));
        assert_eq!(
            verify_code(&secret, &code_at(now - 1), now, 1, None),
            Ok(now - 1)
        );
        assert_eq!(
            verify_code(&secret, &code_at(now + 1), now, 1, None),
            Ok(now + 1)
        );
        assert_eq!(
            verify_code(&secret, &code_at(now + 1), now, 0, None),
            Err(CodeRejection::Invalid)
        );
        assert_eq!(
            verify_code(&secret, &code_at(now - 2), now, 1, None),
            Err(CodeRejection::Invalid)
        );
        assert_eq!(
            verify_code(&secret, &code_at(now), now, 1, Some(now)),
            Err(CodeRejection::AlreadyUsed)
        );
        assert_eq!(
            verify_code(&secret, &code_at(now - 1), now, 1, Some(now)),
            Err(CodeRejection::AlreadyUsed)
        );
        assert_eq!(
            verify_code(&secret, &code_at(now + 1), now, 1, Some(now)),
            Ok(now + 1)
        );
        // Not six ASCII digits: no TOTP code at all (`invalid_totp_code`, not a wrong one).
        for bad in ["", "12345", "1234567", "12345a", " 123456", "１２３４５６"] {
            assert_eq!(
                verify_code(&secret, bad, now, 1, None),
                Err(CodeRejection::Malformed)
            );
        }
    }

    #[test]
    fn secrets_are_160_bits_and_round_trip_base32() {
        let s = new_secret();
        assert_eq!(s.len(), 20);
        let b32 = secret_to_base32(&s);
        assert_eq!(b32.len(), 32);
        assert!(!b32.contains('='));
        assert_eq!(secret_from_base32(&b32.to_lowercase()).unwrap(), s);
        assert_eq!(secret_from_base32("JBSW Y3DP EHPK 3PXP").unwrap().len(), 10);
        for bad in ["", "JBSWY3DP", "not base32!", "JBSWY3DPEHPK3PX1"] {
            assert_eq!(
                secret_from_base32(bad).unwrap_err().error_type,
                ErrorType::InvalidTotpSecret
            );
        }
    }

    #[test]
    fn otpauth_uri_escapes_and_forbids_colons() {
        let uri = otpauth_uri("Acme: Inc", "ann@acme.com", b"12345678901234567890");
        assert_eq!(
            uri,
            "otpauth://totp/Acme_%20Inc:ann%40acme.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Acme_%20Inc&algorithm=SHA1&digits=6&period=30"
        );
        assert!(otpauth_uri("", "", b"x").starts_with("otpauth://totp/MFA:member?"));
    }

    #[test]
    fn recovery_codes_have_the_stytch_shape() {
        let c = new_recovery_code();
        assert_eq!(c.len(), 14);
        let parts: Vec<&str> = c.split('-').collect();
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.len() == 4));
        assert_eq!(
            normalize_recovery_code(&format!(" {} ", c.to_uppercase())),
            Some(c)
        );
        assert_eq!(normalize_recovery_code("short"), None);
        assert_eq!(normalize_recovery_code("abcd-efgh-ijk'"), None);
    }
}
