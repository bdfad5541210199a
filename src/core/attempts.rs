//! The lockout rules of one member, as the shared-memory attempt ledger applies them.
//!
//! Every check of a code is **charged before it is made**: the failure is counted first and
//! refunded (the count reset) only by a success. So a check that is rolled back, interrupted, or
//! run in parallel with others has already been counted, and no more than `threshold` checks can
//! be in the window at once. Times are microseconds on the clock (`GetCurrentTimestamp`).

/// The configured limits, read from the settings at each attempt.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Failures in one window that lock the member (`mfa.lock_threshold`).
    pub threshold: u32,
    /// The lock's length and the failure window's (`mfa.lock_minutes`).
    pub lock_us: i64,
    /// Repeat offenders: each consecutive lock doubles up to this length (`mfa.lock_max_minutes`);
    /// at most `lock_us` means every lock lasts `lock_us`.
    pub lock_max_us: i64,
    /// Checks per member in any one second that failed or are still running
    /// (`mfa.member_checks_per_second`): a success gives its place back.
    pub checks_per_second: u32,
    /// Wrong attempts after which an SMS code dies (`mfa.sms_code_max_attempts`).
    pub sms_code_max_attempts: u32,
}

pub const SECOND_US: i64 = 1_000_000;

/// What the ledger knows of one member. `Copy` and plain integers: it lives in shared memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberAttempts {
    /// Checks charged in the current window and not refunded by a success.
    pub failures: u32,
    /// When the current window's first failure was charged (0: no window).
    pub window_started_at: i64,
    pub lock_created_at: i64,
    /// The lock ends here (0 or past: not locked).
    pub lock_expires_at: i64,
    /// Consecutive locks without a success in between (repeat offenders).
    pub lock_count: u32,
    /// Which SMS code `sms_code_failures` counts for (a digest of its stored hash).
    pub sms_code_tag: u64,
    pub sms_code_failures: u32,
    /// The throttle: checks not refunded by a success in the second that started at
    /// `second_started_at`.
    pub second_started_at: i64,
    pub checks_this_second: u32,
    /// Attempts refused by the throttle since the last audited failure.
    pub throttled: u32,
    /// Attempts refused by the throttle in the current second (the first one is audited).
    pub throttled_this_second: u32,
}

/// Whether a code may be checked now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Charged: check the code, then `fail` or `succeed`.
    Check,
    /// Locked, or as many checks in flight as the threshold allows: nothing is checked.
    Locked,
    /// Over the per-second rate: nothing is checked, nothing charged.
    Throttled,
    /// The live SMS code has had its attempts: it is dead.
    SmsCodeSpent,
}

impl MemberAttempts {
    pub fn is_locked(&self, now: i64) -> bool {
        self.lock_expires_at > now
    }

    /// The longest a repeat offender's history is remembered after their last lock ended.
    fn history_us(limits: &Limits) -> i64 {
        limits.lock_max_us.max(limits.lock_us)
    }

    /// Forgets what has run out: a failure window older than the lock length, a lock history
    /// older than the longest lock.
    fn expire(&mut self, now: i64, limits: &Limits) {
        if self.window_started_at != 0 && now >= self.window_started_at + limits.lock_us {
            self.failures = 0;
            self.window_started_at = 0;
        }
        if self.lock_count > 0
            && !self.is_locked(now)
            && now >= self.lock_expires_at + Self::history_us(limits)
        {
            self.lock_count = 0;
        }
    }

    /// Decides whether one code may be checked and, if so, charges it. `sms_code_tag` names the
    /// SMS code about to be checked (none for other factors).
    pub fn admit(&mut self, now: i64, limits: &Limits, sms_code_tag: Option<u64>) -> Admission {
        self.expire(now, limits);
        if self.is_locked(now) || self.failures >= limits.threshold {
            return Admission::Locked;
        }
        if now - self.second_started_at >= SECOND_US || now < self.second_started_at {
            self.second_started_at = now;
            self.checks_this_second = 0;
            self.throttled_this_second = 0;
        }
        if self.checks_this_second >= limits.checks_per_second {
            self.throttled = self.throttled.saturating_add(1);
            self.throttled_this_second = self.throttled_this_second.saturating_add(1);
            return Admission::Throttled;
        }
        if let Some(tag) = sms_code_tag {
            if tag != self.sms_code_tag {
                self.sms_code_tag = tag;
                self.sms_code_failures = 0;
            }
            if self.sms_code_failures >= limits.sms_code_max_attempts {
                return Admission::SmsCodeSpent;
            }
            self.sms_code_failures += 1;
        }
        self.checks_this_second += 1;
        self.failures += 1;
        if self.window_started_at == 0 {
            self.window_started_at = now;
        }
        Admission::Check
    }

    /// The charged check failed (it is counted already): locks the member when the window holds
    /// `threshold` failures. Returns whether the member is locked now.
    pub fn fail(&mut self, now: i64, limits: &Limits) -> bool {
        if !self.is_locked(now) && self.failures >= limits.threshold {
            let doublings = self.lock_count.min(30);
            let length = limits
                .lock_us
                .saturating_mul(1i64 << doublings)
                .min(limits.lock_us.max(limits.lock_max_us));
            self.lock_count += 1;
            self.lock_created_at = now;
            self.lock_expires_at = now + length;
            self.failures = 0;
            self.window_started_at = 0;
        }
        self.is_locked(now)
    }

    /// The charged check succeeded: the member's failures, lock history and SMS code count are
    /// reset (a success proves the member, not an attacker).
    pub fn succeed(&mut self) {
        self.checks_this_second = self.checks_this_second.saturating_sub(1);
        self.failures = 0;
        self.window_started_at = 0;
        self.lock_count = 0;
        self.sms_code_failures = 0;
    }

    /// An administrator lifted the lock (`member_unlock`, never granted to the application):
    /// a clean slate, the throttle included.
    pub fn unlock(&mut self) {
        *self = MemberAttempts::default();
    }

    /// Whether forgetting this member loses nothing: not locked, no failure in a live window, no
    /// lock history. The ledger evicts only quiet entries (and only once the worker has written
    /// them), so an attacker cannot make it forget a member under attack; reloaded from the
    /// durable row, a quiet member is what they were.
    pub fn is_quiet(&self, now: i64, limits: &Limits) -> bool {
        let mut copy = *self;
        copy.expire(now, limits);
        !copy.is_locked(now) && copy.failures == 0 && copy.lock_count == 0
    }

    /// Whether the durable row differs from a member with no failures (a reset must be written).
    pub fn is_clean(&self) -> bool {
        self.failures == 0 && self.lock_count == 0 && self.lock_expires_at == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60 * SECOND_US;

    fn limits() -> Limits {
        Limits {
            threshold: 3,
            lock_us: 60 * MIN,
            lock_max_us: 0,
            checks_per_second: 100,
            sms_code_max_attempts: 5,
        }
    }

    /// One failed check a second.
    fn fail_once(m: &mut MemberAttempts, now: &mut i64, l: &Limits) -> (Admission, bool) {
        *now += SECOND_US;
        let a = m.admit(*now, l, None);
        let locked = a == Admission::Check && m.fail(*now, l);
        (a, locked)
    }

    #[test]
    fn the_threshold_locks_and_the_lock_refuses_checks() {
        let (l, mut m, mut now) = (limits(), MemberAttempts::default(), 1_000 * MIN);
        assert_eq!(fail_once(&mut m, &mut now, &l), (Admission::Check, false));
        assert_eq!(fail_once(&mut m, &mut now, &l), (Admission::Check, false));
        assert_eq!(fail_once(&mut m, &mut now, &l), (Admission::Check, true));
        assert!(m.is_locked(now));
        assert_eq!(m.admit(now + MIN, &l, None), Admission::Locked);
        // The lock ends after lock_us; checks resume.
        assert_eq!(m.admit(now + 61 * MIN, &l, None), Admission::Check);
    }

    #[test]
    fn checks_in_flight_count_before_they_are_settled() {
        let (l, mut m, now) = (limits(), MemberAttempts::default(), 1_000 * MIN);
        // Three concurrent checks charged, none settled: a fourth is refused.
        for _ in 0..3 {
            assert_eq!(m.admit(now, &l, None), Admission::Check);
        }
        assert_eq!(m.admit(now, &l, None), Admission::Locked);
        // A check that never settles (rolled back, killed) stays counted.
        assert_eq!(m.failures, 3);
        assert!(m.fail(now, &l));
    }

    #[test]
    fn a_success_resets_and_a_window_expires() {
        let (l, mut m, mut now) = (limits(), MemberAttempts::default(), 1_000 * MIN);
        fail_once(&mut m, &mut now, &l);
        fail_once(&mut m, &mut now, &l);
        assert_eq!(m.admit(now, &l, None), Admission::Check);
        m.succeed();
        assert_eq!(m.failures, 0);
        fail_once(&mut m, &mut now, &l);
        fail_once(&mut m, &mut now, &l);
        // A window older than the lock length is forgotten.
        now += 61 * MIN;
        assert_eq!(fail_once(&mut m, &mut now, &l), (Admission::Check, false));
        assert_eq!(m.failures, 1);
    }

    #[test]
    fn the_throttle_refuses_without_charging() {
        let l = Limits {
            checks_per_second: 2,
            threshold: 100,
            ..limits()
        };
        let (mut m, now) = (MemberAttempts::default(), 1_000 * MIN);
        assert_eq!(m.admit(now, &l, None), Admission::Check);
        assert_eq!(m.admit(now + 1, &l, None), Admission::Check);
        assert_eq!(m.admit(now + 2, &l, None), Admission::Throttled);
        assert_eq!((m.failures, m.throttled), (2, 1));
        assert_eq!(m.admit(now + SECOND_US, &l, None), Admission::Check);
    }

    #[test]
    fn successes_give_their_place_in_the_throttle_back() {
        let l = Limits {
            checks_per_second: 2,
            threshold: 100,
            ..limits()
        };
        let (mut m, now) = (MemberAttempts::default(), 1_000 * MIN);
        for i in 0..10 {
            assert_eq!(m.admit(now + i, &l, None), Admission::Check);
            m.succeed();
        }
        assert_eq!(m.admit(now + 10, &l, None), Admission::Check);
        assert!(!m.fail(now + 10, &l));
        assert_eq!(m.admit(now + 11, &l, None), Admission::Check);
        assert_eq!(m.admit(now + 12, &l, None), Admission::Throttled);
    }

    #[test]
    fn an_sms_code_dies_after_its_attempts_and_a_new_code_starts_over() {
        let l = Limits {
            threshold: 100,
            ..limits()
        };
        let (mut m, mut now) = (MemberAttempts::default(), 1_000 * MIN);
        for _ in 0..5 {
            now += SECOND_US;
            assert_eq!(m.admit(now, &l, Some(7)), Admission::Check);
            m.fail(now, &l);
        }
        assert_eq!(
            m.admit(now + SECOND_US, &l, Some(7)),
            Admission::SmsCodeSpent
        );
        assert_eq!(m.admit(now + SECOND_US, &l, Some(8)), Admission::Check);
    }

    #[test]
    fn repeat_offenders_wait_longer_when_growth_is_on() {
        let l = Limits {
            lock_max_us: 240 * MIN,
            ..limits()
        };
        let (mut m, mut now) = (MemberAttempts::default(), 1_000 * MIN);
        let mut lengths = vec![];
        for _ in 0..4 {
            for _ in 0..3 {
                fail_once(&mut m, &mut now, &l);
            }
            lengths.push((m.lock_expires_at - m.lock_created_at) / MIN);
            now = m.lock_expires_at;
        }
        assert_eq!(lengths, [60, 120, 240, 240]);
        // Off (the default): every lock lasts lock_us.
        let (l, mut m) = (limits(), MemberAttempts::default());
        for _ in 0..2 {
            for _ in 0..3 {
                fail_once(&mut m, &mut now, &l);
            }
            assert_eq!((m.lock_expires_at - m.lock_created_at) / MIN, 60);
            now = m.lock_expires_at;
        }
    }

    #[test]
    fn only_quiet_members_may_be_forgotten() {
        let (l, mut m, mut now) = (limits(), MemberAttempts::default(), 1_000 * MIN);
        assert!(m.is_quiet(now, &l));
        fail_once(&mut m, &mut now, &l);
        assert!(!m.is_quiet(now, &l));
        // Still within the window an hour minus a second later, quiet after it.
        assert!(!m.is_quiet(now + 59 * MIN, &l));
        assert!(m.is_quiet(now + 60 * MIN, &l));
        for _ in 0..3 {
            fail_once(&mut m, &mut now, &l);
        }
        assert!(m.is_locked(now) && !m.is_quiet(now, &l));
        // After the lock, the lock history keeps it for one more lock length.
        assert!(!m.is_quiet(m.lock_expires_at + MIN, &l));
        assert!(m.is_quiet(m.lock_expires_at + 60 * MIN, &l));
    }
}
