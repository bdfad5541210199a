//! Randomness, hashing, constant-time comparison and authenticated encryption.
//!
//! One 32-byte master key (the `mfa.encryption_key` setting, or the per-database key) is never
//! used directly: HMAC-SHA256 derives a separate key for each purpose, so a hash of a code can
//! never be confused with, or help attack, the encryption of a secret.

use crate::error::{err, ErrorType, MfaError, MfaResult};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

pub const KEY_LEN: usize = 32;
/// First byte of every ciphertext, so the format can change without guessing.
const CIPHERTEXT_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const FINGERPRINT_LEN: usize = 8;

/// The master key and the keys derived from it.
#[derive(Clone)]
pub struct Keys {
    encryption: [u8; KEY_LEN],
    hashing: [u8; KEY_LEN],
    sealing: [u8; KEY_LEN],
    login_tokens: [u8; KEY_LEN],
    fingerprint: [u8; FINGERPRINT_LEN],
}

impl Keys {
    pub fn from_master(master: &[u8; KEY_LEN]) -> Keys {
        let encryption = hmac_sha256(master, b"mfa encryption key v1");
        let hashing = hmac_sha256(master, b"mfa code hashing key v1");
        let sealing = hmac_sha256(master, b"mfa session seal key v1");
        let login_tokens = hmac_sha256(master, b"mfa login token key v1");
        let id = hmac_sha256(master, b"mfa key fingerprint v1");
        let mut fingerprint = [0u8; FINGERPRINT_LEN];
        fingerprint.copy_from_slice(&id[..FINGERPRINT_LEN]);
        Keys {
            encryption,
            hashing,
            sealing,
            login_tokens,
            fingerprint,
        }
    }

    /// A short public identifier of the key (safe to show: derived one-way).
    pub fn fingerprint_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.fingerprint)
    }

    /// Keyed hash of a short secret (an SMS code, a recovery code). The key lives outside the
    /// tables, so a dump of the tables does not allow brute-forcing the codes offline.
    pub fn hash_code(&self, context: &str, code: &str) -> Vec<u8> {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.hashing).expect("any key length");
        mac.update(context.as_bytes());
        mac.update(&[0]);
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// The MAC of a session's factor (see `core::session_seal`), with a key of its own.
    pub fn seal_mac(&self, sealed_bytes: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.sealing, sealed_bytes)
    }

    /// A new intermediate session token of `organization_id` (see `LoginToken`).
    pub fn new_login_token(&self, organization_id: &str) -> String {
        let random = random_bytes::<LOGIN_TOKEN_RANDOM>();
        let organization = self.login_token_organization(organization_id);
        let mac = self.login_token_mac(&random, &organization);
        let mut token = Vec::with_capacity(LOGIN_TOKEN_LEN);
        token.extend_from_slice(&random);
        token.extend_from_slice(&organization);
        token.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(&token)
    }

    /// What `token` says of its organization under this key: `None` when this key did not
    /// make it (another key did, or nobody: a forgery or a token of another shape).
    pub fn login_token_of(&self, token: &str, organization_id: &str) -> Option<LoginToken> {
        let bytes = URL_SAFE_NO_PAD.decode(token.as_bytes()).ok()?;
        if bytes.len() != LOGIN_TOKEN_LEN {
            return None;
        }
        let (random, rest) = bytes.split_at(LOGIN_TOKEN_RANDOM);
        let (organization, mac) = rest.split_at(LOGIN_TOKEN_ORGANIZATION);
        let organization: [u8; LOGIN_TOKEN_ORGANIZATION] = organization.try_into().ok()?;
        if !constant_time_eq(mac, &self.login_token_mac(random, &organization)) {
            return None;
        }
        Some(
            if constant_time_eq(
                &organization,
                &self.login_token_organization(organization_id),
            ) {
                LoginToken::OfThisOrganization
            } else {
                LoginToken::OfAnotherOrganization
            },
        )
    }

    fn login_token_organization(&self, organization_id: &str) -> [u8; LOGIN_TOKEN_ORGANIZATION] {
        let mut data = b"organization\0".to_vec();
        data.extend_from_slice(organization_id.as_bytes());
        let tag = hmac_sha256(&self.login_tokens, &data);
        tag[..LOGIN_TOKEN_ORGANIZATION].try_into().expect("length")
    }

    fn login_token_mac(
        &self,
        random: &[u8],
        organization: &[u8; LOGIN_TOKEN_ORGANIZATION],
    ) -> [u8; LOGIN_TOKEN_MAC] {
        let mut data = b"token\0".to_vec();
        data.extend_from_slice(random);
        data.extend_from_slice(organization);
        let mac = hmac_sha256(&self.login_tokens, &data);
        mac[..LOGIN_TOKEN_MAC].try_into().expect("length")
    }

    /// Encrypts `plaintext`, bound to `associated_data` (the row it belongs to), so a ciphertext
    /// copied onto another member's row does not decrypt.
    pub fn encrypt(&self, plaintext: &[u8], associated_data: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new((&self.encryption).into());
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: associated_data,
                },
            )
            .expect("encryption of a short secret cannot fail");
        let mut out = Vec::with_capacity(1 + FINGERPRINT_LEN + NONCE_LEN + sealed.len());
        out.push(CIPHERTEXT_VERSION);
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn decrypt(&self, ciphertext: &[u8], associated_data: &[u8]) -> MfaResult<Vec<u8>> {
        let header = 1 + FINGERPRINT_LEN + NONCE_LEN;
        if ciphertext.len() < header || ciphertext[0] != CIPHERTEXT_VERSION {
            return err(
                ErrorType::EncryptionKeyMismatch,
                "A stored secret is not in a known format.",
            );
        }
        if ciphertext[1..1 + FINGERPRINT_LEN] != self.fingerprint {
            return Err(MfaError::new(
                ErrorType::EncryptionKeyMismatch,
                format!(
                    "A stored secret was encrypted with key {} but the current key is {}.",
                    data_encoding::HEXLOWER.encode(&ciphertext[1..1 + FINGERPRINT_LEN]),
                    self.fingerprint_hex()
                ),
            )
            .with_hint("Set mfa.encryption_key back to the key the secrets were created with."));
        }
        let cipher = XChaCha20Poly1305::new((&self.encryption).into());
        let nonce = XNonce::from_slice(&ciphertext[1 + FINGERPRINT_LEN..header]);
        cipher
            .decrypt(nonce, Payload { msg: &ciphertext[header..], aad: associated_data })
            .map_err(|_| {
                MfaError::new(
                    ErrorType::EncryptionKeyMismatch,
                    "A stored secret failed authentication: it was altered or moved to another row.",
                )
            })
    }
}

/// The fingerprint of the key that wrote `ciphertext`, if it has a known format.
pub fn ciphertext_fingerprint(ciphertext: &[u8]) -> Option<String> {
    (ciphertext.len() > 1 + FINGERPRINT_LEN && ciphertext[0] == CIPHERTEXT_VERSION)
        .then(|| data_encoding::HEXLOWER.encode(&ciphertext[1..1 + FINGERPRINT_LEN]))
}

/// Parses a key given as 64 hexadecimal digits or as base64 of 32 bytes.
pub fn parse_master_key(text: &str) -> MfaResult<[u8; KEY_LEN]> {
    let text = text.trim();
    let bytes = if text.len() == 2 * KEY_LEN && text.chars().all(|c| c.is_ascii_hexdigit()) {
        data_encoding::HEXLOWER_PERMISSIVE
            .decode(text.as_bytes())
            .ok()
    } else {
        STANDARD.decode(text).ok()
    };
    match bytes {
        Some(b) if b.len() == KEY_LEN => {
            let mut key = [0u8; KEY_LEN];
            key.copy_from_slice(&b);
            Ok(key)
        }
        _ => err(
            ErrorType::InvalidEncryptionKey,
            "mfa.encryption_key must be 64 hexadecimal digits or the base64 encoding of 32 bytes.",
        ),
    }
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

/// A uniformly random numeric code of `digits` digits, leading zeros kept.
pub fn random_numeric_code(digits: u32) -> String {
    let n: u64 = OsRng.gen_range(0..10u64.pow(digits));
    format!("{n:0width$}", width = digits as usize)
}

/// A uniformly random string over `alphabet`.
pub fn random_string(alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| alphabet[OsRng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// An intermediate session token: 256 random bits, then its organization's tag and a MAC of
/// both under the server's key, base64url. The tag lets a token of another organization be told
/// from an unknown one by the token alone, before any lookup, and without an index of every
/// organization's tokens (or, on Citus, a question to every node).
const LOGIN_TOKEN_RANDOM: usize = 32;
const LOGIN_TOKEN_ORGANIZATION: usize = 8;
const LOGIN_TOKEN_MAC: usize = 16;
const LOGIN_TOKEN_LEN: usize = LOGIN_TOKEN_RANDOM + LOGIN_TOKEN_ORGANIZATION + LOGIN_TOKEN_MAC;

/// What a login token's MAC says of it.
#[derive(Debug, PartialEq)]
pub enum LoginToken {
    OfThisOrganization,
    OfAnotherOrganization,
}

/// A bearer token: 256 random bits, base64url without padding.
pub fn new_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// How bearer tokens are stored: they carry 256 random bits, so a plain SHA-256 is enough.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(byte: u8) -> Keys {
        Keys::from_master(&[byte; KEY_LEN])
    }

    #[test]
    fn encryption_round_trips_and_binds_to_its_row() {
        let k = keys(7);
        let c = k.encrypt(b"JBSWY3DPEHPK3PXP", b"org\0member");
        assert!(!c.windows(16).any(|w| w == b"JBSWY3DPEHPK3PXP"));
        assert_eq!(k.decrypt(&c, b"org\0member").unwrap(), b"JBSWY3DPEHPK3PXP");
        let e = k.decrypt(&c, b"org\0other").unwrap_err();
        assert_eq!(e.error_type, ErrorType::EncryptionKeyMismatch);
        let mut tampered = c.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(k.decrypt(&tampered, b"org\0member").is_err());
        assert_ne!(
            k.encrypt(b"x", b""),
            k.encrypt(b"x", b""),
            "nonces must differ"
        );
    }

    #[test]
    fn a_login_token_names_its_organization_under_its_key() {
        let k = keys(3);
        let token = k.new_login_token("acme");
        assert_eq!(token.len(), 75);
        assert_ne!(token, k.new_login_token("acme"), "tokens are random");
        assert_eq!(
            k.login_token_of(&token, "acme"),
            Some(LoginToken::OfThisOrganization)
        );
        assert_eq!(
            k.login_token_of(&token, "globex"),
            Some(LoginToken::OfAnotherOrganization)
        );
        // Another key's token, a changed byte anywhere, another shape: not ours.
        assert_eq!(keys(4).login_token_of(&token, "acme"), None);
        let bytes = URL_SAFE_NO_PAD.decode(token.as_bytes()).unwrap();
        for at in [0, 31, 32, 39, 40, 55] {
            let mut changed = bytes.clone();
            changed[at] ^= 1;
            assert_eq!(
                k.login_token_of(&URL_SAFE_NO_PAD.encode(&changed), "acme"),
                None,
                "byte {at}"
            );
        }
        assert_eq!(k.login_token_of(&new_token(), "acme"), None);
        assert_eq!(k.login_token_of("not base64 !", "acme"), None);
        assert_eq!(k.login_token_of(&token[..74], "acme"), None);
    }

    #[test]
    fn another_key_cannot_decrypt() {
        let c = keys(1).encrypt(b"secret", b"");
        let e = keys(2).decrypt(&c, b"").unwrap_err();
        assert_eq!(e.error_type, ErrorType::EncryptionKeyMismatch);
        assert!(e.message.contains(&keys(1).fingerprint_hex()));
    }

    #[test]
    fn code_hashes_are_keyed_and_contextual() {
        let a = keys(1).hash_code("sms", "123456");
        assert_eq!(a, keys(1).hash_code("sms", "123456"));
        assert_ne!(a, keys(2).hash_code("sms", "123456"));
        assert_ne!(a, keys(1).hash_code("recovery", "123456"));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn master_keys_parse_from_hex_or_base64() {
        let hex = "00".repeat(31) + "ff";
        assert_eq!(parse_master_key(&hex).unwrap()[31], 0xff);
        let b64 = STANDARD.encode([9u8; 32]);
        assert_eq!(parse_master_key(&b64).unwrap(), [9u8; 32]);
        for bad in ["", "abc", &"0".repeat(63), &STANDARD.encode([1u8; 16])] {
            assert_eq!(
                parse_master_key(bad).unwrap_err().error_type,
                ErrorType::InvalidEncryptionKey
            );
        }
    }

    #[test]
    fn random_codes_have_the_right_shape_and_spread() {
        let codes: Vec<String> = (0..2000).map(|_| random_numeric_code(6)).collect();
        assert!(codes
            .iter()
            .all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit())));
        // Every leading digit shows up: a biased or truncated generator would miss some.
        for d in b'0'..=b'9' {
            assert!(
                codes.iter().any(|c| c.as_bytes()[0] == d),
                "no code starts with {}",
                d as char
            );
        }
        let t = new_token();
        assert_eq!(t.len(), 43);
        assert_ne!(t, new_token());
        assert_eq!(token_hash(&t).len(), 32);
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"123456", b"123456"));
        assert!(!constant_time_eq(b"123456", b"123457"));
        assert!(!constant_time_eq(b"12345", b"123456"));
    }
}
