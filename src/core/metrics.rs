//! What `mfa.metrics()` reports of the server's own counters: their names and labels, in the
//! Prometheus convention (`_total` for a counter). The counts themselves live in shared memory
//! (`server::counters`), one atomic per counter, indexed by `Counter::index`.

use crate::core::policy::SecondFactor;

/// How a second-factor attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The factor was proven.
    Succeeded,
    /// The factor was checked and was wrong (counted toward the member's lock).
    Failed,
    /// Nothing was checked: the member is locked, their checks this second are spent, or the SMS
    /// code had too many wrong attempts.
    Refused,
}

const OUTCOMES: [Outcome; 3] = [Outcome::Succeeded, Outcome::Failed, Outcome::Refused];
const FACTORS: [SecondFactor; 4] = [
    SecondFactor::Totp,
    SecondFactor::SmsOtp,
    SecondFactor::Webauthn,
    SecondFactor::RecoveryCode,
];

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
        }
    }
}

/// One of the server's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// `primary_authenticate` issued a login's intermediate session token.
    LoginStarted,
    /// `step_up_start` issued a step-up's token.
    StepUpStarted,
    /// A login that a remembered device let through without a second factor.
    RememberedDevice,
    /// A second-factor attempt (a code, a passkey's answer, a recovery code) and how it ended.
    SecondFactor(SecondFactor, Outcome),
}

/// How many counters there are.
pub const COUNTERS: usize = 3 + FACTORS.len() * OUTCOMES.len();

fn factor_name(factor: SecondFactor) -> &'static str {
    match factor {
        SecondFactor::Totp => "totp",
        SecondFactor::SmsOtp => "sms_otp",
        SecondFactor::Webauthn => "webauthn",
        SecondFactor::RecoveryCode => "recovery_code",
    }
}

impl Counter {
    /// Its place in the shared array: `0..COUNTERS`, one per counter.
    pub const fn index(self) -> usize {
        match self {
            Counter::LoginStarted => 0,
            Counter::StepUpStarted => 1,
            Counter::RememberedDevice => 2,
            Counter::SecondFactor(factor, outcome) => {
                let f = match factor {
                    SecondFactor::Totp => 0,
                    SecondFactor::SmsOtp => 1,
                    SecondFactor::Webauthn => 2,
                    SecondFactor::RecoveryCode => 3,
                };
                let o = match outcome {
                    Outcome::Succeeded => 0,
                    Outcome::Failed => 1,
                    Outcome::Refused => 2,
                };
                3 + f * OUTCOMES.len() + o
            }
        }
    }

    /// Every counter, in index order.
    pub fn all() -> impl Iterator<Item = Counter> {
        [
            Counter::LoginStarted,
            Counter::StepUpStarted,
            Counter::RememberedDevice,
        ]
        .into_iter()
        .chain(FACTORS.into_iter().flat_map(|factor| {
            OUTCOMES
                .into_iter()
                .map(move |outcome| Counter::SecondFactor(factor, outcome))
        }))
    }

    /// The metric's name.
    pub fn name(self) -> &'static str {
        match self {
            Counter::LoginStarted | Counter::StepUpStarted => "mfa_logins_started_total",
            Counter::RememberedDevice => "mfa_logins_remembered_device_total",
            Counter::SecondFactor(..) => "mfa_second_factor_attempts_total",
        }
    }

    /// The metric's labels, as (name, value) pairs.
    pub fn labels(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Counter::LoginStarted => vec![("kind", "login")],
            Counter::StepUpStarted => vec![("kind", "step_up")],
            Counter::RememberedDevice => vec![],
            Counter::SecondFactor(factor, outcome) => {
                vec![
                    ("method", factor_name(factor)),
                    ("outcome", outcome.as_str()),
                ]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_counter_has_its_own_index_in_order() {
        let indexes: Vec<usize> = Counter::all().map(Counter::index).collect();
        assert_eq!(indexes, (0..COUNTERS).collect::<Vec<_>>());
    }

    #[test]
    fn no_two_counters_share_a_name_and_labels() {
        let series: BTreeSet<_> = Counter::all().map(|c| (c.name(), c.labels())).collect();
        assert_eq!(series.len(), COUNTERS);
        assert!(
            Counter::all().all(|c| c.name().starts_with("mfa_") && c.name().ends_with("_total"))
        );
        assert_eq!(
            Counter::SecondFactor(SecondFactor::RecoveryCode, Outcome::Refused).labels(),
            vec![("method", "recovery_code"), ("outcome", "refused")]
        );
    }
}
