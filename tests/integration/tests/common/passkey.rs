//! A software authenticator (ES256 and EdDSA) that answers the options the database hands out
//! as a browser with a passkey would: `credential.toJSON()` of `navigator.credentials.create`
//! and `.get`.
#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use coset::{iana, CborSerializable, CoseKeyBuilder};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The origin the authenticator's "browser" is on, unless told otherwise.
pub const ORIGIN: &str = "https://app.passkeys.test";

pub enum Key {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_dalek::SigningKey),
}

/// A software authenticator: one credential, a signature counter, the origin its "browser" is on.
pub struct Authenticator {
    pub key: Key,
    pub credential_id: Vec<u8>,
    pub counter: u32,
    pub origin: String,
    pub user_handle: Option<Vec<u8>>,
}

impl Authenticator {
    pub fn es256() -> Self {
        let key = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        Self::with(Key::Es256(key))
    }

    pub fn eddsa() -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        Self::with(Key::EdDsa(key))
    }

    pub fn with(key: Key) -> Self {
        Authenticator {
            key,
            credential_id: rand::random::<[u8; 32]>().to_vec(),
            counter: 0,
            origin: ORIGIN.to_string(),
            user_handle: None,
        }
    }

    fn cose_key(&self) -> Vec<u8> {
        match &self.key {
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
                    iana::OkpKeyParameter::Crv as i64,
                    ciborium::Value::from(iana::EllipticCurve::Ed25519 as i64),
                )
                .param(
                    iana::OkpKeyParameter::X as i64,
                    ciborium::Value::Bytes(key.verifying_key().to_bytes().to_vec()),
                )
                .algorithm(iana::Algorithm::EdDSA)
                .build(),
        }
        .to_vec()
        .unwrap()
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer;
        match &self.key {
            Key::Es256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_der().as_bytes().to_vec()
            }
            Key::EdDsa(key) => {
                use ed25519_dalek::Signer as _;
                key.sign(message).to_bytes().to_vec()
            }
        }
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": false,
        }))
        .unwrap()
    }

    /// `navigator.credentials.create(options)`, then `credential.toJSON()`.
    pub fn register(&mut self, options: &Value) -> Value {
        let rp_id = options["rp"]["id"].as_str().unwrap();
        self.user_handle = B64.decode(options["user"]["id"].as_str().unwrap()).ok();
        let mut auth_data = Sha256::digest(rp_id.as_bytes()).to_vec();
        auth_data.push(0x01 | 0x04 | 0x40); // UP, UV, AT
        auth_data.extend(self.counter.to_be_bytes());
        auth_data.extend([0u8; 16]); // aaguid
        auth_data.extend((self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend(&self.credential_id);
        auth_data.extend(self.cose_key());
        let mut attestation = Vec::new();
        ciborium::into_writer(
            &ciborium::Value::Map(vec![
                ("fmt".into(), "none".into()),
                ("attStmt".into(), ciborium::Value::Map(vec![])),
                ("authData".into(), ciborium::Value::Bytes(auth_data)),
            ]),
            &mut attestation,
        )
        .unwrap();
        let id = B64.encode(&self.credential_id);
        json!({
            "id": id, "rawId": id, "type": "public-key",
            "response": {
                "clientDataJSON": B64.encode(self.client_data("webauthn.create", options["challenge"].as_str().unwrap())),
                "attestationObject": B64.encode(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        })
    }

    /// `navigator.credentials.get(options)`, then `credential.toJSON()`.
    pub fn assert(&mut self, options: &Value) -> Value {
        self.counter += 1;
        let mut auth_data = Sha256::digest(options["rpId"].as_str().unwrap().as_bytes()).to_vec();
        auth_data.push(0x01 | 0x04); // UP, UV
        auth_data.extend(self.counter.to_be_bytes());
        let client_data = self.client_data("webauthn.get", options["challenge"].as_str().unwrap());
        let signature = self.sign(&[auth_data.as_slice(), &Sha256::digest(&client_data)].concat());
        let id = B64.encode(&self.credential_id);
        json!({
            "id": id, "rawId": id, "type": "public-key",
            "response": {
                "clientDataJSON": B64.encode(client_data),
                "authenticatorData": B64.encode(auth_data),
                "signature": B64.encode(signature),
                "userHandle": self.user_handle.as_ref().map(|h| B64.encode(h)),
            },
            "clientExtensionResults": {},
        })
    }
}
