//! The lockout rules of one member, as the shared-memory attempt ledger applies them.
//!
//! Every check of a code is **charged before it is made**: the failure is counted first and
//! refunded (the count reset) only by a success. So a check that is rolled back, interrupted, or
//! run in parallel with others has already been counted, and no more than `threshold` checks can
//! be in the window at once. Times are microseconds on the clock (`GetCurrentTimestamp`).
//!
//! Both limits hold in **any** window, not in windows that start at a first failure and are
//! forgotten whole: the member keeps the time of each charge still in a window (the failures of
//! the last `lock_us`, the checks of the last second), and a charge leaves its window exactly
//! `lock_us` (one second) after it was made. So no `lock_us` holds more than `threshold` checked
//! failures, and no second more than `checks_per_second` checks, however a burst is timed.

/// The configured limits, read from the settings at each attempt.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Failures within any `lock_us` that lock the member (`mfa.lock_threshold`).
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
const MILLISECOND_US: i64 = 1_000;

/// The most failures a window can hold: `mfa.lock_threshold`'s maximum.
pub const MAX_THRESHOLD: usize = 100;
/// The most checks a second can hold: `mfa.member_checks_per_second`'s maximum.
pub const MAX_CHECKS_PER_SECOND: usize = 100;
/// The longest failure window: `mfa.lock_minutes`' maximum (7 days).
pub const MAX_LOCK_US: i64 = 7 * 24 * 60 * 60 * SECOND_US;

/// An offset from a base time, in a fixed number of bytes (shared memory).
pub trait Offset: Copy + Default + std::fmt::Debug + Eq {
    const MAX: i64;
    fn get(self) -> i64;
    /// `v` must be within `0..=MAX`.
    fn new(v: i64) -> Self;
}

impl Offset for u8 {
    const MAX: i64 = u8::MAX as i64;
    fn get(self) -> i64 {
        self as i64
    }
    fn new(v: i64) -> Self {
        v as u8
    }
}

impl Offset for u16 {
    const MAX: i64 = u16::MAX as i64;
    fn get(self) -> i64 {
        self as i64
    }
    fn new(v: i64) -> Self {
        v as u16
    }
}

impl Offset for u32 {
    const MAX: i64 = u32::MAX as i64;
    fn get(self) -> i64 {
        self as i64
    }
    fn new(v: i64) -> Self {
        v as u32
    }
}

/// The times of up to `N` charges, kept as offsets of `UNIT_US` from a base time, rounded up: a
/// time is never kept earlier than it was, so a charge never leaves its window early (it may
/// leave it up to one unit late). The base moves forward when an offset would not fit; each
/// use's type and unit reach further than its longest window, so every time still in a window
/// fits (see `FailureTimes` and `CheckTimes`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Times<T: Offset, const N: usize, const UNIT_US: i64> {
    base: i64,
    offsets: [T; N],
    len: u8,
}

impl<T: Offset, const N: usize, const UNIT_US: i64> Default for Times<T, N, UNIT_US> {
    fn default() -> Self {
        Times {
            base: 0,
            offsets: [T::default(); N],
            len: 0,
        }
    }
}

fn div_ceil(a: i64, b: i64) -> i64 {
    -((-a).div_euclid(b))
}

impl<T: Offset, const N: usize, const UNIT_US: i64> Times<T, N, UNIT_US> {
    pub fn len(&self) -> u32 {
        self.len as u32
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `i`th time kept.
    fn at(&self, i: usize) -> i64 {
        self.base + self.offsets[i].get() * UNIT_US
    }

    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.len as usize).map(|i| self.at(i))
    }

    /// The earliest time kept (0: none).
    pub fn earliest(&self) -> i64 {
        self.iter().min().unwrap_or(0)
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Keeps only the times that satisfy `keep`, in their order.
    fn retain(&mut self, keep: impl Fn(i64) -> bool) {
        let mut kept = 0;
        for i in 0..self.len as usize {
            if keep(self.at(i)) {
                self.offsets[kept] = self.offsets[i];
                kept += 1;
            }
        }
        self.len = kept as u8;
    }

    /// Forgets the times that left a window of `window_us` ending at `now`: a time stays while
    /// `now` is less than `window_us` after it.
    pub fn expire(&mut self, now: i64, window_us: i64) {
        self.retain(|t| now < t.saturating_add(window_us));
    }

    /// Counts a charge made at `now`. Returns false when `N` times are kept already.
    pub fn push(&mut self, now: i64) -> bool {
        if self.len as usize >= N {
            return false;
        }
        let reach = T::MAX * UNIT_US;
        if self.len == 0 {
            self.base = now;
        } else if now < self.base || now - self.base > reach {
            // A new base, the earliest time kept (or now, when the clock went back), every time
            // rounded up from it. A time `now` is out of reach from is dropped: with the window
            // expired first, none is (see the type's note).
            let old = *self;
            let kept = || old.iter().filter(|&t| t >= now || now - t <= reach);
            let base = kept().min().unwrap_or(now).min(now);
            self.base = base;
            self.len = 0;
            for t in kept() {
                let offset = div_ceil(t - base, UNIT_US);
                if offset <= T::MAX {
                    self.offsets[self.len as usize] = T::new(offset);
                    self.len += 1;
                }
            }
        }
        self.offsets[self.len as usize] = T::new(div_ceil(now - self.base, UNIT_US));
        self.len += 1;
        true
    }

    /// Gives back the place of the charge made at `charged_at` (the kept time nearest to it).
    pub fn refund(&mut self, charged_at: i64) {
        if let Some(i) = (0..self.len as usize).min_by_key(|&i| (self.at(i) - charged_at).abs()) {
            self.offsets.copy_within(i + 1..self.len as usize, i);
            self.len -= 1;
        }
    }
}

/// The failures of the window, in units of 10 seconds in a u16: 7.5 days from the base, for
/// windows of at most 7 days (`MAX_LOCK_US`). A failure leaves its window up to 10 s late.
pub type FailureTimes = Times<u16, MAX_THRESHOLD, { 10 * SECOND_US }>;
/// The checks of the last second, in units of 4 ms in a u8: 1.02 s from the base. A check leaves
/// its second up to 4 ms late.
pub type CheckTimes = Times<u8, MAX_CHECKS_PER_SECOND, { 4 * MILLISECOND_US }>;

/// What the ledger knows of one member. `Copy` and plain integers: it lives in shared memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberAttempts {
    /// When each check still in the failure window was charged, not refunded by a success.
    pub failures: FailureTimes,
    pub lock_created_at: i64,
    /// The lock ends here (0 or past: not locked).
    pub lock_expires_at: i64,
    /// Consecutive locks without a success in between (repeat offenders).
    pub lock_count: u32,
    /// Which SMS code `sms_code_failures` counts for (a digest of its stored hash).
    pub sms_code_tag: u64,
    pub sms_code_failures: u32,
    /// The throttle: when each check of the last second that failed or is still running was
    /// charged (a success gives its place back).
    pub checks: CheckTimes,
    /// Attempts refused by the throttle since the last audited failure.
    pub throttled: u32,
    /// When a refusal by the throttle was last audited (at most one a second is).
    pub throttle_audited_at: i64,
}

/// Whether a code may be checked now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Charged: check the code, then `fail` or `succeed`.
    Check,
    /// Locked, or as many checks in flight as the threshold allows: nothing is checked.
    Locked,
    /// Over the per-second rate: nothing is checked, nothing charged. `audit`: the first
    /// refusal within a second, to be audited (the others are counted into the next failure).
    Throttled { audit: bool },
    /// The live SMS code has had its attempts: it is dead.
    SmsCodeSpent,
}

impl MemberAttempts {
    /// The state kept durably (`mfa.member_lockouts`): a count of failures in the window and
    /// the earliest of them, so the failures come back as made at that time (they leave the
    /// window together, as the earliest would).
    pub fn from_durable(
        failures: u32,
        window_started_at: i64,
        lock_created_at: i64,
        lock_expires_at: i64,
        lock_count: u32,
    ) -> MemberAttempts {
        let mut attempts = MemberAttempts {
            lock_created_at,
            lock_expires_at,
            lock_count,
            ..MemberAttempts::default()
        };
        if window_started_at != 0 {
            for _ in 0..failures.min(MAX_THRESHOLD as u32) {
                attempts.failures.push(window_started_at);
            }
        }
        attempts
    }

    /// Failures in the window (as of the last attempt).
    pub fn failure_count(&self) -> u32 {
        self.failures.len()
    }

    /// When the earliest failure still in the window was charged (0: none).
    pub fn window_started_at(&self) -> i64 {
        self.failures.earliest()
    }

    pub fn is_locked(&self, now: i64) -> bool {
        self.lock_expires_at > now
    }

    /// The longest a repeat offender's history is remembered after their last lock ended.
    fn history_us(limits: &Limits) -> i64 {
        limits.lock_max_us.max(limits.lock_us)
    }

    /// Forgets what has run out: failures charged `lock_us` ago or more, checks charged a second
    /// ago or more, a lock history older than the longest lock.
    fn expire(&mut self, now: i64, limits: &Limits) {
        self.failures.expire(now, limits.lock_us.min(MAX_LOCK_US));
        self.checks.expire(now, SECOND_US);
        if self.lock_count > 0
            && !self.is_locked(now)
            && now >= self.lock_expires_at + Self::history_us(limits)
        {
            self.lock_count = 0;
        }
    }

    /// Decides whether one code may be checked and, if so, charges it at `now`. `sms_code_tag`
    /// names the SMS code about to be checked (none for other factors).
    pub fn admit(&mut self, now: i64, limits: &Limits, sms_code_tag: Option<u64>) -> Admission {
        self.expire(now, limits);
        if self.is_locked(now) || self.failures.len() >= limits.threshold.min(MAX_THRESHOLD as u32)
        {
            return Admission::Locked;
        }
        if self.checks.len() >= limits.checks_per_second.min(MAX_CHECKS_PER_SECOND as u32) {
            self.throttled = self.throttled.saturating_add(1);
            let audit = self.throttle_audited_at == 0
                || now - self.throttle_audited_at >= SECOND_US
                || now < self.throttle_audited_at;
            if audit {
                self.throttle_audited_at = now;
            }
            return Admission::Throttled { audit };
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
        // Both have room: the limits are at most the capacities, and were checked above.
        self.checks.push(now);
        self.failures.push(now);
        Admission::Check
    }

    /// The charged check failed (it is counted already): locks the member when the window holds
    /// `threshold` failures. Returns whether the member is locked now.
    pub fn fail(&mut self, now: i64, limits: &Limits) -> bool {
        self.failures.expire(now, limits.lock_us.min(MAX_LOCK_US));
        if !self.is_locked(now) && self.failures.len() >= limits.threshold {
            let doublings = self.lock_count.min(30);
            let length = limits
                .lock_us
                .saturating_mul(1i64 << doublings)
                .min(limits.lock_us.max(limits.lock_max_us));
            self.lock_count += 1;
            self.lock_created_at = now;
            self.lock_expires_at = now + length;
            self.failures.clear();
        }
        self.is_locked(now)
    }

    /// The check charged at `charged_at` succeeded: the member's failures, lock history and SMS
    /// code count are reset (a success proves the member, not an attacker), and the check gives
    /// its place in the throttle back.
    pub fn succeed(&mut self, charged_at: i64) {
        self.checks.refund(charged_at);
        self.failures.clear();
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
        !copy.is_locked(now) && copy.failures.is_empty() && copy.lock_count == 0
    }

    /// Whether the durable row differs from a member with no failures (a reset must be written).
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty() && self.lock_count == 0 && self.lock_expires_at == 0
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
        assert_eq!(m.failure_count(), 3);
        assert!(m.fail(now, &l));
    }

    #[test]
    fn a_success_resets_and_a_window_expires() {
        let (l, mut m, mut now) = (limits(), MemberAttempts::default(), 1_000 * MIN);
        fail_once(&mut m, &mut now, &l);
        fail_once(&mut m, &mut now, &l);
        assert_eq!(m.admit(now, &l, None), Admission::Check);
        m.succeed(now);
        assert_eq!(m.failure_count(), 0);
        fail_once(&mut m, &mut now, &l);
        fail_once(&mut m, &mut now, &l);
        // A window older than the lock length is forgotten.
        now += 61 * MIN;
        assert_eq!(fail_once(&mut m, &mut now, &l), (Admission::Check, false));
        assert_eq!(m.failure_count(), 1);
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
        assert_eq!(
            m.admit(now + 2, &l, None),
            Admission::Throttled { audit: true }
        );
        assert_eq!((m.failure_count(), m.throttled), (2, 1));
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
            m.succeed(now + i);
        }
        assert_eq!(m.admit(now + 10, &l, None), Admission::Check);
        assert!(!m.fail(now + 10, &l));
        assert_eq!(m.admit(now + 11, &l, None), Admission::Check);
        assert_eq!(
            m.admit(now + 12, &l, None),
            Admission::Throttled { audit: true }
        );
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

    const MS: i64 = 1_000;

    /// The most of `times` (sorted) that fall within any `length` (a half-open interval).
    fn most_within(times: &[i64], length: i64) -> usize {
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|&&t| t < times[i] + length)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// Runs an attacker's schedule: at each time, a check if admitted (it fails). Returns the
    /// times of the checks made.
    fn attack(m: &mut MemberAttempts, l: &Limits, schedule: impl Iterator<Item = i64>) -> Vec<i64> {
        let mut checked = vec![];
        for now in schedule {
            if m.admit(now, l, None) == Admission::Check {
                m.fail(now, l);
                checked.push(now);
            }
        }
        checked
    }

    #[test]
    fn failures_across_the_end_of_a_window_lock() {
        // One failure, then 8 just before the window it began ends and 9 just after: fixed
        // windows checked all 17 within 3 seconds.
        let l = Limits {
            threshold: 10,
            ..limits()
        };
        let (mut m, t0) = (MemberAttempts::default(), 1_000 * MIN);
        let end = t0 + l.lock_us;
        let schedule = std::iter::once(t0)
            .chain((0..8).map(|i| end - 2 * SECOND_US + i * MS))
            .chain((0..9).map(|i| end + SECOND_US + i * MS));
        let checked = attack(&mut m, &l, schedule);
        assert_eq!(checked.len(), 1 + 8 + 2, "{checked:?}");
        assert!(most_within(&checked, l.lock_us) <= 10);
        assert!(m.is_locked(end + 2 * SECOND_US));
    }

    #[test]
    fn a_steady_attacker_gets_the_threshold_in_any_window() {
        // A check every 7 seconds for 5 hours, threshold 3 an hour, with locks growing off: never
        // more than 3 checked within any hour, whatever the phase.
        let l = limits();
        for phase in [0, 1, 999_999, 3 * SECOND_US + 17] {
            let mut m = MemberAttempts::default();
            let t0 = 1_000 * MIN + phase;
            let checked = attack(
                &mut m,
                &l,
                (0..5 * 3600 / 7).map(|i| t0 + i * 7 * SECOND_US),
            );
            assert!(most_within(&checked, l.lock_us) <= 3, "{checked:?}");
        }
    }

    #[test]
    fn a_burst_across_a_second_gets_no_more_than_a_second_allows() {
        // One check, then from half a second later a check every 5 ms for 0.8 s: fixed seconds
        // checked 4 before the second's end and 5 after it.
        let l = Limits {
            threshold: 100,
            checks_per_second: 5,
            ..limits()
        };
        let (mut m, t0) = (MemberAttempts::default(), 1_000 * MIN);
        let first = attack(&mut m, &l, std::iter::once(t0));
        let burst = attack(
            &mut m,
            &l,
            (0..160).map(|i| t0 + SECOND_US / 2 + i * 5 * MS),
        );
        assert!(burst.len() <= 5, "{burst:?}");
        let all: Vec<i64> = first.into_iter().chain(burst).collect();
        assert!(most_within(&all, SECOND_US) <= 5, "{all:?}");
        // The first check's place comes back a second after it, not before.
        assert_eq!(all.len(), 6, "{all:?}");
        assert!(all[5] >= t0 + SECOND_US);
    }

    #[test]
    fn a_refusal_by_the_throttle_is_audited_at_most_once_a_second() {
        let l = Limits {
            threshold: 100,
            checks_per_second: 1,
            ..limits()
        };
        let (mut m, t0) = (MemberAttempts::default(), 1_000 * MIN);
        let audits: Vec<bool> = (0..300)
            .map(|i| t0 + i * 10 * MS)
            .filter_map(|now| match m.admit(now, &l, None) {
                Admission::Throttled { audit } => Some(audit),
                _ => None,
            })
            .collect();
        // 3 seconds of refusals: one audited in each.
        assert_eq!(audits.iter().filter(|a| **a).count(), 3, "{audits:?}");
        assert!(audits[0]);
    }

    #[test]
    fn times_are_kept_never_earlier_and_follow_a_moving_base() {
        let mut t = CheckTimes::default();
        let t0 = 1_000 * MIN;
        assert!(t.push(t0) && t.push(t0 + 1) && t.push(t0 + 5 * MS));
        assert_eq!(t.iter().collect::<Vec<_>>(), [t0, t0 + 4 * MS, t0 + 8 * MS]);
        // An hour later the base moves: what left its second is gone, the rest is kept.
        t.expire(t0 + 3600 * SECOND_US, SECOND_US);
        assert!(t.is_empty());
        for i in 0..100 {
            t.expire(t0 + 3600 * SECOND_US + i * 9 * MS, SECOND_US);
            assert!(t.push(t0 + 3600 * SECOND_US + i * 9 * MS));
        }
        // 9 ms apart for 0.9 s: all in the last second, each kept at or up to 4 ms after it.
        assert_eq!(t.len(), 100);
        assert!(!t.push(t0 + 3601 * SECOND_US), "full");
        for (i, kept) in t.iter().enumerate() {
            let at = t0 + 3600 * SECOND_US + i as i64 * 9 * MS;
            assert!(kept >= at && kept < at + 4 * MS, "{kept} for {at}");
        }
        // A clock that went back: the base follows it, nothing is lost.
        let mut f = FailureTimes::default();
        assert!(f.push(t0) && f.push(t0 - 30 * SECOND_US));
        assert_eq!(f.iter().min(), Some(t0 - 30 * SECOND_US));
        assert_eq!(f.iter().max(), Some(t0));
        // A week's window: the first failure and one 7 days later are both kept.
        let mut f = FailureTimes::default();
        f.push(t0);
        f.expire(t0 + MAX_LOCK_US - SECOND_US, MAX_LOCK_US);
        assert!(f.push(t0 + MAX_LOCK_US - SECOND_US));
        assert_eq!(f.earliest(), t0);
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn the_durable_row_brings_the_window_back() {
        let l = Limits {
            threshold: 10,
            ..limits()
        };
        let (mut m, t0) = (MemberAttempts::default(), 1_000 * MIN);
        attack(&mut m, &l, (0..4).map(|i| t0 + i * MIN));
        assert_eq!((m.failure_count(), m.window_started_at()), (4, t0));
        let mut back = MemberAttempts::from_durable(4, t0, 0, 0, 0);
        assert_eq!(back.failure_count(), 4);
        // Six more lock within the window, as they would have.
        let checked = attack(&mut back, &l, (0..6).map(|i| t0 + 5 * MIN + i * SECOND_US));
        assert_eq!(checked.len(), 6);
        assert!(back.is_locked(t0 + 6 * MIN));
        // The window the row kept ends an hour after its earliest failure.
        let mut back = MemberAttempts::from_durable(4, t0, 0, 0, 0);
        assert!(back.is_quiet(t0 + l.lock_us, &l));
        assert_eq!(back.admit(t0 + l.lock_us, &l, None), Admission::Check);
        assert_eq!(back.failure_count(), 1);
    }

    #[test]
    fn a_success_gives_back_its_own_place_in_the_throttle() {
        let l = Limits {
            threshold: 100,
            checks_per_second: 2,
            ..limits()
        };
        let (mut m, t0) = (MemberAttempts::default(), 1_000 * MIN);
        // Two in flight; the first (charged at t0) succeeds: the second's place stays taken
        // until a second after it was charged.
        assert_eq!(m.admit(t0, &l, None), Admission::Check);
        assert_eq!(m.admit(t0 + 600 * MS, &l, None), Admission::Check);
        m.succeed(t0);
        assert_eq!(m.admit(t0 + 700 * MS, &l, None), Admission::Check);
        assert_ne!(m.admit(t0 + 1_500 * MS, &l, None), Admission::Check);
        assert_eq!(m.admit(t0 + 1_700 * MS, &l, None), Admission::Check);
    }

    #[test]
    fn a_member_fits_in_a_few_hundred_bytes_of_shared_memory() {
        // The attempt ledger's entry is this and 32 bytes (mfa.attempt_ledger_members' hint).
        assert_eq!(std::mem::size_of::<MemberAttempts>(), 384);
    }
}
