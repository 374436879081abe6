//! Exponential reconnect backoff with jitter, so a fleet of agents does not reconnect in lockstep.

use std::time::Duration;

use rand::Rng;

/// `2^MAX_EXPONENT` still fits in a `u32`; beyond it the delay is pinned at `max` anyway,
/// and capping keeps the arithmetic overflow-free however long the outage lasts.
const MAX_EXPONENT: u32 = 31;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// Next delay: `min(base * 2^attempt, max)`, then jittered uniformly into `[delay/2, delay]`.
    pub fn next_delay(&mut self) -> Duration {
        let exponent = self.attempt.min(MAX_EXPONENT);
        let delay = self.base.saturating_mul(1u32 << exponent).min(self.max);
        self.attempt = self.attempt.saturating_add(1);

        // Durations beyond u64 nanoseconds (~584 years) are not meaningful reconnect delays.
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        let jittered = rand::rng().random_range(nanos / 2..=nanos);
        Duration::from_nanos(jittered)
    }

    /// After a successful connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(30);

    fn in_range(d: Duration, lo: Duration, hi: Duration) -> bool {
        lo <= d && d <= hi
    }

    #[test]
    fn never_exceeds_max_even_after_many_attempts() {
        let mut b = Backoff::new(BASE, MAX);
        for _ in 0..1000 {
            let d = b.next_delay();
            assert!(d <= MAX, "{d:?} > {MAX:?}");
        }
        // Saturated: the delay is max jittered into [max/2, max].
        let d = b.next_delay();
        assert!(in_range(d, MAX / 2, MAX), "{d:?}");
    }

    #[test]
    fn huge_base_does_not_overflow() {
        let mut b = Backoff::new(Duration::MAX, Duration::MAX);
        for _ in 0..100 {
            let _ = b.next_delay();
        }
    }

    #[test]
    fn first_delay_is_within_half_base_and_base() {
        for _ in 0..100 {
            let mut b = Backoff::new(BASE, MAX);
            let d = b.next_delay();
            assert!(in_range(d, BASE / 2, BASE), "{d:?}");
        }
    }

    #[test]
    fn grows_exponentially() {
        let mut b = Backoff::new(BASE, MAX);
        let delays: Vec<Duration> = (0..5).map(|_| b.next_delay()).collect();
        for (attempt, d) in delays.iter().enumerate() {
            let full = BASE * (1u32 << attempt);
            assert!(in_range(*d, full / 2, full), "attempt {attempt}: {d:?}");
        }
        // The jitter ranges of attempt 0 and attempt 3 do not overlap.
        assert!(delays[3] > delays[0]);
    }

    #[test]
    fn reset_returns_to_base_range() {
        let mut b = Backoff::new(BASE, MAX);
        for _ in 0..10 {
            let _ = b.next_delay();
        }
        b.reset();
        let d = b.next_delay();
        assert!(in_range(d, BASE / 2, BASE), "{d:?}");
    }
}
