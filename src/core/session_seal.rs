//! Seals on the factors the session gate writes: each factor carries a MAC, keyed with the
//! server's key, over the session's organization, its member and the factor itself. A row that
//! got past the triggers by any means (a hole, a superuser's maintenance, a restore with triggers
//! off) or factors copied from another member's session carry no assurance, because only the
//! gate can make a seal that verifies for that organization and member.

use crate::core::crypto::{constant_time_eq, Keys};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

/// The key of a factor object that holds its seal: `<key fingerprint>.<base64url MAC>`.
pub const SEAL_FIELD: &str = "mfa_seal";
const CONTEXT: &[u8] = b"mfa session factor v1";

/// The bytes a seal covers: the context, the organization and the member (each length-prefixed,
/// so no two pairs run together the same way) and the factor without its seal, with the keys of
/// every object in sorted order (jsonb reorders keys; the seal must not depend on it).
///
/// The times an answer adds (`core::factor::answered`) are left out where they say nothing the
/// factor does not: `updated_at` (its `last_authenticated_at`) always, `created_at` when it is
/// `last_authenticated_at`. So a factor sealed before they were answered, the stored one and the
/// answered one all verify, and a `created_at` that differs from what was sealed does not.
fn sealed_bytes(organization_id: &str, member_id: &str, factor: &Map<String, Value>) -> Vec<u8> {
    let mut out = CONTEXT.to_vec();
    for part in [organization_id, member_id] {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    let mut unsealed = factor.clone();
    unsealed.remove(SEAL_FIELD);
    unsealed.remove("updated_at");
    if unsealed.get("created_at") == unsealed.get("last_authenticated_at") {
        unsealed.remove("created_at");
    }
    canonical(&Value::Object(unsealed), &mut out);
    out
}

fn canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(key.clone()).to_string().as_bytes());
                out.push(b':');
                canonical(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

/// The factor with a fresh seal for this organization and member (a factor that is not an
/// object is left as it is: it never counts).
pub fn seal(keys: &Keys, organization_id: &str, member_id: &str, factor: Value) -> Value {
    let Value::Object(mut map) = factor else {
        return factor;
    };
    let mac = keys.seal_mac(&sealed_bytes(organization_id, member_id, &map));
    map.insert(
        SEAL_FIELD.into(),
        Value::String(format!(
            "{}.{}",
            keys.fingerprint_hex(),
            URL_SAFE_NO_PAD.encode(mac)
        )),
    );
    Value::Object(map)
}

/// The factors of `factors` (a session's column) whose seal verifies for this organization and
/// member, with whichever known key made it (`key` finds a key by fingerprint). Anything else —
/// no seal, another member's, an altered factor, a retired key, not an array — is left out.
pub fn verified(
    organization_id: &str,
    member_id: &str,
    factors: &Value,
    mut key: impl FnMut(&str) -> Option<Keys>,
) -> Vec<Value> {
    let Some(factors) = factors.as_array() else {
        return Vec::new();
    };
    factors
        .iter()
        .filter(|factor| {
            let Some(map) = factor.as_object() else {
                return false;
            };
            let Some((fingerprint, mac)) = map
                .get(SEAL_FIELD)
                .and_then(Value::as_str)
                .and_then(|s| s.split_once('.'))
            else {
                return false;
            };
            let (Some(keys), Ok(mac)) = (key(fingerprint), URL_SAFE_NO_PAD.decode(mac)) else {
                return false;
            };
            let expected = keys.seal_mac(&sealed_bytes(organization_id, member_id, map));
            constant_time_eq(&expected, &mac)
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(byte: u8) -> Keys {
        Keys::from_master(&[byte; 32])
    }

    fn known(k: &Keys) -> impl FnMut(&str) -> Option<Keys> + '_ {
        move |fingerprint| (fingerprint == k.fingerprint_hex()).then(|| k.clone())
    }

    fn totp() -> Value {
        json!({"type": "totp", "delivery_method": "authenticator_app",
               "last_authenticated_at": "2026-12-05T10:00:00Z"})
    }

    #[test]
    fn the_answered_times_keep_a_seal_verifiable() {
        let k = keys(1);
        // Sealed as 0.9.0 sealed it, without times.
        let sealed = seal(&k, "org", "ann", totp());
        let mut answered = sealed.clone();
        answered["created_at"] = answered["last_authenticated_at"].clone();
        answered["updated_at"] = answered["last_authenticated_at"].clone();
        assert_eq!(
            verified("org", "ann", &json!([answered.clone()]), known(&k)).len(),
            1
        );
        // A created_at that is not the sealed one does not verify.
        answered["created_at"] = "2001-01-01T00:00:00Z".into();
        assert!(verified("org", "ann", &json!([answered]), known(&k)).is_empty());
        // A factor a step-up authenticated again is sealed with its first authentication.
        let mut again = totp();
        again["created_at"] = "2026-12-05T09:00:00Z".into();
        let sealed = seal(&k, "org", "ann", again);
        let mut answered = sealed.clone();
        answered["updated_at"] = answered["last_authenticated_at"].clone();
        assert_eq!(
            verified("org", "ann", &json!([sealed, answered.clone()]), known(&k)).len(),
            2
        );
        answered["created_at"] = answered["last_authenticated_at"].clone();
        assert!(verified("org", "ann", &json!([answered]), known(&k)).is_empty());
    }

    #[test]
    fn a_seal_verifies_for_its_member_only() {
        let k = keys(1);
        let sealed = json!([seal(&k, "org", "ann", totp())]);
        assert_eq!(verified("org", "ann", &sealed, known(&k)).len(), 1);
        assert!(verified("org", "bob", &sealed, known(&k)).is_empty());
        assert!(verified("org2", "ann", &sealed, known(&k)).is_empty());
        // The length prefixes: ("or", "gann") is another pair than ("org", "ann").
        assert!(verified("or", "gann", &sealed, known(&k)).is_empty());
    }

    #[test]
    fn an_altered_unsealed_or_foreign_factor_does_not_verify() {
        let k = keys(1);
        let mut sealed = seal(&k, "org", "ann", totp());
        let unsealed = json!([totp()]);
        assert!(verified("org", "ann", &unsealed, known(&k)).is_empty());
        assert!(verified(
            "org",
            "ann",
            &json!([seal(&keys(2), "org", "ann", totp())]),
            known(&k)
        )
        .is_empty());
        sealed["last_authenticated_at"] = "2099-01-01T00:00:00Z".into();
        assert!(verified("org", "ann", &json!([sealed]), known(&k)).is_empty());
        assert!(verified("org", "ann", &json!({"type": "totp"}), known(&k)).is_empty());
        assert!(verified("org", "ann", &Value::Null, known(&k)).is_empty());
    }

    #[test]
    fn key_order_and_a_resealed_factor_do_not_matter() {
        let k = keys(1);
        let sealed = seal(&k, "org", "ann", totp());
        // jsonb gives the keys back in its own order: the seal covers the sorted form.
        let reordered: Value = serde_json::from_str(&format!(
            r#"{{"mfa_seal": {}, "last_authenticated_at": "2026-12-05T10:00:00Z", "delivery_method": "authenticator_app", "type": "totp"}}"#,
            sealed[SEAL_FIELD]
        ))
        .unwrap();
        assert_eq!(
            verified("org", "ann", &json!([reordered]), known(&k)).len(),
            1
        );
        // Sealing a sealed factor replaces its seal.
        let twice = seal(&k, "org", "ann", sealed.clone());
        assert_eq!(twice, sealed);
    }
}
