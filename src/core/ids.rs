//! Identifiers this extension makes: registration ids, request ids, and the clock TOTP steps follow.

/// Seconds since the Unix epoch, from the system clock (TOTP steps follow real time, not the
/// transaction's start).
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A random (version 4) UUID in text form, for identifiers that must not reveal when they were made.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A time-ordered (version 7) UUID in text form, for request ids: consecutive requests get
/// neighbouring ids, so the audit trail's `events_request` index grows at its right edge instead
/// of dirtying a random leaf page per event (with a random id, most audit inserts after a
/// checkpoint wrote a full-page image into the WAL).
pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The id of a recovery code (Stytch's `totp_recovery_code_id`), made from its stored keyed hash
/// by a one-way function: the same code has the same id wherever it is named, and the id tells
/// nothing of the code or of its hash. A version 8 (custom) UUID in text form.
pub fn recovery_code_id(code_hash: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"mfa recovery code id\0")
        .chain_update(code_hash)
        .finalize();
    let mut bytes: [u8; 16] = digest[..16].try_into().expect("16 bytes");
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(bytes).to_string()
}

/// A request id as the 16 bytes of its UUID.
pub fn request_id_bytes(id: &str) -> [u8; 16] {
    uuid::Uuid::parse_str(id)
        .map(|u| u.into_bytes())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn registration_ids_are_random_uuids() {
        let u = super::new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!("89ab".contains(&u[19..20]));
        assert_ne!(u, super::new_uuid());
    }

    #[test]
    fn recovery_code_ids_are_one_way_uuids_of_their_hash() {
        let id = super::recovery_code_id(&[1; 32]);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "8");
        assert!("89ab".contains(&id[19..20]));
        assert_eq!(id, super::recovery_code_id(&[1; 32]));
        assert_ne!(id, super::recovery_code_id(&[2; 32]));
    }

    #[test]
    fn request_ids_are_time_ordered_uuids() {
        let ids: Vec<String> = (0..1000).map(|_| super::new_request_id()).collect();
        assert!(ids.iter().all(|u| u.len() == 36 && &u[14..15] == "7"));
        assert!(ids.iter().all(|u| "89ab".contains(&u[19..20])));
        // Text order is creation order, the property the index relies on.
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
