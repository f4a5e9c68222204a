//! Reconnection delays: exponential backoff with jitter, drawn from a seeded generator so
//! tests can replay them.
//!
//! The `n`-th delay after the last success is `min(initial · 2ⁿ, max)`, multiplied by a factor
//! drawn uniformly from `[1 − jitter, 1 + jitter]`: with the defaults 1 s, 2 s, 4 s, … up to
//! 60 s, each ±20 %. Jitter spreads the reconnections of many edges after a control-plane
//! restart so they do not arrive in lock-step.

use std::time::Duration;

/// Backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// First delay.
    pub initial: Duration,
    /// Largest delay before jitter.
    pub max: Duration,
    /// Relative jitter, 0.0–1.0 (0.2 is ±20 %).
    pub jitter: f64,
}

impl Default for BackoffConfig {
    /// 1 s doubling to 60 s, ±20 %.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            jitter: 0.2,
        }
    }
}

/// The state of the backoff: how many failures since the last success, and the generator.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
    rng: SplitMix64,
}

impl Backoff {
    /// A backoff drawing its jitter from `seed`.
    pub fn new(config: BackoffConfig, seed: u64) -> Self {
        Self {
            config,
            attempt: 0,
            rng: SplitMix64(seed),
        }
    }

    /// The delay before the next attempt (and count this failure).
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = self.config.jitter.clamp(0.0, 1.0);
        // Uniform in [1 - jitter, 1 + jitter].
        let factor = 1.0 - jitter + 2.0 * jitter * self.rng.next_unit();
        base.mul_f64(factor)
    }

    /// The delay before jitter for failure number `attempt` (0-based).
    pub fn base(&self, attempt: u32) -> Duration {
        let doubled = self
            .config
            .initial
            .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.config.max);
        doubled.min(self.config.max)
    }

    /// Failures counted since the last [`Backoff::reset`].
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// A connection succeeded: start again from the initial delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-mixed generator, plenty for jitter.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_within_the_jitter_bounds() {
        for seed in [0, 1, 42, u64::MAX] {
            let mut b = Backoff::new(BackoffConfig::default(), seed);
            let mut prev_base = Duration::ZERO;
            for attempt in 0..12u32 {
                let base = b.base(attempt);
                let delay = b.next_delay();
                assert!(base >= prev_base, "bases never shrink");
                prev_base = base;
                let expected = Duration::from_secs((1u64 << attempt).min(60));
                assert_eq!(base, expected, "attempt {attempt}");
                assert!(
                    delay >= base.mul_f64(0.8) && delay <= base.mul_f64(1.2),
                    "seed {seed} attempt {attempt}: {delay:?} outside ±20 % of {base:?}"
                );
            }
            assert_eq!(b.attempts(), 12);
            b.reset();
            let d = b.next_delay();
            assert!(d >= Duration::from_millis(800) && d <= Duration::from_millis(1200));
        }
    }

    #[test]
    fn jitter_actually_varies_and_is_reproducible() {
        let draw = |seed| {
            let mut b = Backoff::new(BackoffConfig::default(), seed);
            (0..50)
                .map(|_| {
                    let d = b.next_delay();
                    b.reset();
                    d
                })
                .collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7), "same seed, same delays");
        assert_ne!(a, draw(8), "another seed, other delays");
        let min = a.iter().min().copied().unwrap_or_default();
        let max = a.iter().max().copied().unwrap_or_default();
        // 50 draws from ±20 % spread over more than half the interval.
        assert!(max - min > Duration::from_millis(200), "{min:?}..{max:?}");
        assert!(min >= Duration::from_millis(800) && max <= Duration::from_millis(1200));
    }

    #[test]
    fn huge_attempt_counts_saturate_at_the_cap() {
        let b = Backoff::new(BackoffConfig::default(), 0);
        assert_eq!(b.base(31), Duration::from_secs(60));
        assert_eq!(b.base(u32::MAX), Duration::from_secs(60));
        let mut no_jitter = Backoff::new(
            BackoffConfig {
                jitter: 0.0,
                ..BackoffConfig::default()
            },
            3,
        );
        assert_eq!(no_jitter.next_delay(), Duration::from_secs(1));
        assert_eq!(no_jitter.next_delay(), Duration::from_secs(2));
    }
}
