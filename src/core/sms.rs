//! SMS one-time passcodes: the code, its localized text, and scrubbing it from a delivered
//! message. Pure logic; `store::sms` keeps codes and sends, `api::sms` is the SQL surface.

use crate::core::crypto::random_numeric_code;

pub const CODE_DIGITS: u32 = 6;

/// The locales Stytch supports for SMS texts; anything else falls back to English.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    En,
    Es,
    PtBr,
    Fr,
    It,
    DeDe,
    ZhHans,
    CaEs,
}

impl Locale {
    /// Case-insensitive; `_` and `-` are the same; an unknown tag is English.
    pub fn from_tag(tag: &str) -> Locale {
        match tag.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "es" => Locale::Es,
            "pt-br" => Locale::PtBr,
            "fr" => Locale::Fr,
            "it" => Locale::It,
            "de-de" => Locale::DeDe,
            "zh-hans" => Locale::ZhHans,
            "ca-es" => Locale::CaEs,
            _ => Locale::En,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Es => "es",
            Locale::PtBr => "pt-br",
            Locale::Fr => "fr",
            Locale::It => "it",
            Locale::DeDe => "de-DE",
            Locale::ZhHans => "zh-Hans",
            Locale::CaEs => "ca-ES",
        }
    }
}

/// A new code: uniformly random digits from the operating system's generator.
pub fn new_code() -> String {
    random_numeric_code(CODE_DIGITS)
}

/// The text of the SMS carrying `code`, valid for `minutes`.
/// What stands for the code in a stored message text: the code itself is kept encrypted beside it
/// and put in only when a worker claims the message, so no table, dump or backup holds it in clear.
pub const CODE_PLACEHOLDER: &str = "******";

/// A code in a message body, as a regular expression. Erasing a message's code replaces every
/// match with the placeholder (bodies queued by 0.1.0 held the code itself).
pub fn code_pattern() -> String {
    format!("[0-9]{{{CODE_DIGITS}}}")
}

/// A message's code is encrypted bound to its destination: moved to another row, it does not
/// decrypt.
pub fn outbox_associated_data(
    organization_id: &str,
    member_id: &str,
    phone_number: &str,
) -> Vec<u8> {
    ["sms-outbox", organization_id, member_id, phone_number]
        .join("\0")
        .into_bytes()
}

pub fn message_text(locale: Locale, code: &str, minutes: u32) -> String {
    match locale {
        Locale::En => format!("Your verification code is {code}. It expires in {minutes} minutes. Do not share it."),
        Locale::Es => format!("Tu código de verificación es {code}. Caduca en {minutes} minutos. No lo compartas."),
        Locale::PtBr => format!("Seu código de verificação é {code}. Ele expira em {minutes} minutos. Não o compartilhe."),
        Locale::Fr => format!("Votre code de vérification est {code}. Il expire dans {minutes} minutes. Ne le partagez pas."),
        Locale::It => format!("Il tuo codice di verifica è {code}. Scade tra {minutes} minuti. Non condividerlo."),
        Locale::DeDe => format!("Ihr Bestätigungscode lautet {code}. Er läuft in {minutes} Minuten ab. Geben Sie ihn nicht weiter."),
        Locale::ZhHans => format!("您的验证码是 {code}，{minutes} 分钟内有效。请勿告诉他人。"),
        Locale::CaEs => format!("El teu codi de verificació és {code}. Caduca en {minutes} minuts. No el comparteixis."),
    }
}

/// Minutes shown in the text for a lifetime in seconds (rounded up, at least one).
pub fn lifetime_minutes(seconds: i32) -> u32 {
    (seconds.max(1) as u32).div_ceil(60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_and_the_pattern_follow_the_code_length() {
        assert_eq!(CODE_PLACEHOLDER.len(), CODE_DIGITS as usize);
        assert_eq!(code_pattern(), "[0-9]{6}");
        assert_eq!(new_code().len(), CODE_DIGITS as usize);
    }

    #[test]
    fn locales_fall_back_to_english() {
        assert_eq!(Locale::from_tag("pt-BR"), Locale::PtBr);
        assert_eq!(Locale::from_tag("de_de"), Locale::DeDe);
        assert_eq!(Locale::from_tag("zh-hans"), Locale::ZhHans);
        assert_eq!(Locale::from_tag("ca-ES"), Locale::CaEs);
        assert_eq!(Locale::from_tag("klingon"), Locale::En);
        assert_eq!(Locale::from_tag(""), Locale::En);
    }

    #[test]
    fn every_text_carries_the_code_once() {
        for locale in [
            Locale::En,
            Locale::Es,
            Locale::PtBr,
            Locale::Fr,
            Locale::It,
            Locale::DeDe,
            Locale::ZhHans,
            Locale::CaEs,
        ] {
            let text = message_text(locale, "042917", 2);
            assert_eq!(text.matches("042917").count(), 1, "{text}");
            assert!(text.contains('2'), "{text}");
            // The outbox scrubs a sent message by replacing the six-digit run; no other may exist.
            assert_eq!(
                text.chars().filter(|c| c.is_ascii_digit()).count(),
                7,
                "{text}"
            );
        }
        assert_ne!(
            message_text(Locale::Fr, "1", 2),
            message_text(Locale::En, "1", 2)
        );
    }

    #[test]
    fn lifetimes_round_up_to_minutes() {
        assert_eq!(lifetime_minutes(120), 2);
        assert_eq!(lifetime_minutes(121), 3);
        assert_eq!(lifetime_minutes(30), 1);
    }

    #[test]
    fn codes_are_six_digits() {
        let c = new_code();
        assert_eq!(c.len(), 6);
        assert!(c.bytes().all(|b| b.is_ascii_digit()));
    }
}
