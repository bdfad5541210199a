//! Phone numbers: parsing to E.164, deciding the country from the whole number, and the country
//! rules of the SMS allowlist.
//!
//! The country of a number is never read off its calling code: +1 is shared by the US, Canada and
//! most of the Caribbean, +44 by the UK, Jersey, Guernsey and the Isle of Man, +7 by Russia and
//! Kazakhstan, +262 by Réunion and Mayotte, +599 by Curaçao and the Caribbean Netherlands, and so
//! on. libphonenumber's metadata (the `phonenumber` crate) resolves the region from the national
//! number's leading digits.

use crate::error::{err, ErrorType, MfaError, MfaResult};
use phonenumber::{Mode, PhoneNumber, Type};
use std::collections::BTreeSet;

/// A phone number that parsed, is valid, and can receive an SMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPhone {
    /// E.164, e.g. `+15555550123`.
    pub e164: String,
    /// ISO 3166-1 alpha-2 of the region the number belongs to, e.g. `CA`.
    pub country_code: String,
}

impl ParsedPhone {
    /// The block of 10,000 numbers this one belongs to (all digits but the last four), the unit of
    /// the per-prefix send limit that stops SMS pumping through a range of premium numbers.
    pub fn rate_limit_prefix(&self) -> &str {
        Self::rate_limit_prefix_of(&self.e164)
    }

    /// `rate_limit_prefix` of a stored E.164 number.
    pub fn rate_limit_prefix_of(e164: &str) -> &str {
        e164.get(..e164.len().saturating_sub(4)).unwrap_or("")
    }

    /// The number as shown back to a member at login: all but the last four digits hidden.
    pub fn masked(&self) -> String {
        mask_e164(&self.e164)
    }
}

/// `+15555550123` → `+*******0123`.
pub fn mask_e164(e164: &str) -> String {
    let visible = 4.min(e164.len().saturating_sub(1));
    let hidden = e164.len().saturating_sub(1 + visible);
    format!("+{}{}", "*".repeat(hidden), &e164[e164.len() - visible..])
}

const MAX_INPUT_LENGTH: usize = 64;

/// Parses an international number (it must start with `+`; spaces, dots, dashes and parentheses
/// are allowed as separators) into E.164 with its region. Letters (vanity numbers), extensions and
/// numbers that cannot receive an SMS (landline-only, premium rate, toll free, shared cost, pager,
/// UAN, voicemail) are refused with `invalid_phone_number`.
pub fn parse_phone_number(input: &str) -> MfaResult<ParsedPhone> {
    let invalid = |why: &str| MfaError::new(ErrorType::InvalidPhoneNumber, why.to_string());
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(invalid("The phone number is empty."));
    }
    if trimmed.len() > MAX_INPUT_LENGTH {
        return Err(invalid("The phone number is too long."));
    }
    if !trimmed.starts_with('+') {
        return Err(invalid(
            "The phone number must be in international format, starting with + and the country calling code (E.164).",
        ));
    }
    if !trimmed[1..]
        .chars()
        .all(|c| c.is_ascii_digit() || " -.()".contains(c))
    {
        return Err(invalid(
            "The phone number may contain only digits after the +, with spaces, dots, dashes or parentheses as separators.",
        ));
    }
    let number: PhoneNumber = phonenumber::parse(None, trimmed)
        .map_err(|_| invalid("The phone number could not be parsed."))?;
    if !phonenumber::is_valid(&number) {
        return Err(invalid(
            "The phone number is not a valid number for any country.",
        ));
    }
    let country_code = number
        .country()
        .id()
        .map(|id| format!("{id:?}"))
        .ok_or_else(|| invalid("The phone number does not belong to a single country."))?;
    match number.number_type(&phonenumber::metadata::DATABASE) {
        Type::Mobile
        | Type::FixedLineOrMobile
        | Type::Voip
        | Type::PersonalNumber
        | Type::Unknown => {}
        other => {
            return Err(invalid(&format!(
                "The phone number cannot receive SMS messages (it is a {} number).",
                describe_type(other)
            )))
        }
    }
    Ok(ParsedPhone {
        e164: number.format().mode(Mode::E164).to_string(),
        country_code,
    })
}

fn describe_type(t: Type) -> &'static str {
    match t {
        Type::FixedLine => "landline",
        Type::TollFree => "toll-free",
        Type::PremiumRate => "premium-rate",
        Type::SharedCost => "shared-cost",
        Type::Pager => "pager",
        Type::Uan => "universal access",
        Type::Voicemail => "voicemail",
        _ => "non-mobile",
    }
}

/// Forces the phone metadata to load and its regular expressions to compile, so that the first
/// number a backend parses does not pay for it (called in the postmaster when preloaded).
pub fn warm_up() {
    for sample in [
        "+15555550123",
        "+14165550123",
        "+447700900123",
        "+33612345678",
    ] {
        let _ = parse_phone_number(sample);
    }
}

/// Countries where SMS is never sent (the seed's table), with the territories its row names
/// include: "China – including Hong Kong" (HK), "Curaçao and Caribbean Netherlands" (BQ),
/// "Reunion/Mayotte" (YT). Sorted.
pub const UNSUPPORTED_SMS_COUNTRIES: &[&str] = &[
    "AD", "AE", "AF", "AL", "AM", "AO", "AQ", "AW", "AZ", "BA", "BB", "BD", "BH", "BI", "BM", "BQ",
    "BS", "BT", "BV", "BW", "BY", "BZ", "CD", "CI", "CN", "CU", "CV", "CW", "CY", "DJ", "DM", "DZ",
    "EE", "EG", "ER", "ET", "FJ", "FM", "FO", "GA", "GE", "GI", "GL", "GM", "GN", "GP", "GQ", "GS",
    "GU", "HK", "HM", "HN", "HT", "ID", "IL", "IQ", "IR", "JE", "JO", "KG", "KH", "KM", "KP", "KW",
    "KY", "KZ", "LA", "LB", "LK", "LR", "LS", "LY", "MA", "MD", "MG", "MK", "ML", "MM", "MN", "MO",
    "MP", "MQ", "MS", "MV", "MW", "MY", "MZ", "NA", "NC", "NE", "NG", "NP", "NU", "OM", "PF", "PG",
    "PH", "PK", "PN", "PS", "QA", "RE", "RS", "RU", "RW", "SA", "SB", "SD", "SG", "SL", "SN", "SO",
    "SY", "TC", "TD", "TF", "TG", "TH", "TJ", "TL", "TM", "TN", "TO", "TV", "UG", "UM", "UZ", "VC",
    "VE", "VG", "VI", "VN", "VU", "WF", "WS", "XK", "YE", "YT", "ZM", "ZW",
];

/// ISO 3166-1 alpha-2 codes of countries and territories, plus XK (Kosovo), which the seed's
/// table and libphonenumber both use. Sorted.
const COUNTRY_CODES: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "XK", "YE", "YT", "ZA", "ZM", "ZW",
];

pub fn is_country_code(code: &str) -> bool {
    COUNTRY_CODES.binary_search(&code).is_ok()
}

pub fn is_sms_unsupported(code: &str) -> bool {
    UNSUPPORTED_SMS_COUNTRIES.binary_search(&code).is_ok()
}

/// Normalizes a requested allowlist: upper-cased, de-duplicated, sorted. Refuses an empty list
/// (`country_code_allowlist_empty`) and names every code that is not a country or where SMS is
/// never sent (`country_code_allowlist_invalid_country_codes`).
pub fn normalize_allowlist<'a>(
    codes: impl IntoIterator<Item = Option<&'a str>>,
) -> MfaResult<Vec<String>> {
    let mut wanted = BTreeSet::new();
    let mut offending = BTreeSet::new();
    for code in codes {
        let Some(code) = code else {
            offending.insert("NULL".to_string());
            continue;
        };
        let upper = code.trim().to_ascii_uppercase();
        if is_country_code(&upper) && !is_sms_unsupported(&upper) {
            wanted.insert(upper);
        } else {
            offending.insert(if upper.is_empty() {
                "''".to_string()
            } else {
                upper
            });
        }
    }
    if !offending.is_empty() {
        let list: Vec<String> = offending.into_iter().collect();
        return err(
            ErrorType::CountryCodeAllowlistInvalidCountryCodes,
            format!(
                "These country codes are not ISO 3166-1 alpha-2 countries or are countries where SMS is not sent: {}.",
                list.join(", ")
            ),
        );
    }
    if wanted.is_empty() {
        return err(
            ErrorType::CountryCodeAllowlistEmpty,
            "The country code allowlist cannot be empty.",
        );
    }
    Ok(wanted.into_iter().collect())
}

/// Refuses a number whose country is not on the allowlist, or where SMS is never sent.
pub fn check_sms_country(phone: &ParsedPhone, allowlist: &[String]) -> MfaResult<()> {
    if is_sms_unsupported(&phone.country_code)
        || !allowlist.iter().any(|c| c == &phone.country_code)
    {
        return err(
            ErrorType::InvalidPhoneNumberCountryCode,
            format!(
                "SMS messages cannot be sent to numbers of country {}; the allowlist is {{{}}}.",
                phone.country_code,
                allowlist.join(",")
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn country(n: &str) -> String {
        parse_phone_number(n)
            .unwrap_or_else(|e| panic!("{n}: {e}"))
            .country_code
    }

    #[test]
    fn code_lists_are_sorted_and_consistent() {
        assert!(COUNTRY_CODES.windows(2).all(|w| w[0] < w[1]));
        assert!(UNSUPPORTED_SMS_COUNTRIES.windows(2).all(|w| w[0] < w[1]));
        for c in UNSUPPORTED_SMS_COUNTRIES {
            assert!(is_country_code(c), "{c} is not in the country list");
        }
        assert_eq!(COUNTRY_CODES.len(), 250);
    }

    #[test]
    fn parses_to_e164_with_separators() {
        let p = parse_phone_number(" +1 (415) 555-2671 ").unwrap();
        assert_eq!(p.e164, "+14155552671");
        assert_eq!(p.country_code, "US");
        assert_eq!(p.masked(), "+*******2671");
        assert_eq!(p.rate_limit_prefix(), "+1415555");
    }

    #[test]
    fn shared_calling_codes_resolve_to_the_right_country() {
        assert_eq!(country("+14165550123"), "CA"); // Toronto
        assert_eq!(country("+12125550123"), "US"); // New York
        assert_eq!(country("+12423570123"), "BS"); // Bahamas, +1 242
        assert_eq!(country("+12462345678"), "BB"); // Barbados
        assert_eq!(country("+14412345678"), "BM"); // Bermuda
        assert_eq!(country("+12845412345"), "VG"); // British Virgin Islands
        assert_eq!(country("+13453231234"), "KY"); // Cayman Islands
        assert_eq!(country("+17672251234"), "DM"); // Dominica
        assert_eq!(country("+16712345678"), "GU"); // Guam
        assert_eq!(country("+16702345678"), "MP"); // Northern Mariana Islands
        assert_eq!(country("+16644923456"), "MS"); // Montserrat
        assert_eq!(country("+17844301234"), "VC"); // St Vincent
        assert_eq!(country("+16492311234"), "TC"); // Turks and Caicos
        assert_eq!(country("+13406421234"), "VI"); // US Virgin Islands
        assert_eq!(country("+18765101234"), "JM"); // Jamaica, allowed by the seed
        assert_eq!(country("+447400123456"), "GB");
        assert_eq!(country("+447797712345"), "JE"); // Jersey mobile
        assert_eq!(country("+447781123456"), "GG"); // Guernsey mobile
        assert_eq!(country("+79123456789"), "RU");
        assert_eq!(country("+77710009998"), "KZ");
        assert_eq!(country("+17215205678"), "SX"); // Sint Maarten, +1 721
        assert_eq!(country("+17872345678"), "PR"); // Puerto Rico
        assert_eq!(country("+262692123456"), "RE");
        assert_eq!(country("+262639012345"), "YT"); // Mayotte
        assert_eq!(country("+59995181234"), "CW");
        assert_eq!(country("+5993181234"), "BQ"); // Bonaire
        assert_eq!(country("+4741234567"), "NO");
        assert_eq!(country("+4791234567"), "NO");
        assert_eq!(country("+85251234567"), "HK");
        assert_eq!(country("+8613123456789"), "CN");
        assert_eq!(country("+33612345678"), "FR");
        assert_eq!(country("+4915123456789"), "DE");
    }

    #[test]
    fn refuses_what_is_not_a_mobile_number() {
        for bad in [
            "",
            "   ",
            "4155552671",
            "+1415555267",
            "+141555526711",
            "+1-800-FLOWERS",
            "+1 415 555 2671 ext. 5",
            "+",
            "++14155552671",
            "+0123456789",
            "+999123456789",
            "+18005550123",
            "+19005550123",
            "+442079460123",
            "+1415555267\u{0661}",
            "+１４１５５５５２６７１",
        ] {
            let e = parse_phone_number(bad).unwrap_err();
            assert_eq!(e.error_type, ErrorType::InvalidPhoneNumber, "{bad:?}");
        }
        assert!(parse_phone_number(&format!("+1{}", "5".repeat(100))).is_err());
    }

    #[test]
    fn allowlist_normalizes_and_refuses() {
        let ok = normalize_allowlist([Some("us"), Some("CA"), Some(" ca "), Some("De")]).unwrap();
        assert_eq!(ok, vec!["CA", "DE", "US"]);
        let e = normalize_allowlist([Some("US"), Some("RU"), Some("ZZ"), Some("HK"), Some("BQ")])
            .unwrap_err();
        assert_eq!(
            e.error_type,
            ErrorType::CountryCodeAllowlistInvalidCountryCodes
        );
        assert!(e.message.ends_with("BQ, HK, RU, ZZ."), "{}", e.message);
        let e = normalize_allowlist(Vec::<Option<&str>>::new()).unwrap_err();
        assert_eq!(e.error_type, ErrorType::CountryCodeAllowlistEmpty);
        let e = normalize_allowlist([None, Some("")]).unwrap_err();
        assert!(e.message.ends_with("'', NULL."), "{}", e.message);
    }

    #[test]
    fn sms_country_check_uses_the_whole_number() {
        let allow = vec!["CA".to_string(), "US".to_string()];
        assert!(check_sms_country(&parse_phone_number("+14165550123").unwrap(), &allow).is_ok());
        let bahamas = parse_phone_number("+12423570123").unwrap();
        let e = check_sms_country(&bahamas, &allow).unwrap_err();
        assert_eq!(e.error_type, ErrorType::InvalidPhoneNumberCountryCode);
        let jersey = parse_phone_number("+447797712345").unwrap();
        let with_gb = vec!["GB".to_string()];
        assert!(check_sms_country(&jersey, &with_gb).is_err());
        assert!(check_sms_country(&parse_phone_number("+447400123456").unwrap(), &with_gb).is_ok());
    }

    #[test]
    fn masks_short_and_long_numbers() {
        assert_eq!(mask_e164("+4741234567"), "+******4567");
        assert_eq!(mask_e164("+12"), "+12");
    }
}
