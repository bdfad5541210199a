//! Passkeys: the relying party's checks of W3C WebAuthn Level 3, §7.1 (registering a new
//! credential) and §7.2 (verifying an authentication assertion), on what a browser sends
//! (`RegistrationResponseJSON`, `AuthenticationResponseJSON`), and the options a browser is given
//! (`PublicKeyCredentialCreationOptionsJSON`, `PublicKeyCredentialRequestOptionsJSON`). Pure:
//! the caller brings the challenge it issued, the allowed origins, the relying party id and the
//! stored credential. CBOR, COSE keys and signatures come from well-kept crates (ciborium,
//! coset, RustCrypto); nothing of them is written here.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use coset::{iana, CborSerializable, CoseKey, KeyType, Label};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::Cursor;
use subtle::ConstantTimeEq;

/// COSE algorithm identifiers accepted for a credential: ES256, EdDSA (Ed25519), RS256.
pub const ES256: i64 = -7;
pub const EDDSA: i64 = -8;
pub const RS256: i64 = -257;
pub const ALGORITHMS: [i64; 3] = [ES256, EDDSA, RS256];

/// The largest response a browser sends for one ceremony, as JSON text.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// WebAuthn's limit on a credential id.
pub const MAX_CREDENTIAL_ID_BYTES: usize = 1023;
/// RSA keys shorter than this are refused.
const MIN_RSA_BITS: usize = 2048;

const FLAG_USER_PRESENT: u8 = 0x01;
const FLAG_USER_VERIFIED: u8 = 0x04;
const FLAG_BACKUP_ELIGIBLE: u8 = 0x08;
const FLAG_BACKED_UP: u8 = 0x10;
const FLAG_ATTESTED: u8 = 0x40;
const FLAG_EXTENSIONS: u8 = 0x80;

/// Why a response is refused. `Malformed` is the caller's mistake (a 22023 where the caller
/// sent it); every other refusal is a failed verification (a counted attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Malformed(String),
    WrongType,
    ChallengeMismatch,
    OriginNotAllowed(String),
    CrossOrigin,
    RpIdMismatch,
    UserNotPresent,
    UserNotVerified,
    BackupStateInvalid,
    UnsupportedAlgorithm(i64),
    UnsupportedAttestation(String),
    AttestationInvalid(&'static str),
    CredentialMismatch,
    BadSignature,
    CounterNotIncreased { stored: u32, presented: u32 },
}

impl Refusal {
    pub fn is_malformed(&self) -> bool {
        matches!(self, Refusal::Malformed(_))
    }

    /// A sentence for the caller; names nothing secret.
    pub fn message(&self) -> String {
        match self {
            Refusal::Malformed(why) => format!("The public key credential is malformed: {why}."),
            Refusal::WrongType => "The client data is not of this ceremony (type).".into(),
            Refusal::ChallengeMismatch => {
                "The credential answers another challenge than the one issued for this login.".into()
            }
            Refusal::OriginNotAllowed(origin) => {
                format!("The origin {origin:?} is not an allowed origin of this project.")
            }
            Refusal::CrossOrigin => "A cross-origin credential is not accepted.".into(),
            Refusal::RpIdMismatch => "The credential is not for this domain (rpIdHash).".into(),
            Refusal::UserNotPresent => "The authenticator did not report the user present.".into(),
            Refusal::UserNotVerified => "The authenticator did not verify the user.".into(),
            Refusal::BackupStateInvalid => {
                "The authenticator reports a backup of a credential that cannot be backed up.".into()
            }
            Refusal::UnsupportedAlgorithm(alg) => {
                format!("The credential's algorithm {alg} is not accepted (ES256, EdDSA, RS256).")
            }
            Refusal::UnsupportedAttestation(fmt) => {
                format!("The attestation format {fmt:?} is not accepted (none, packed).")
            }
            Refusal::AttestationInvalid(why) => format!("The attestation is invalid: {why}."),
            Refusal::CredentialMismatch => {
                "The credential is not the member's registered passkey.".into()
            }
            Refusal::BadSignature => "The signature does not verify.".into(),
            Refusal::CounterNotIncreased { .. } => {
                "The authenticator's signature counter did not increase: the passkey may have been cloned.".into()
            }
        }
    }
}

fn malformed<T>(why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::Malformed(why.into()))
}

/// Bytes from base64url (the JSON forms' encoding); padding tolerated.
pub fn from_base64url(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

pub fn to_base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// Origins and the relying party id

/// An origin as the project may allow it: `https://host[:port]`, or for development
/// `http://localhost[:port]` and `http://127.0.0.1[:port]`. Returned in the form a browser
/// serializes it (lower-case host, no default port, no trailing slash).
pub fn normalize_origin(origin: &str) -> Result<String, String> {
    let url = url::Url::parse(origin).map_err(|e| format!("{origin:?} is not an origin: {e}"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("{origin:?} has no host"))?;
    if !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || origin.ends_with('/')
    {
        return Err(format!(
            "{origin:?} is not an origin (scheme, host and port only, as https://example.com)"
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if host == "localhost" || host == "127.0.0.1" => {}
        _ => {
            return Err(format!(
                "{origin:?} is not https:// (http:// only for localhost and 127.0.0.1)"
            ))
        }
    }
    Ok(url.origin().ascii_serialization())
}

fn origin_host(origin: &str) -> Option<String> {
    url::Url::parse(origin)
        .ok()?
        .host_str()
        .map(|h| h.to_ascii_lowercase())
}

/// Whether `rp_id` may be used by a page of `host`: the host itself, or a registrable suffix of
/// it (a domain that is not a public suffix; never for an IP address).
fn rp_id_fits_host(rp_id: &str, host: &str) -> bool {
    if rp_id.eq_ignore_ascii_case(host) {
        return true;
    }
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return false;
    }
    let rp_id = rp_id.to_ascii_lowercase();
    let is_suffix = host.len() > rp_id.len()
        && host.ends_with(&rp_id)
        && host.as_bytes()[host.len() - rp_id.len() - 1] == b'.';
    is_suffix && psl::suffix_str(&rp_id) != Some(rp_id.as_str())
}

/// Whether `rp_id` (the `domain` of the SQL API) is valid for the allowed origins: the host of
/// one of them or a registrable suffix of it.
pub fn rp_id_valid(rp_id: &str, allowed_origins: &[String]) -> bool {
    !rp_id.is_empty()
        && rp_id.len() <= 253
        && allowed_origins
            .iter()
            .filter_map(|o| origin_host(o))
            .any(|host| rp_id_fits_host(rp_id, &host))
}

// ---------------------------------------------------------------------------------------------
// Options for the browser

/// What `navigator.credentials.create` is asked (`PublicKeyCredentialCreationOptionsJSON`).
pub struct CreationOptions<'a> {
    pub challenge: &'a [u8],
    pub rp_id: &'a str,
    pub rp_name: &'a str,
    pub user_handle: &'a [u8],
    pub user_name: &'a str,
    pub user_display_name: &'a str,
    pub exclude_credentials: &'a [Vec<u8>],
    pub authenticator_attachment: Option<&'a str>,
    pub user_verification: &'a str,
    pub timeout_ms: u64,
}

pub fn creation_options(o: &CreationOptions) -> Value {
    let mut selection = json!({
        "residentKey": "preferred",
        "requireResidentKey": false,
        "userVerification": o.user_verification,
    });
    if let Some(attachment) = o.authenticator_attachment {
        selection["authenticatorAttachment"] = json!(attachment);
    }
    json!({
        "challenge": to_base64url(o.challenge),
        "rp": {"id": o.rp_id, "name": o.rp_name},
        "user": {
            "id": to_base64url(o.user_handle),
            "name": o.user_name,
            "displayName": o.user_display_name,
        },
        "pubKeyCredParams": ALGORITHMS
            .iter()
            .map(|alg| json!({"type": "public-key", "alg": alg}))
            .collect::<Vec<_>>(),
        "excludeCredentials": o.exclude_credentials
            .iter()
            .map(|id| json!({"type": "public-key", "id": to_base64url(id)}))
            .collect::<Vec<_>>(),
        "authenticatorSelection": selection,
        "attestation": "none",
        "timeout": o.timeout_ms,
        "hints": [],
        "extensions": {"credProps": true},
    })
}

/// What `navigator.credentials.get` is asked (`PublicKeyCredentialRequestOptionsJSON`).
pub fn request_options(
    challenge: &[u8],
    rp_id: &str,
    allow_credentials: &[Vec<u8>],
    user_verification: &str,
    timeout_ms: u64,
) -> Value {
    json!({
        "challenge": to_base64url(challenge),
        "rpId": rp_id,
        "allowCredentials": allow_credentials
            .iter()
            .map(|id| json!({"type": "public-key", "id": to_base64url(id)}))
            .collect::<Vec<_>>(),
        "userVerification": user_verification,
        "timeout": timeout_ms,
        "hints": [],
    })
}

// ---------------------------------------------------------------------------------------------
// What both ceremonies check

/// What the relying party expects of a response: the challenge it issued, its origins and id,
/// and whether user verification was required.
pub struct Expectation<'a> {
    pub challenge: &'a [u8],
    pub allowed_origins: &'a [String],
    pub rp_id: &'a str,
    pub user_verification_required: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(default)]
    cross_origin: Option<bool>,
}

/// §7.1 steps 7–12 / §7.2 steps 10–15: the client data, and its hash for the signature.
fn check_client_data(
    client_data_json: &[u8],
    kind: &str,
    expected: &Expectation,
) -> Result<[u8; 32], Refusal> {
    let client: ClientData = serde_json::from_slice(client_data_json)
        .or_else(|e| malformed(format!("clientDataJSON: {e}")))?;
    if client.kind != kind {
        return Err(Refusal::WrongType);
    }
    let challenge = from_base64url(&client.challenge)
        .ok_or_else(|| Refusal::Malformed("the client data's challenge is not base64url".into()))?;
    // (ct_eq of slices of different lengths is false.)
    if !bool::from(challenge.ct_eq(expected.challenge)) {
        return Err(Refusal::ChallengeMismatch);
    }
    if !expected.allowed_origins.contains(&client.origin) {
        return Err(Refusal::OriginNotAllowed(client.origin));
    }
    if !origin_host(&client.origin).is_some_and(|host| rp_id_fits_host(expected.rp_id, &host)) {
        return Err(Refusal::RpIdMismatch);
    }
    if client.cross_origin == Some(true) {
        return Err(Refusal::CrossOrigin);
    }
    Ok(Sha256::digest(client_data_json).into())
}

/// Authenticator data (§6.1).
#[derive(Debug)]
pub struct AuthenticatorData {
    pub rp_id_hash: [u8; 32],
    pub flags: u8,
    pub sign_count: u32,
    pub attested: Option<AttestedCredential>,
}

#[derive(Debug)]
pub struct AttestedCredential {
    pub aaguid: [u8; 16],
    pub credential_id: Vec<u8>,
    /// The credential public key as its COSE_Key CBOR bytes.
    pub public_key: Vec<u8>,
}

/// One CBOR data item from the start of `bytes`, with the number of bytes it took.
fn cbor_item(bytes: &[u8]) -> Result<(ciborium::Value, usize), Refusal> {
    let mut cursor = Cursor::new(bytes);
    let value: ciborium::Value = ciborium::de::from_reader_with_recursion_limit(&mut cursor, 16)
        .or_else(|e| malformed(format!("CBOR: {e}")))?;
    Ok((value, cursor.position() as usize))
}

/// Refuses a CBOR map (at any depth) with a key twice: two readings of one object.
fn refuse_duplicate_keys(value: &ciborium::Value) -> Result<(), Refusal> {
    match value {
        ciborium::Value::Map(entries) => {
            for (i, (key, item)) in entries.iter().enumerate() {
                if entries[..i].iter().any(|(k, _)| k == key) {
                    return malformed("a CBOR map has a key twice");
                }
                refuse_duplicate_keys(item)?;
            }
            Ok(())
        }
        ciborium::Value::Array(items) => items.iter().try_for_each(refuse_duplicate_keys),
        ciborium::Value::Tag(_, inner) => refuse_duplicate_keys(inner),
        _ => Ok(()),
    }
}

pub fn parse_authenticator_data(bytes: &[u8]) -> Result<AuthenticatorData, Refusal> {
    if bytes.len() < 37 {
        return malformed("authenticator data shorter than 37 bytes");
    }
    let rp_id_hash: [u8; 32] = bytes[..32].try_into().expect("32 bytes");
    let flags = bytes[32];
    let sign_count = u32::from_be_bytes(bytes[33..37].try_into().expect("4 bytes"));
    let mut rest = &bytes[37..];
    let attested = if flags & FLAG_ATTESTED != 0 {
        if rest.len() < 18 {
            return malformed("attested credential data cut short");
        }
        let aaguid: [u8; 16] = rest[..16].try_into().expect("16 bytes");
        let id_length = u16::from_be_bytes([rest[16], rest[17]]) as usize;
        rest = &rest[18..];
        if id_length > MAX_CREDENTIAL_ID_BYTES || rest.len() < id_length {
            return malformed("credential id too long or cut short");
        }
        let credential_id = rest[..id_length].to_vec();
        rest = &rest[id_length..];
        let (key, used) = cbor_item(rest)?;
        refuse_duplicate_keys(&key)?;
        let public_key = rest[..used].to_vec();
        rest = &rest[used..];
        Some(AttestedCredential {
            aaguid,
            credential_id,
            public_key,
        })
    } else {
        None
    };
    if flags & FLAG_EXTENSIONS != 0 {
        let (extensions, used) = cbor_item(rest)?;
        if !matches!(extensions, ciborium::Value::Map(_)) {
            return malformed("the extensions are not a CBOR map");
        }
        refuse_duplicate_keys(&extensions)?;
        rest = &rest[used..];
    }
    if !rest.is_empty() {
        return malformed("bytes after the authenticator data");
    }
    Ok(AuthenticatorData {
        rp_id_hash,
        flags,
        sign_count,
        attested,
    })
}

/// §7.1 steps 13–17 / §7.2 steps 15–18: the relying party, user presence and verification,
/// and the backup flags' consistency.
fn check_authenticator_data(
    data: &AuthenticatorData,
    expected: &Expectation,
) -> Result<(), Refusal> {
    let rp_id_hash: [u8; 32] = Sha256::digest(expected.rp_id.as_bytes()).into();
    if !bool::from(data.rp_id_hash.ct_eq(&rp_id_hash)) {
        return Err(Refusal::RpIdMismatch);
    }
    if data.flags & FLAG_USER_PRESENT == 0 {
        return Err(Refusal::UserNotPresent);
    }
    if expected.user_verification_required && data.flags & FLAG_USER_VERIFIED == 0 {
        return Err(Refusal::UserNotVerified);
    }
    if data.flags & FLAG_BACKUP_ELIGIBLE == 0 && data.flags & FLAG_BACKED_UP != 0 {
        return Err(Refusal::BackupStateInvalid);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Keys and signatures

/// A credential public key, from its COSE_Key.
pub enum PublicKey {
    Es256(p256::ecdsa::VerifyingKey),
    EdDsa(ed25519_dalek::VerifyingKey),
    Rs256(rsa::RsaPublicKey),
}

fn key_parameter(key: &CoseKey, label: i64) -> Option<&ciborium::Value> {
    key.params
        .iter()
        .find(|(l, _)| *l == Label::Int(label))
        .map(|(_, v)| v)
}

fn key_bytes(key: &CoseKey, label: i64) -> Result<&[u8], Refusal> {
    match key_parameter(key, label) {
        Some(ciborium::Value::Bytes(bytes)) => Ok(bytes),
        _ => malformed(format!("the COSE key lacks parameter {label}")),
    }
}

fn key_curve(key: &CoseKey) -> Option<i128> {
    match key_parameter(key, -1) {
        Some(ciborium::Value::Integer(curve)) => Some(i128::from(*curve)),
        _ => None,
    }
}

/// The algorithm and the key of a COSE_Key (RFC 9052/9053): EC2 P-256 for ES256, OKP Ed25519
/// for EdDSA, RSA of 2048 bits or more for RS256. The key's `alg` must be present.
pub fn public_key_from_cose(cose: &[u8]) -> Result<(i64, PublicKey), Refusal> {
    let key = CoseKey::from_slice(cose).or_else(|e| malformed(format!("COSE key: {e:?}")))?;
    let alg = match &key.alg {
        Some(coset::Algorithm::Assigned(alg)) => *alg as i64,
        Some(_) => return malformed("the COSE key's algorithm is not a registered one"),
        None => return malformed("the COSE key names no algorithm"),
    };
    match (alg, &key.kty) {
        (ES256, KeyType::Assigned(iana::KeyType::EC2))
            if key_curve(&key) == Some(iana::EllipticCurve::P_256 as i128) =>
        {
            let (x, y) = (key_bytes(&key, -2)?, key_bytes(&key, -3)?);
            if x.len() != 32 || y.len() != 32 {
                return malformed("a P-256 coordinate is not 32 bytes");
            }
            let point = p256::EncodedPoint::from_affine_coordinates(x.into(), y.into(), false);
            let verifying = p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                .or_else(|_| malformed("the P-256 key is not a point of the curve"))?;
            Ok((alg, PublicKey::Es256(verifying)))
        }
        (EDDSA, KeyType::Assigned(iana::KeyType::OKP))
            if key_curve(&key) == Some(iana::EllipticCurve::Ed25519 as i128) =>
        {
            let x: [u8; 32] = key_bytes(&key, -2)?
                .try_into()
                .or_else(|_| malformed("an Ed25519 key is not 32 bytes"))?;
            let verifying = ed25519_dalek::VerifyingKey::from_bytes(&x)
                .or_else(|_| malformed("the Ed25519 key is not a valid point"))?;
            Ok((alg, PublicKey::EdDsa(verifying)))
        }
        (RS256, KeyType::Assigned(iana::KeyType::RSA)) => {
            let n = rsa::BigUint::from_bytes_be(key_bytes(&key, -1)?);
            let e = rsa::BigUint::from_bytes_be(key_bytes(&key, -2)?);
            let public =
                rsa::RsaPublicKey::new(n, e).or_else(|e| malformed(format!("the RSA key: {e}")))?;
            if rsa::traits::PublicKeyParts::size(&public) * 8 < MIN_RSA_BITS {
                return Err(Refusal::UnsupportedAlgorithm(alg));
            }
            Ok((alg, PublicKey::Rs256(public)))
        }
        (ES256 | EDDSA | RS256, _) => {
            malformed("the COSE key's type or curve does not fit its algorithm")
        }
        _ => Err(Refusal::UnsupportedAlgorithm(alg)),
    }
}

/// Verifies `signature` over `message` (ES256: ASN.1 DER; EdDSA: 64 bytes; RS256: PKCS#1 v1.5).
pub fn verify_signature(key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<(), Refusal> {
    use signature::Verifier;
    let verified = match key {
        PublicKey::Es256(key) => p256::ecdsa::Signature::from_der(signature)
            .map(|s| key.verify(message, &s).is_ok())
            .unwrap_or(false),
        PublicKey::EdDsa(key) => ed25519_dalek::Signature::from_slice(signature)
            .map(|s| key.verify_strict(message, &s).is_ok())
            .unwrap_or(false),
        PublicKey::Rs256(key) => {
            let verifying = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key.clone());
            rsa::pkcs1v15::Signature::try_from(signature)
                .map(|s| verifying.verify(message, &s).is_ok())
                .unwrap_or(false)
        }
    };
    if verified {
        Ok(())
    } else {
        Err(Refusal::BadSignature)
    }
}

// ---------------------------------------------------------------------------------------------
// The browser's JSON

fn field<'a>(object: &'a Value, name: &str) -> Result<&'a Value, Refusal> {
    object
        .get(name)
        .ok_or_else(|| Refusal::Malformed(format!("{name} is missing")))
}

fn base64url_field(object: &Value, name: &str) -> Result<Vec<u8>, Refusal> {
    field(object, name)?
        .as_str()
        .and_then(from_base64url)
        .ok_or_else(|| Refusal::Malformed(format!("{name} is not base64url text")))
}

/// The credential id of a `PublicKeyCredential` JSON (`rawId`, which must equal `id`), its
/// `response` object, after the `type` check.
fn credential_envelope(credential: &Value) -> Result<(Vec<u8>, &Value), Refusal> {
    if !credential.is_object() {
        return malformed("the public key credential is not a JSON object");
    }
    if field(credential, "type")?.as_str() != Some("public-key") {
        return malformed("type is not \"public-key\"");
    }
    let raw_id = base64url_field(credential, "rawId")?;
    let id = base64url_field(credential, "id")?;
    if raw_id != id {
        return malformed("id and rawId differ");
    }
    if raw_id.is_empty() || raw_id.len() > MAX_CREDENTIAL_ID_BYTES {
        return malformed("the credential id is empty or too long");
    }
    let response = field(credential, "response")?;
    if !response.is_object() {
        return malformed("response is not a JSON object");
    }
    Ok((raw_id, response))
}

/// The credential id a response is from, and the challenge its client data answers: what finds
/// the stored passkey and the issued challenge before anything is verified. Refuses (as
/// `Malformed`) a response too large or not shaped as a `PublicKeyCredential`.
pub fn presented(credential: &Value) -> Result<(Vec<u8>, Vec<u8>), Refusal> {
    if serde_json::to_vec(credential).map_or(true, |text| text.len() > MAX_RESPONSE_BYTES) {
        return malformed(format!("larger than {MAX_RESPONSE_BYTES} bytes"));
    }
    let (credential_id, response) = credential_envelope(credential)?;
    let client_data_json = base64url_field(response, "clientDataJSON")?;
    let client: ClientData = serde_json::from_slice(&client_data_json)
        .or_else(|e| malformed(format!("clientDataJSON: {e}")))?;
    let challenge = from_base64url(&client.challenge)
        .ok_or_else(|| Refusal::Malformed("the client data's challenge is not base64url".into()))?;
    Ok((credential_id, challenge))
}

// ---------------------------------------------------------------------------------------------
// Registration (§7.1)

/// A credential that passed registration: what is stored.
#[derive(Debug)]
pub struct NewCredential {
    pub credential_id: Vec<u8>,
    pub public_key: Vec<u8>,
    pub algorithm: i64,
    pub sign_count: u32,
    pub aaguid: [u8; 16],
    pub user_verified: bool,
    pub backup_eligible: bool,
    pub backed_up: bool,
    pub attestation_format: String,
    pub transports: Vec<String>,
}

fn text_key(key: &ciborium::Value) -> Option<&str> {
    match key {
        ciborium::Value::Text(text) => Some(text),
        _ => None,
    }
}

/// Verifies a `RegistrationResponseJSON` against what was asked. Attestation formats `none`
/// and `packed` (self attestation, or an x5c certificate whose key verifies the signature; the
/// certificate is not checked against any trust root).
pub fn verify_registration(
    credential: &Value,
    expected: &Expectation,
) -> Result<NewCredential, Refusal> {
    let (credential_id, response) = credential_envelope(credential)?;
    let client_data_json = base64url_field(response, "clientDataJSON")?;
    let client_data_hash = check_client_data(&client_data_json, "webauthn.create", expected)?;
    let attestation_object = base64url_field(response, "attestationObject")?;
    let (object, used) = cbor_item(&attestation_object)?;
    if used != attestation_object.len() {
        return malformed("bytes after the attestation object");
    }
    refuse_duplicate_keys(&object)?;
    let ciborium::Value::Map(entries) = &object else {
        return malformed("the attestation object is not a CBOR map");
    };
    let entry = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| text_key(k) == Some(name))
            .map(|(_, v)| v)
    };
    let (
        Some(ciborium::Value::Text(format)),
        Some(ciborium::Value::Map(statement)),
        Some(ciborium::Value::Bytes(auth_data)),
    ) = (entry("fmt"), entry("attStmt"), entry("authData"))
    else {
        return malformed("the attestation object lacks fmt, attStmt or authData");
    };
    let data = parse_authenticator_data(auth_data)?;
    check_authenticator_data(&data, expected)?;
    let Some(attested) = &data.attested else {
        return malformed("the authenticator data carries no credential");
    };
    if attested.credential_id != credential_id {
        return malformed("the credential id differs from the authenticator data's");
    }
    let (algorithm, key) = public_key_from_cose(&attested.public_key)?;
    let statement_entry = |name: &str| {
        statement
            .iter()
            .find(|(k, _)| text_key(k) == Some(name))
            .map(|(_, v)| v)
    };
    match format.as_str() {
        "none" => {
            if !statement.is_empty() {
                return Err(Refusal::AttestationInvalid(
                    "a none attestation carries a statement",
                ));
            }
        }
        "packed" => {
            let (Some(ciborium::Value::Integer(alg)), Some(ciborium::Value::Bytes(signature))) =
                (statement_entry("alg"), statement_entry("sig"))
            else {
                return Err(Refusal::AttestationInvalid(
                    "a packed statement lacks alg or sig",
                ));
            };
            let alg = i64::try_from(*alg).unwrap_or(0);
            let signed = [auth_data.as_slice(), &client_data_hash].concat();
            match statement_entry("x5c") {
                None => {
                    if alg != algorithm {
                        return Err(Refusal::AttestationInvalid(
                            "a self attestation's algorithm differs from the credential's",
                        ));
                    }
                    verify_signature(&key, &signed, signature).map_err(|_| {
                        Refusal::AttestationInvalid("the self attestation's signature")
                    })?;
                }
                Some(ciborium::Value::Array(chain)) => {
                    let Some(ciborium::Value::Bytes(leaf)) = chain.first() else {
                        return Err(Refusal::AttestationInvalid("x5c is empty"));
                    };
                    if alg != ES256 {
                        return Err(Refusal::UnsupportedAttestation(format!(
                            "packed x5c with algorithm {alg}"
                        )));
                    }
                    let certificate_key = certificate_p256_key(leaf)?;
                    verify_signature(&PublicKey::Es256(certificate_key), &signed, signature)
                        .map_err(|_| Refusal::AttestationInvalid("the certificate's signature"))?;
                }
                Some(_) => return Err(Refusal::AttestationInvalid("x5c is not an array")),
            }
        }
        other => return Err(Refusal::UnsupportedAttestation(other.to_string())),
    }
    let transports = response
        .get("transports")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .filter(|t| t.len() <= 32)
                .take(8)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(NewCredential {
        credential_id,
        public_key: attested.public_key.clone(),
        algorithm,
        sign_count: data.sign_count,
        aaguid: attested.aaguid,
        user_verified: data.flags & FLAG_USER_VERIFIED != 0,
        backup_eligible: data.flags & FLAG_BACKUP_ELIGIBLE != 0,
        backed_up: data.flags & FLAG_BACKED_UP != 0,
        attestation_format: format.clone(),
        transports,
    })
}

/// The P-256 key of an attestation certificate (DER).
fn certificate_p256_key(der: &[u8]) -> Result<p256::ecdsa::VerifyingKey, Refusal> {
    use p256::pkcs8::DecodePublicKey;
    use x509_cert::der::{Decode, Encode};
    let certificate = x509_cert::Certificate::from_der(der)
        .map_err(|_| Refusal::AttestationInvalid("the x5c certificate is not DER X.509"))?;
    let spki = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|_| Refusal::AttestationInvalid("the certificate's key"))?;
    p256::ecdsa::VerifyingKey::from_public_key_der(&spki)
        .map_err(|_| Refusal::AttestationInvalid("the certificate's key is not P-256"))
}

// ---------------------------------------------------------------------------------------------
// Authentication (§7.2)

/// The stored credential an assertion must come from.
pub struct StoredCredential<'a> {
    pub credential_id: &'a [u8],
    pub public_key: &'a [u8],
    pub sign_count: u32,
    /// The member's user handle: an assertion that names another is refused.
    pub user_handle: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
pub struct Assertion {
    pub sign_count: u32,
    pub user_verified: bool,
    pub backed_up: bool,
}

/// Verifies an `AuthenticationResponseJSON` from `stored` against what was asked. The counter
/// is checked after the signature: only a valid signature with a counter that did not move
/// forward suggests a cloned authenticator (`CounterNotIncreased`).
pub fn verify_assertion(
    credential: &Value,
    expected: &Expectation,
    stored: &StoredCredential,
) -> Result<Assertion, Refusal> {
    let (credential_id, response) = credential_envelope(credential)?;
    if credential_id.len() != stored.credential_id.len()
        || !bool::from(credential_id.ct_eq(stored.credential_id))
    {
        return Err(Refusal::CredentialMismatch);
    }
    if let Some(handle) = response.get("userHandle").filter(|h| !h.is_null()) {
        let handle = handle
            .as_str()
            .and_then(from_base64url)
            .ok_or_else(|| Refusal::Malformed("userHandle is not base64url text".into()))?;
        if !bool::from(handle.ct_eq(stored.user_handle)) {
            return Err(Refusal::CredentialMismatch);
        }
    }
    let client_data_json = base64url_field(response, "clientDataJSON")?;
    let client_data_hash = check_client_data(&client_data_json, "webauthn.get", expected)?;
    let auth_data = base64url_field(response, "authenticatorData")?;
    let data = parse_authenticator_data(&auth_data)?;
    if data.attested.is_some() {
        return malformed("an assertion's authenticator data carries a credential");
    }
    check_authenticator_data(&data, expected)?;
    let signature = base64url_field(response, "signature")?;
    let (_, key) = public_key_from_cose(stored.public_key)?;
    verify_signature(
        &key,
        &[auth_data.as_slice(), &client_data_hash].concat(),
        &signature,
    )?;
    if (data.sign_count != 0 || stored.sign_count != 0) && data.sign_count <= stored.sign_count {
        return Err(Refusal::CounterNotIncreased {
            stored: stored.sign_count,
            presented: data.sign_count,
        });
    }
    Ok(Assertion {
        sign_count: data.sign_count,
        user_verified: data.flags & FLAG_USER_VERIFIED != 0,
        backed_up: data.flags & FLAG_BACKED_UP != 0,
    })
}

#[cfg(test)]
mod tests {
    //! A software authenticator (ES256, EdDSA, RS256) makes the browser's JSON; each check of
    //! §7.1 and §7.2 is then broken one at a time.
    use super::*;
    use coset::CoseKeyBuilder;
    use signature::Signer;

    const ORIGIN: &str = "https://login.example.com";
    const RP_ID: &str = "example.com";
    const CHALLENGE: [u8; 32] = [9; 32];
    const HANDLE: [u8; 16] = [5; 16];

    enum Key {
        Es256(p256::ecdsa::SigningKey),
        EdDsa(ed25519_dalek::SigningKey),
        Rs256(rsa::RsaPrivateKey),
    }

    struct Authenticator {
        key: Key,
        id: Vec<u8>,
    }

    impl Authenticator {
        fn es256() -> Self {
            let key = p256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
            Authenticator {
                key: Key::Es256(key),
                id: vec![1; 16],
            }
        }
        fn eddsa() -> Self {
            let key = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
            Authenticator {
                key: Key::EdDsa(key),
                id: vec![2; 20],
            }
        }
        fn rs256() -> Self {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            let key = rsa::RsaPrivateKey::from_pkcs1_pem(include_str!(
                "testdata/webauthn-test-rsa2048.pem"
            ))
            .unwrap();
            Authenticator {
                key: Key::Rs256(key),
                id: vec![3; 32],
            }
        }

        fn cose_key(&self) -> Vec<u8> {
            let key = match &self.key {
                Key::Es256(key) => {
                    let point = key.verifying_key().to_encoded_point(false);
                    CoseKeyBuilder::new_ec2_pub_key(
                        iana::EllipticCurve::P_256,
                        point.x().unwrap().to_vec(),
                        point.y().unwrap().to_vec(),
                    )
                    .algorithm(iana::Algorithm::ES256)
                    .build()
                }
                Key::EdDsa(key) => CoseKeyBuilder::new_okp_key()
                    .param(
                        -1,
                        ciborium::Value::from(iana::EllipticCurve::Ed25519 as i64),
                    )
                    .param(
                        -2,
                        ciborium::Value::Bytes(key.verifying_key().to_bytes().to_vec()),
                    )
                    .algorithm(iana::Algorithm::EdDSA)
                    .build(),
                Key::Rs256(key) => {
                    use rsa::traits::PublicKeyParts;
                    CoseKeyBuilder::new()
                        .key_type(iana::KeyType::RSA)
                        .param(-1, ciborium::Value::Bytes(key.n().to_bytes_be()))
                        .param(-2, ciborium::Value::Bytes(key.e().to_bytes_be()))
                        .algorithm(iana::Algorithm::RS256)
                        .build()
                }
            };
            key.to_vec().unwrap()
        }

        fn sign(&self, message: &[u8]) -> Vec<u8> {
            match &self.key {
                Key::Es256(key) => {
                    let signature: p256::ecdsa::Signature = key.sign(message);
                    signature.to_der().as_bytes().to_vec()
                }
                Key::EdDsa(key) => key.sign(message).to_bytes().to_vec(),
                Key::Rs256(key) => {
                    let signing = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone());
                    signature::SignatureEncoding::to_vec(&signing.sign(message))
                }
            }
        }

        fn alg(&self) -> i64 {
            match self.key {
                Key::Es256(_) => ES256,
                Key::EdDsa(_) => EDDSA,
                Key::Rs256(_) => RS256,
            }
        }
    }

    fn client_data(kind: &str, challenge: &[u8], origin: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": kind, "challenge": to_base64url(challenge), "origin": origin, "crossOrigin": false,
        }))
        .unwrap()
    }

    fn auth_data(
        rp_id: &str,
        flags: u8,
        counter: u32,
        credential: Option<(&[u8], &[u8])>,
    ) -> Vec<u8> {
        let mut data = Sha256::digest(rp_id.as_bytes()).to_vec();
        data.push(flags);
        data.extend(counter.to_be_bytes());
        if let Some((id, key)) = credential {
            data.extend([0u8; 16]);
            data.extend((id.len() as u16).to_be_bytes());
            data.extend(id);
            data.extend(key);
        }
        data
    }

    fn cbor(value: &ciborium::Value) -> Vec<u8> {
        let mut bytes = Vec::new();
        ciborium::ser::into_writer(value, &mut bytes).unwrap();
        bytes
    }

    fn text(s: &str) -> ciborium::Value {
        ciborium::Value::Text(s.into())
    }

    struct Registration<'a> {
        kind: &'a str,
        challenge: &'a [u8],
        origin: &'a str,
        rp_id: &'a str,
        flags: u8,
        format: &'a str,
        statement_alg: Option<i64>,
    }

    impl Default for Registration<'_> {
        fn default() -> Self {
            Registration {
                kind: "webauthn.create",
                challenge: &CHALLENGE,
                origin: ORIGIN,
                rp_id: RP_ID,
                flags: FLAG_USER_PRESENT | FLAG_USER_VERIFIED | FLAG_ATTESTED,
                format: "none",
                statement_alg: None,
            }
        }
    }

    fn attestation_object(format: &str, statement: ciborium::Value, data: Vec<u8>) -> Vec<u8> {
        cbor(&ciborium::Value::Map(vec![
            (text("fmt"), text(format)),
            (text("attStmt"), statement),
            (text("authData"), ciborium::Value::Bytes(data)),
        ]))
    }

    fn registration_json(client_data_json: &[u8], attestation: &[u8], id: &[u8]) -> Value {
        json!({
            "id": to_base64url(id), "rawId": to_base64url(id), "type": "public-key",
            "response": {
                "clientDataJSON": to_base64url(client_data_json),
                "attestationObject": to_base64url(attestation),
                "transports": ["internal", "hybrid"],
            },
            "clientExtensionResults": {},
        })
    }

    fn register(authenticator: &Authenticator, r: Registration) -> Value {
        let client = client_data(r.kind, r.challenge, r.origin);
        let key = authenticator.cose_key();
        let data = auth_data(r.rp_id, r.flags, 0, Some((&authenticator.id, &key)));
        let statement = match r.format {
            "packed" => {
                let signed = [data.as_slice(), &Sha256::digest(&client)].concat();
                ciborium::Value::Map(vec![
                    (
                        text("alg"),
                        ciborium::Value::from(r.statement_alg.unwrap_or(authenticator.alg())),
                    ),
                    (
                        text("sig"),
                        ciborium::Value::Bytes(authenticator.sign(&signed)),
                    ),
                ])
            }
            _ => ciborium::Value::Map(vec![]),
        };
        registration_json(
            &client,
            &attestation_object(r.format, statement, data),
            &authenticator.id,
        )
    }

    fn expectation<'a>(origins: &'a [String]) -> Expectation<'a> {
        Expectation {
            challenge: &CHALLENGE,
            allowed_origins: origins,
            rp_id: RP_ID,
            user_verification_required: true,
        }
    }

    fn origins() -> Vec<String> {
        vec![ORIGIN.to_string()]
    }

    fn assertion(
        authenticator: &Authenticator,
        kind: &str,
        flags: u8,
        counter: u32,
        origin: &str,
    ) -> Value {
        let client = client_data(kind, &CHALLENGE, origin);
        let data = auth_data(RP_ID, flags, counter, None);
        let signature = authenticator.sign(&[data.as_slice(), &Sha256::digest(&client)].concat());
        json!({
            "id": to_base64url(&authenticator.id), "rawId": to_base64url(&authenticator.id), "type": "public-key",
            "response": {
                "clientDataJSON": to_base64url(&client),
                "authenticatorData": to_base64url(&data),
                "signature": to_base64url(&signature),
                "userHandle": to_base64url(&HANDLE),
            },
            "clientExtensionResults": {},
        })
    }

    const SIGNED_IN: u8 = FLAG_USER_PRESENT | FLAG_USER_VERIFIED;

    fn stored<'a>(credential: &'a NewCredential, count: u32) -> StoredCredential<'a> {
        StoredCredential {
            credential_id: &credential.credential_id,
            public_key: &credential.public_key,
            sign_count: count,
            user_handle: &HANDLE,
        }
    }

    #[test]
    fn each_algorithm_registers_and_signs_in() {
        let origins = origins();
        for authenticator in [
            Authenticator::es256(),
            Authenticator::eddsa(),
            Authenticator::rs256(),
        ] {
            for format in ["none", "packed"] {
                let credential = verify_registration(
                    &register(
                        &authenticator,
                        Registration {
                            format,
                            ..Default::default()
                        },
                    ),
                    &expectation(&origins),
                )
                .unwrap_or_else(|r| panic!("{format}: {r:?}"));
                assert_eq!(credential.algorithm, authenticator.alg());
                assert_eq!(credential.credential_id, authenticator.id);
                assert_eq!(credential.attestation_format, format);
                assert_eq!(credential.transports, ["internal", "hybrid"]);
                assert!(credential.user_verified && !credential.backup_eligible);
                let signed_in = verify_assertion(
                    &assertion(&authenticator, "webauthn.get", SIGNED_IN, 1, ORIGIN),
                    &expectation(&origins),
                    &stored(&credential, 0),
                );
                assert_eq!(
                    signed_in,
                    Ok(Assertion {
                        sign_count: 1,
                        user_verified: true,
                        backed_up: false
                    })
                );
            }
        }
    }

    #[test]
    fn registration_refuses_each_broken_check() {
        let origins = origins();
        let a = Authenticator::es256();
        let expect = expectation(&origins);
        let cases: Vec<(Registration, Refusal)> = vec![
            (
                Registration {
                    kind: "webauthn.get",
                    ..Default::default()
                },
                Refusal::WrongType,
            ),
            (
                Registration {
                    challenge: &[8; 32],
                    ..Default::default()
                },
                Refusal::ChallengeMismatch,
            ),
            (
                Registration {
                    challenge: &[9; 31],
                    ..Default::default()
                },
                Refusal::ChallengeMismatch,
            ),
            (
                Registration {
                    origin: "https://login.example.net",
                    ..Default::default()
                },
                Refusal::OriginNotAllowed("https://login.example.net".into()),
            ),
            (
                Registration {
                    rp_id: "example.net",
                    ..Default::default()
                },
                Refusal::RpIdMismatch,
            ),
            (
                Registration {
                    flags: FLAG_USER_VERIFIED | FLAG_ATTESTED,
                    ..Default::default()
                },
                Refusal::UserNotPresent,
            ),
            (
                Registration {
                    flags: FLAG_USER_PRESENT | FLAG_ATTESTED,
                    ..Default::default()
                },
                Refusal::UserNotVerified,
            ),
            (
                Registration {
                    flags: SIGNED_IN | FLAG_ATTESTED | FLAG_BACKED_UP,
                    ..Default::default()
                },
                Refusal::BackupStateInvalid,
            ),
            (
                Registration {
                    format: "tpm",
                    ..Default::default()
                },
                Refusal::UnsupportedAttestation("tpm".into()),
            ),
            (
                Registration {
                    format: "packed",
                    statement_alg: Some(RS256),
                    ..Default::default()
                },
                Refusal::AttestationInvalid(
                    "a self attestation's algorithm differs from the credential's",
                ),
            ),
        ];
        for (case, refusal) in cases {
            let label = format!("{refusal:?}");
            assert_eq!(
                verify_registration(&register(&a, case), &expect).unwrap_err(),
                refusal,
                "{label}"
            );
        }
        // Without user verification asked, UP alone is enough.
        let relaxed = Expectation {
            user_verification_required: false,
            ..expectation(&origins)
        };
        let up_only = Registration {
            flags: FLAG_USER_PRESENT | FLAG_ATTESTED,
            ..Default::default()
        };
        assert!(verify_registration(&register(&a, up_only), &relaxed).is_ok());
    }

    #[test]
    fn registration_refuses_a_cross_origin_client_and_a_bad_attestation_signature() {
        let origins = origins();
        let a = Authenticator::es256();
        let mut credential = register(&a, Registration::default());
        let mut client: Value =
            serde_json::from_slice(&client_data("webauthn.create", &CHALLENGE, ORIGIN)).unwrap();
        client["crossOrigin"] = json!(true);
        credential["response"]["clientDataJSON"] =
            json!(to_base64url(&serde_json::to_vec(&client).unwrap()));
        assert_eq!(
            verify_registration(&credential, &expectation(&origins)).unwrap_err(),
            Refusal::CrossOrigin
        );

        // A packed statement whose signature is of other bytes.
        let client = client_data("webauthn.create", &CHALLENGE, ORIGIN);
        let key = a.cose_key();
        let data = auth_data(RP_ID, SIGNED_IN | FLAG_ATTESTED, 0, Some((&a.id, &key)));
        let statement = ciborium::Value::Map(vec![
            (text("alg"), ciborium::Value::from(ES256)),
            (
                text("sig"),
                ciborium::Value::Bytes(a.sign(b"something else")),
            ),
        ]);
        let forged = registration_json(
            &client,
            &attestation_object("packed", statement, data),
            &a.id,
        );
        assert_eq!(
            verify_registration(&forged, &expectation(&origins)).unwrap_err(),
            Refusal::AttestationInvalid("the self attestation's signature")
        );
    }

    #[test]
    fn the_credential_is_the_one_the_authenticator_data_carries() {
        let origins = origins();
        let a = Authenticator::es256();
        // The JSON names another credential id than the authenticator data.
        let mut credential = register(&a, Registration::default());
        credential["id"] = json!(to_base64url(&[7; 16]));
        credential["rawId"] = credential["id"].clone();
        assert!(verify_registration(&credential, &expectation(&origins))
            .unwrap_err()
            .is_malformed());
        // Registration authenticator data without the attested credential.
        let client = client_data("webauthn.create", &CHALLENGE, ORIGIN);
        let bare = attestation_object(
            "none",
            ciborium::Value::Map(vec![]),
            auth_data(RP_ID, SIGNED_IN, 0, None),
        );
        assert!(verify_registration(
            &registration_json(&client, &bare, &a.id),
            &expectation(&origins)
        )
        .unwrap_err()
        .is_malformed());
        // An assertion whose authenticator data carries a credential (a registration's).
        let registered = verify_registration(
            &register(&a, Registration::default()),
            &expectation(&origins),
        )
        .unwrap();
        let client = client_data("webauthn.get", &CHALLENGE, ORIGIN);
        let key = a.cose_key();
        let data = auth_data(RP_ID, SIGNED_IN | FLAG_ATTESTED, 3, Some((&a.id, &key)));
        let signature = a.sign(&[data.as_slice(), &Sha256::digest(&client)].concat());
        let presented = json!({
            "id": to_base64url(&a.id), "rawId": to_base64url(&a.id), "type": "public-key",
            "response": {
                "clientDataJSON": to_base64url(&client), "authenticatorData": to_base64url(&data),
                "signature": to_base64url(&signature),
            },
        });
        assert!(
            verify_assertion(&presented, &expectation(&origins), &stored(&registered, 0))
                .unwrap_err()
                .is_malformed()
        );
    }

    #[test]
    fn the_envelope_and_the_none_statement_are_what_a_browser_sends() {
        let origins = origins();
        let a = Authenticator::es256();
        // id altered, rawId (the bytes) kept.
        let mut credential = register(&a, Registration::default());
        credential["id"] = json!(to_base64url(&[7; 16]));
        assert!(verify_registration(&credential, &expectation(&origins))
            .unwrap_err()
            .is_malformed());
        // A "none" attestation with a statement in it.
        let client = client_data("webauthn.create", &CHALLENGE, ORIGIN);
        let key = a.cose_key();
        let data = auth_data(RP_ID, SIGNED_IN | FLAG_ATTESTED, 0, Some((&a.id, &key)));
        let statement = ciborium::Value::Map(vec![(text("sig"), ciborium::Value::Bytes(vec![1]))]);
        let stuffed =
            registration_json(&client, &attestation_object("none", statement, data), &a.id);
        assert_eq!(
            verify_registration(&stuffed, &expectation(&origins)).unwrap_err(),
            Refusal::AttestationInvalid("a none attestation carries a statement")
        );
    }

    #[test]
    fn an_allowed_origin_of_another_site_cannot_use_this_relying_party() {
        // Both origins are the project's, but a page of example.net cannot speak for example.com
        // (a browser would not let it; the database does not rely on that).
        let origins = vec![ORIGIN.to_string(), "https://login.example.net".to_string()];
        let a = Authenticator::es256();
        let elsewhere = Registration {
            origin: "https://login.example.net",
            ..Default::default()
        };
        assert_eq!(
            verify_registration(&register(&a, elsewhere), &expectation(&origins)).unwrap_err(),
            Refusal::RpIdMismatch
        );
    }

    #[test]
    fn a_packed_attestation_with_a_certificate_is_verified_with_its_key() {
        use std::str::FromStr;
        use x509_cert::builder::{Builder, CertificateBuilder, Profile};
        let origins = origins();
        let a = Authenticator::es256();
        let attestation_key = p256::ecdsa::SigningKey::from_bytes(&[11u8; 32].into()).unwrap();
        let spki =
            x509_cert::spki::SubjectPublicKeyInfoOwned::from_key(*attestation_key.verifying_key())
                .unwrap();
        let subject = x509_cert::name::Name::from_str(
            "CN=Test Authenticator,OU=Authenticator Attestation,O=Example,C=US",
        )
        .unwrap();
        let certificate = CertificateBuilder::new(
            Profile::Leaf {
                issuer: subject.clone(),
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            x509_cert::serial_number::SerialNumber::from(1u32),
            x509_cert::time::Validity::from_now(std::time::Duration::from_secs(3600)).unwrap(),
            subject,
            spki,
            &attestation_key,
        )
        .unwrap()
        .build::<p256::ecdsa::DerSignature>()
        .unwrap();
        let der = x509_cert::der::Encode::to_der(&certificate).unwrap();
        let client = client_data("webauthn.create", &CHALLENGE, ORIGIN);
        let key = a.cose_key();
        let data = auth_data(RP_ID, SIGNED_IN | FLAG_ATTESTED, 0, Some((&a.id, &key)));
        let signed = [data.as_slice(), &Sha256::digest(&client)].concat();
        let statement = |signer: &p256::ecdsa::SigningKey| {
            let signature: p256::ecdsa::Signature = signer.sign(&signed);
            ciborium::Value::Map(vec![
                (text("alg"), ciborium::Value::from(ES256)),
                (
                    text("sig"),
                    ciborium::Value::Bytes(signature.to_der().as_bytes().to_vec()),
                ),
                (
                    text("x5c"),
                    ciborium::Value::Array(vec![ciborium::Value::Bytes(der.clone())]),
                ),
            ])
        };
        let good = registration_json(
            &client,
            &attestation_object("packed", statement(&attestation_key), data.clone()),
            &a.id,
        );
        assert!(verify_registration(&good, &expectation(&origins)).is_ok());
        // Signed by the credential's key instead of the certificate's.
        let Key::Es256(credential_key) = &a.key else {
            unreachable!()
        };
        let wrong = registration_json(
            &client,
            &attestation_object("packed", statement(credential_key), data),
            &a.id,
        );
        assert_eq!(
            verify_registration(&wrong, &expectation(&origins)).unwrap_err(),
            Refusal::AttestationInvalid("the certificate's signature")
        );
    }

    #[test]
    fn an_unaccepted_algorithm_or_short_rsa_key_is_refused() {
        // ES384 on P-384: a COSE key of a kind not accepted.
        let key =
            CoseKeyBuilder::new_ec2_pub_key(iana::EllipticCurve::P_384, vec![1; 48], vec![2; 48])
                .algorithm(iana::Algorithm::ES384)
                .build()
                .to_vec()
                .unwrap();
        assert_eq!(
            public_key_from_cose(&key).err(),
            Some(Refusal::UnsupportedAlgorithm(-35))
        );
        // ES256 named for an Ed25519 key.
        let key = CoseKeyBuilder::new_okp_key()
            .param(
                -1,
                ciborium::Value::from(iana::EllipticCurve::Ed25519 as i64),
            )
            .param(-2, ciborium::Value::Bytes(vec![3; 32]))
            .algorithm(iana::Algorithm::ES256)
            .build()
            .to_vec()
            .unwrap();
        assert!(public_key_from_cose(&key).err().unwrap().is_malformed());
        let key = CoseKeyBuilder::new()
            .key_type(iana::KeyType::RSA)
            .param(-1, ciborium::Value::Bytes(vec![0xff; 128]))
            .param(-2, ciborium::Value::Bytes(vec![1, 0, 1]))
            .algorithm(iana::Algorithm::RS256)
            .build()
            .to_vec()
            .unwrap();
        assert_eq!(
            public_key_from_cose(&key).err(),
            Some(Refusal::UnsupportedAlgorithm(RS256))
        );
        // No algorithm at all.
        let key =
            CoseKeyBuilder::new_ec2_pub_key(iana::EllipticCurve::P_256, vec![1; 32], vec![2; 32])
                .build()
                .to_vec()
                .unwrap();
        assert!(public_key_from_cose(&key).err().unwrap().is_malformed());
    }

    #[test]
    fn an_assertion_refuses_each_broken_check() {
        let origins = origins();
        let a = Authenticator::eddsa();
        let credential = verify_registration(
            &register(&a, Registration::default()),
            &expectation(&origins),
        )
        .unwrap();
        let expect = expectation(&origins);
        let check = |presented: &Value, count: u32| {
            verify_assertion(presented, &expect, &stored(&credential, count))
        };
        assert_eq!(
            check(&assertion(&a, "webauthn.create", SIGNED_IN, 5, ORIGIN), 0),
            Err(Refusal::WrongType)
        );
        assert_eq!(
            check(
                &assertion(&a, "webauthn.get", SIGNED_IN, 5, "https://evil.example.org"),
                0
            ),
            Err(Refusal::OriginNotAllowed("https://evil.example.org".into()))
        );
        assert_eq!(
            check(
                &assertion(&a, "webauthn.get", FLAG_USER_VERIFIED, 5, ORIGIN),
                0
            ),
            Err(Refusal::UserNotPresent)
        );
        assert_eq!(
            check(
                &assertion(&a, "webauthn.get", FLAG_USER_PRESENT, 5, ORIGIN),
                0
            ),
            Err(Refusal::UserNotVerified)
        );
        // The counter: equal or lower than the stored one is a clone signal; both zero is fine.
        assert_eq!(
            check(&assertion(&a, "webauthn.get", SIGNED_IN, 5, ORIGIN), 5),
            Err(Refusal::CounterNotIncreased {
                stored: 5,
                presented: 5
            })
        );
        assert_eq!(
            check(&assertion(&a, "webauthn.get", SIGNED_IN, 0, ORIGIN), 7),
            Err(Refusal::CounterNotIncreased {
                stored: 7,
                presented: 0
            })
        );
        assert!(check(&assertion(&a, "webauthn.get", SIGNED_IN, 0, ORIGIN), 0).is_ok());
        // A signature of other bytes, a flipped byte, another credential's signature.
        let mut presented = assertion(&a, "webauthn.get", SIGNED_IN, 9, ORIGIN);
        let mut signature =
            from_base64url(presented["response"]["signature"].as_str().unwrap()).unwrap();
        signature[10] ^= 1;
        presented["response"]["signature"] = json!(to_base64url(&signature));
        assert_eq!(check(&presented, 0), Err(Refusal::BadSignature));
        let other = Authenticator {
            key: Authenticator::es256().key,
            id: a.id.clone(),
        };
        assert_eq!(
            check(&assertion(&other, "webauthn.get", SIGNED_IN, 9, ORIGIN), 0),
            Err(Refusal::BadSignature)
        );
        // Another credential id, another user handle.
        let mut presented = assertion(&a, "webauthn.get", SIGNED_IN, 9, ORIGIN);
        presented["id"] = json!(to_base64url(&[4; 20]));
        presented["rawId"] = presented["id"].clone();
        assert_eq!(check(&presented, 0), Err(Refusal::CredentialMismatch));
        let mut presented = assertion(&a, "webauthn.get", SIGNED_IN, 9, ORIGIN);
        presented["response"]["userHandle"] = json!(to_base64url(&[6; 16]));
        assert_eq!(check(&presented, 0), Err(Refusal::CredentialMismatch));
        // Another challenge: the one issued for another login.
        let other_login = Expectation {
            challenge: &[1; 32],
            ..expectation(&origins)
        };
        assert_eq!(
            verify_assertion(
                &assertion(&a, "webauthn.get", SIGNED_IN, 9, ORIGIN),
                &other_login,
                &stored(&credential, 0)
            ),
            Err(Refusal::ChallengeMismatch)
        );
    }

    #[test]
    fn malformed_input_is_refused_as_malformed_never_a_panic() {
        let origins = origins();
        let a = Authenticator::es256();
        let good = register(&a, Registration::default());
        let attestation =
            from_base64url(good["response"]["attestationObject"].as_str().unwrap()).unwrap();
        let mut cases: Vec<Value> = vec![
            json!(null),
            json!("text"),
            json!({"id": 1, "rawId": 1, "type": "public-key", "response": {}}),
            json!({"id": "AQ", "rawId": "Ag", "type": "public-key", "response": {}}),
            json!({"id": "AQ", "rawId": "AQ", "type": "password", "response": {}}),
            json!({"id": "AQ", "rawId": "AQ", "type": "public-key", "response": "x"}),
        ];
        for cut in [0, 1, 10, attestation.len() / 2, attestation.len() - 1] {
            let mut broken = good.clone();
            broken["response"]["attestationObject"] = json!(to_base64url(&attestation[..cut]));
            cases.push(broken);
        }
        let mut trailing = good.clone();
        trailing["response"]["attestationObject"] =
            json!(to_base64url(&[attestation.clone(), vec![0]].concat()));
        cases.push(trailing);
        let mut garbage = good.clone();
        garbage["response"]["clientDataJSON"] = json!("%%%");
        cases.push(garbage);
        // A CBOR map with a key twice, and client data JSON with a key twice.
        let client = client_data("webauthn.create", &CHALLENGE, ORIGIN);
        let key = a.cose_key();
        let data = auth_data(RP_ID, SIGNED_IN | FLAG_ATTESTED, 0, Some((&a.id, &key)));
        let twice = cbor(&ciborium::Value::Map(vec![
            (text("fmt"), text("none")),
            (text("fmt"), text("packed")),
            (text("attStmt"), ciborium::Value::Map(vec![])),
            (text("authData"), ciborium::Value::Bytes(data.clone())),
        ]));
        cases.push(registration_json(&client, &twice, &a.id));
        let doubled = format!(
            r#"{{"type":"webauthn.create","type":"webauthn.get","challenge":"{}","origin":"{ORIGIN}"}}"#,
            to_base64url(&CHALLENGE)
        );
        cases.push(registration_json(doubled.as_bytes(), &attestation, &a.id));
        // Authenticator data: too short, and a credential id longer than what follows.
        cases.push(registration_json(
            &client,
            &attestation_object("none", ciborium::Value::Map(vec![]), vec![0; 36]),
            &a.id,
        ));
        let mut lying = data.clone();
        lying[53] = 0xff;
        cases.push(registration_json(
            &client,
            &attestation_object("none", ciborium::Value::Map(vec![]), lying),
            &a.id,
        ));
        // Deeply nested CBOR.
        let mut deep = ciborium::Value::Map(vec![]);
        for _ in 0..64 {
            deep = ciborium::Value::Array(vec![deep]);
        }
        cases.push(registration_json(&client, &cbor(&deep), &a.id));
        for (i, case) in cases.iter().enumerate() {
            let refusal = verify_registration(case, &expectation(&origins)).unwrap_err();
            assert!(refusal.is_malformed(), "case {i}: {refusal:?}");
            assert!(!refusal.message().is_empty());
        }
    }

    #[test]
    fn origins_and_relying_party_ids() {
        assert_eq!(
            normalize_origin("https://Login.Example.com").unwrap(),
            "https://login.example.com"
        );
        assert_eq!(
            normalize_origin("https://example.com:443").unwrap(),
            "https://example.com"
        );
        assert_eq!(
            normalize_origin("https://example.com:8443").unwrap(),
            "https://example.com:8443"
        );
        assert_eq!(
            normalize_origin("http://localhost:8080").unwrap(),
            "http://localhost:8080"
        );
        assert_eq!(
            normalize_origin("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        for refused in [
            "http://example.com",
            "https://example.com/",
            "https://example.com/login",
            "https://user@example.com",
            "https://example.com?x=1",
            "ftp://example.com",
            "example.com",
            "",
        ] {
            assert!(normalize_origin(refused).is_err(), "{refused}");
        }
        let allowed = vec![
            "https://login.example.com".to_string(),
            "http://localhost:8080".into(),
            "http://127.0.0.1:8080".into(),
        ];
        for valid in ["login.example.com", "example.com", "localhost", "127.0.0.1"] {
            assert!(rp_id_valid(valid, &allowed), "{valid}");
        }
        for invalid in [
            "com",
            "other.com",
            "xample.com",
            "m.login.example.com",
            "0.0.1",
            "",
            "example.com.evil.net",
        ] {
            assert!(!rp_id_valid(invalid, &allowed), "{invalid}");
        }
        let uk = vec!["https://shop.example.co.uk".to_string()];
        assert!(rp_id_valid("example.co.uk", &uk));
        assert!(!rp_id_valid("co.uk", &uk));
    }

    #[test]
    fn options_have_the_json_forms_browsers_parse() {
        let creation = creation_options(&CreationOptions {
            challenge: &CHALLENGE,
            rp_id: RP_ID,
            rp_name: "Example",
            user_handle: &HANDLE,
            user_name: "ann@example.com",
            user_display_name: "Ann",
            exclude_credentials: &[vec![1, 2, 3]],
            authenticator_attachment: None,
            user_verification: "required",
            timeout_ms: 300_000,
        });
        assert_eq!(
            from_base64url(creation["challenge"].as_str().unwrap()).unwrap(),
            CHALLENGE
        );
        assert_eq!(creation["rp"], json!({"id": RP_ID, "name": "Example"}));
        assert_eq!(creation["user"]["id"], json!(to_base64url(&HANDLE)));
        assert_eq!(
            creation["pubKeyCredParams"],
            json!([{"type": "public-key", "alg": -7}, {"type": "public-key", "alg": -8}, {"type": "public-key", "alg": -257}])
        );
        assert_eq!(
            creation["excludeCredentials"],
            json!([{"type": "public-key", "id": "AQID"}])
        );
        assert_eq!(
            creation["authenticatorSelection"]["residentKey"],
            "preferred"
        );
        assert_eq!(creation["attestation"], "none");
        let request = request_options(&CHALLENGE, RP_ID, &[vec![1, 2, 3]], "required", 300_000);
        assert_eq!(request["rpId"], RP_ID);
        assert_eq!(
            request["allowCredentials"],
            json!([{"type": "public-key", "id": "AQID"}])
        );
        assert_eq!(request["userVerification"], "required");
    }
}
