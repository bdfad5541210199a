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
    fn request_ids_are_time_ordered_uuids() {
        let ids: Vec<String> = (0..1000).map(|_| super::new_request_id()).collect();
        assert!(ids.iter().all(|u| u.len() == 36 && &u[14..15] == "7"));
        assert!(ids.iter().all(|u| "89ab".contains(&u[19..20])));
        // Text order is creation order, the property the index relies on.
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
