//! The administrators' reports (`members_search`, `events_search`): their filters, page sizes and
//! cursors, parsed and checked before any statement runs. A cursor is opaque to callers: the
//! base64url text of the last key of the page it follows (`e1:<event_id>`), for members with the
//! walk's total, counted once on its first page (`m1:<total>:<member_id>`).

use crate::core::policy::{truncate_for_message, validate_id, IdKind};
use crate::error::{err, ErrorType, MfaError, MfaResult};
use base64::Engine;
use serde_json::{Map, Value};

/// Rows a page holds when the caller does not say.
pub const DEFAULT_PAGE_SIZE: i32 = 100;
/// The most rows one page may hold.
pub const MAX_PAGE_SIZE: i32 = 1000;
/// The most event types one `event_type` filter may list.
pub const MAX_EVENT_TYPES: usize = 100;
/// The longest cursor accepted (a member id of 128 characters of 4 bytes, encoded, fits).
const MAX_CURSOR_LEN: usize = 1024;

/// The audit events that may tell of a successful second factor, whose newest is a member's last
/// MFA: a factor's own (a success with `"outcome": "success"`), or a login's, whose story lists
/// its factors (one of `SECOND_FACTOR_TYPES`). A new second factor adds its own to both.
pub const SECOND_FACTOR_EVENTS: [&str; 8] = [
    "totp.authenticate",
    "sms_otp.authenticate",
    "webauthn.authenticate",
    "recovery_codes.recover",
    "session.allowed",
    "session.stepped_up",
    "login.abandoned",
    "step_up.abandoned",
];
/// The `type`s of second factors in a login's story.
pub const SECOND_FACTOR_TYPES: [&str; 4] = ["totp", "otp", "webauthn", "recovery_codes"];

/// A page size: 1 to `MAX_PAGE_SIZE`, `DEFAULT_PAGE_SIZE` when NULL.
pub fn page_size(value: Option<i32>) -> MfaResult<i64> {
    match value.unwrap_or(DEFAULT_PAGE_SIZE) {
        n @ 1..=MAX_PAGE_SIZE => Ok(n as i64),
        n => err(
            ErrorType::InvalidPageSize,
            format!("page_size must be 1 to {MAX_PAGE_SIZE}, not {n}."),
        ),
    }
}

/// What `members_search` may filter on; `None` does not filter. Keys of the filter object:
/// `mfa_enrolled`, `has_totp`, `has_phone` (a verified phone), `has_passkey`, `locked`,
/// `breakglass`, `no_factor` (no active second factor), `last_mfa_before`, `last_mfa_after`
/// (RFC 3339 times). A JSON null is the same as an absent key.
///
/// A new factor adds its own key here, in `MEMBER_FILTER_KEYS`, in `parse` and in the
/// statement's factor columns (`store/sql/members_search.head.sql`), and counts in `no_factor`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemberFilter {
    pub mfa_enrolled: Option<bool>,
    pub has_totp: Option<bool>,
    pub has_phone: Option<bool>,
    pub has_passkey: Option<bool>,
    pub locked: Option<bool>,
    pub breakglass: Option<bool>,
    pub no_factor: Option<bool>,
    /// Microseconds since 2000-01-01 UTC (PostgreSQL's epoch).
    pub last_mfa_before: Option<i64>,
    pub last_mfa_after: Option<i64>,
}

const MEMBER_FILTER_KEYS: [&str; 9] = [
    "mfa_enrolled",
    "has_totp",
    "has_phone",
    "has_passkey",
    "locked",
    "breakglass",
    "no_factor",
    "last_mfa_before",
    "last_mfa_after",
];

impl MemberFilter {
    /// The filter object (SQL NULL: no filter).
    pub fn parse(filter: Option<&Value>) -> MfaResult<MemberFilter> {
        let object = filter_object(filter, &MEMBER_FILTER_KEYS)?;
        Ok(MemberFilter {
            mfa_enrolled: flag(&object, "mfa_enrolled")?,
            has_totp: flag(&object, "has_totp")?,
            has_phone: flag(&object, "has_phone")?,
            has_passkey: flag(&object, "has_passkey")?,
            locked: flag(&object, "locked")?,
            breakglass: flag(&object, "breakglass")?,
            no_factor: flag(&object, "no_factor")?,
            last_mfa_before: time(&object, "last_mfa_before")?,
            last_mfa_after: time(&object, "last_mfa_after")?,
        })
    }
}

/// What `events_search` may filter on; `None` does not filter. Keys of the filter object:
/// `member_id`, `event_type` (a type or an array of types), `after` (inclusive) and `before`
/// (exclusive), RFC 3339 times compared with the events' `occurred_at`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EventFilter {
    pub member_id: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub after: Option<i64>,
    pub before: Option<i64>,
}

const EVENT_FILTER_KEYS: [&str; 4] = ["member_id", "event_type", "after", "before"];

impl EventFilter {
    pub fn parse(filter: Option<&Value>) -> MfaResult<EventFilter> {
        let object = filter_object(filter, &EVENT_FILTER_KEYS)?;
        let member_id = match object.get("member_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(
                validate_id(Some(id), IdKind::Member)
                    .map_err(search_error)?
                    .to_string(),
            ),
            Some(_) => return Err(query_error("member_id must be a string.")),
        };
        let event_types = match object.get("event_type") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) => Some(vec![event_type(t)?]),
            Some(Value::Array(types)) if (1..=MAX_EVENT_TYPES).contains(&types.len()) => Some(
                types
                    .iter()
                    .map(|t| match t {
                        Value::String(t) => event_type(t),
                        _ => Err(query_error("event_type must list strings.")),
                    })
                    .collect::<MfaResult<Vec<String>>>()?,
            ),
            Some(_) => {
                return Err(query_error(format!(
                    "event_type must be a string or an array of 1 to {MAX_EVENT_TYPES} strings."
                )))
            }
        };
        Ok(EventFilter {
            member_id,
            event_types,
            after: time(&object, "after")?,
            before: time(&object, "before")?,
        })
    }
}

/// An event type as the audit trail names them (`totp.authenticate`): 1 to 64 characters of
/// `a-z`, `0-9`, `_` and `.`.
fn event_type(t: &str) -> MfaResult<String> {
    let shaped = (1..=64).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    if !shaped {
        return Err(query_error(format!(
            "{:?} is not an event type (such as \"totp.authenticate\").",
            truncate_for_message(t)
        )));
    }
    Ok(t.to_string())
}

/// The filter's object, every key known (SQL NULL: an empty one).
fn filter_object(filter: Option<&Value>, known: &[&str]) -> MfaResult<Map<String, Value>> {
    let object = match filter {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(object)) => object,
        Some(_) => return Err(query_error("filter must be a JSON object.")),
    };
    if let Some(unknown) = object.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(query_error(format!(
            "unknown filter {:?}; the filters are {}.",
            truncate_for_message(unknown),
            known.join(", ")
        )));
    }
    Ok(object.clone())
}

fn flag(object: &Map<String, Value>, key: &str) -> MfaResult<Option<bool>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(query_error(format!("{key} must be true or false."))),
    }
}

fn time(object: &Map<String, Value>, key: &str) -> MfaResult<Option<i64>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => parse_timestamp(text).map(Some).ok_or_else(|| {
            query_error(format!(
                "{key} must be an RFC 3339 time such as \"2026-01-31T12:00:00Z\", not {:?}.",
                truncate_for_message(text)
            ))
        }),
        Some(_) => Err(query_error(format!(
            "{key} must be an RFC 3339 time (a string)."
        ))),
    }
}

fn query_error(message: impl Into<String>) -> MfaError {
    MfaError::new(ErrorType::InvalidSearchQuery, message)
}

/// An id's error as a filter's.
fn search_error(mut e: MfaError) -> MfaError {
    e.error_type = ErrorType::InvalidSearchQuery;
    e
}

/// Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const POSTGRES_EPOCH_US: i64 = 946_684_800_000_000;

/// An RFC 3339 time (`2026-01-31T12:00:00Z`, `2026-01-31 12:00:00.5+01:00`, the form jsonb
/// gives a timestamptz; a bare date is midnight UTC) as microseconds since 2000-01-01 UTC.
/// Years 1 to 9999.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |at: usize, n: usize| -> Option<i64> {
        let part = b.get(at..at + n)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0i64, |v, d| v * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || year == 0 {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let date_us = days_from_civil(year, month, day) * 86_400_000_000;
    if b.len() == 10 {
        return Some(date_us - POSTGRES_EPOCH_US);
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    let (hour, minute) = (digits(11, 2)?, digits(14, 2)?);
    let mut at = 16;
    let mut second = 0;
    let mut micros = 0;
    if b.get(at) == Some(&b':') {
        second = digits(at + 1, 2)?;
        at += 3;
        if b.get(at) == Some(&b'.') {
            let start = at + 1;
            let mut end = start;
            while b.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
            if end == start || end - start > 9 {
                return None;
            }
            let fraction = &text[start..end];
            let padded = format!("{:0<6}", &fraction[..fraction.len().min(6)]);
            micros = padded.parse::<i64>().ok()?;
            at = end;
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let offset_us = match b.get(at) {
        Some(b'Z' | b'z') if b.len() == at + 1 => 0,
        Some(sign @ (b'+' | b'-')) => {
            let hours = digits(at + 1, 2)?;
            let minutes = match b.len() - at {
                3 => 0,
                6 if b[at + 3] == b':' => digits(at + 4, 2)?,
                5 => digits(at + 3, 2)?,
                _ => return None,
            };
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = (hours * 60 + minutes) * 60_000_000;
            if *sign == b'+' {
                offset
            } else {
                -offset
            }
        }
        _ => return None,
    };
    let time_us = ((hour * 60 + minute) * 60 + second) * 1_000_000 + micros;
    Some(date_us + time_us - offset_us - POSTGRES_EPOCH_US)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

const MEMBER_CURSOR: &str = "m1:";
const EVENT_CURSOR: &str = "e1:";

fn encode(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// The key after `prefix` in a cursor, if it is one of ours.
fn decode<'a>(cursor: &str, prefix: &str, buffer: &'a mut String) -> MfaResult<&'a str> {
    let invalid = || {
        MfaError::new(
            ErrorType::InvalidCursor,
            "cursor is not a next_cursor this search returned.",
        )
    };
    if cursor.is_empty() || cursor.len() > MAX_CURSOR_LEN {
        return Err(invalid());
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid())?;
    *buffer = String::from_utf8(bytes).map_err(|_| invalid())?;
    buffer.strip_prefix(prefix).ok_or_else(invalid)
}

/// The cursor of the members page that follows the member `last`, in a walk whose first page
/// counted `total` members.
pub fn member_cursor(total: i64, last: &str) -> String {
    encode(&format!("{MEMBER_CURSOR}{total}:{last}"))
}

/// The walk's total and the member id a members cursor follows.
pub fn parse_member_cursor(cursor: &str) -> MfaResult<(i64, String)> {
    let invalid = || {
        MfaError::new(
            ErrorType::InvalidCursor,
            "cursor is not a next_cursor this search returned.",
        )
    };
    let mut buffer = String::new();
    let rest = decode(cursor, MEMBER_CURSOR, &mut buffer)?;
    let (total, id) = rest.split_once(':').ok_or_else(invalid)?;
    let total = match total.parse::<i64>() {
        Ok(n) if n >= 0 && n.to_string() == total => n,
        _ => return Err(invalid()),
    };
    let id = validate_id(Some(id), IdKind::Member).map_err(|_| invalid())?;
    Ok((total, id.to_string()))
}

/// The cursor of the events page that follows (is older than) event `last`.
pub fn event_cursor(last: i64) -> String {
    encode(&format!("{EVENT_CURSOR}{last}"))
}

/// The event id an events cursor follows (written as `event_cursor` writes it: no sign, no
/// leading zero).
pub fn parse_event_cursor(cursor: &str) -> MfaResult<i64> {
    let mut buffer = String::new();
    let digits = decode(cursor, EVENT_CURSOR, &mut buffer)?;
    match digits.parse::<i64>() {
        Ok(id) if id > 0 && id.to_string() == digits => Ok(id),
        _ => err(
            ErrorType::InvalidCursor,
            "cursor is not a next_cursor this search returned.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn page_sizes_are_1_to_1000() {
        assert_eq!(page_size(None).unwrap(), 100);
        assert_eq!(page_size(Some(1)).unwrap(), 1);
        assert_eq!(page_size(Some(1000)).unwrap(), 1000);
        for bad in [0, -1, 1001, i32::MIN, i32::MAX] {
            let e = page_size(Some(bad)).unwrap_err();
            assert_eq!(e.error_type, ErrorType::InvalidPageSize);
        }
    }

    #[test]
    fn member_filters_are_checked() {
        assert_eq!(MemberFilter::parse(None).unwrap(), MemberFilter::default());
        assert_eq!(
            MemberFilter::parse(Some(&json!({}))).unwrap(),
            MemberFilter::default()
        );
        let f = MemberFilter::parse(Some(&json!({
            "mfa_enrolled": true, "has_totp": false, "has_phone": true, "locked": false,
            "breakglass": true, "no_factor": true, "last_mfa_before": "2000-01-01T00:00:01Z",
            "last_mfa_after": null
        })))
        .unwrap();
        assert_eq!(f.mfa_enrolled, Some(true));
        assert_eq!(f.has_totp, Some(false));
        assert_eq!(f.no_factor, Some(true));
        assert_eq!(f.last_mfa_before, Some(1_000_000));
        assert_eq!(f.last_mfa_after, None);
        for bad in [
            json!([]),
            json!("locked"),
            json!(1),
            json!({"locked": "yes"}),
            json!({"locked": 1}),
            json!({"has_passkey": "yes"}),
            json!({"Locked": true}),
            json!({"last_mfa_before": "yesterday"}),
            json!({"last_mfa_after": 1_700_000_000}),
            json!({"member_id": "ann"}),
        ] {
            let e = MemberFilter::parse(Some(&bad)).unwrap_err();
            assert_eq!(e.error_type, ErrorType::InvalidSearchQuery, "{bad}");
        }
    }

    #[test]
    fn event_filters_are_checked() {
        let f = EventFilter::parse(Some(&json!({
            "member_id": "ann", "event_type": "totp.authenticate",
            "after": "2026-01-01", "before": "2026-01-02T00:00:00+00:00"
        })))
        .unwrap();
        assert_eq!(f.member_id.as_deref(), Some("ann"));
        assert_eq!(f.event_types, Some(vec!["totp.authenticate".to_string()]));
        assert_eq!(f.before.unwrap() - f.after.unwrap(), 86_400_000_000);
        let f = EventFilter::parse(Some(&json!({"event_type": ["a.b", "c"]}))).unwrap();
        assert_eq!(f.event_types.unwrap().len(), 2);
        for bad in [
            json!({"member_id": ""}),
            json!({"member_id": "x".repeat(129)}),
            json!({"member_id": 7}),
            json!({"event_type": []}),
            json!({"event_type": [1]}),
            json!({"event_type": ["TOTP"]}),
            json!({"event_type": "a'; DROP"}),
            json!({"event_type": vec!["a"; MAX_EVENT_TYPES + 1]}),
            json!({"after": "2026-13-01"}),
            json!({"organization_id": "x"}),
            json!({"locked": true}),
        ] {
            let e = EventFilter::parse(Some(&bad)).unwrap_err();
            assert_eq!(e.error_type, ErrorType::InvalidSearchQuery, "{bad}");
        }
    }

    #[test]
    fn timestamps_are_rfc_3339() {
        let t = |s: &str| parse_timestamp(s);
        assert_eq!(t("2000-01-01T00:00:00Z"), Some(0));
        assert_eq!(t("2000-01-01"), Some(0));
        assert_eq!(t("2000-01-01 00:00:00+00:00"), Some(0));
        assert_eq!(t("2000-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(t("1999-12-31T23:00:00-01:00"), Some(0));
        assert_eq!(t("2000-01-01T00:00:00.5Z"), Some(500_000));
        assert_eq!(t("2000-01-01T00:00:00.123456789Z"), Some(123_456));
        assert_eq!(t("2000-01-01T00:01Z"), Some(60_000_000));
        assert_eq!(t("2000-01-01T00:00:00+0100"), Some(-3_600_000_000));
        assert_eq!(t("2000-03-01T00:00:00Z"), Some(60 * 86_400_000_000));
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(-POSTGRES_EPOCH_US));
        // 2026-05-03T10:00:00.123456+00:00, as jsonb prints a timestamptz.
        assert_eq!(
            t("2026-05-03T10:00:00.123456+00:00"),
            Some(1_777_802_400_123_456 - POSTGRES_EPOCH_US)
        );
        for bad in [
            "",
            "2026",
            "2026-02-30",
            "2025-02-29T00:00:00Z",
            "0000-01-01",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00Zjunk",
            "2026-01-01T00:00:00+25:00",
            "２０２６-01-01",
            "+2026-01-01",
            "2026-1-1",
            "now",
            "infinity",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
        assert!(t("2024-02-29T00:00:00Z").is_some());
        assert!(t("9999-12-31T23:59:59Z").is_some());
    }

    #[test]
    fn cursors_round_trip_and_are_checked() {
        for id in ["ann", "ß🔐", "a:b", &"x".repeat(128)] {
            let (total, parsed) = parse_member_cursor(&member_cursor(7, id)).unwrap();
            assert_eq!((total, parsed.as_str()), (7, id));
        }
        assert_eq!(parse_event_cursor(&event_cursor(42)).unwrap(), 42);
        assert_eq!(
            parse_event_cursor(&event_cursor(i64::MAX)).unwrap(),
            i64::MAX
        );
        let bad = [
            String::new(),
            "not base64!".to_string(),
            "YW5u".to_string(), // "ann", without a prefix
            event_cursor(42),   // another search's
            encode("m1:"),
            encode("m1:ann"),
            encode("m1:3:"),
            encode("m1:-3:ann"),
            encode("m1:03:ann"),
            encode(":ann"),
            encode(&format!("m1:3:{}", "x".repeat(129))),
            encode("m1:3:a\u{7}b"),
            "A".repeat(2000),
            "bTE6YW5u====".to_string(),
        ];
        for cursor in &bad {
            let e = parse_member_cursor(cursor).unwrap_err();
            assert_eq!(e.error_type, ErrorType::InvalidCursor, "{cursor}");
        }
        for cursor in [
            member_cursor(1, "ann"),
            encode("e1:0"),
            encode("e1:-5"),
            encode("e1:007"),
            encode("e1:+7"),
            encode("e1:9223372036854775808"),
            encode("e1:"),
        ] {
            let e = parse_event_cursor(&cursor).unwrap_err();
            assert_eq!(e.error_type, ErrorType::InvalidCursor, "{cursor}");
        }
    }
}
