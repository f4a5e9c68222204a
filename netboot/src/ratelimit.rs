//! Per-client token buckets on virtual time (pure: every decision takes `now`).
//!
//! [`RateLimiter`] keeps one bucket per key (a MAC for DHCP, an IP address for TFTP requests).
//! A bucket holds at most [`RateLimit::burst`] tokens and refills at [`RateLimit::per_second`]
//! tokens a second; each event takes one token, and an event finding the bucket empty is
//! refused. Tokens are counted in thousandths, so refills between whole seconds are exact
//! enough for millisecond clocks.
//!
//! Memory is bounded: at most [`RateLimiter::max_keys`] buckets. A bucket that has refilled to
//! `burst` is the same as no bucket, so when the map is full those are forgotten first; if it is
//! still full (a flood of distinct keys), a new key is let through untracked: the per-client
//! limit cannot stop spoofed distinct clients, and refusing them would refuse real clients too.

use std::collections::BTreeMap;

/// Thousandths of a token per token.
const MILLI: u64 = 1_000;

/// A sustained rate and a burst, per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens added per second; 0 disables the limit.
    pub per_second: u32,
    /// Bucket size: events allowed at once after a quiet period (at least 1 when enabled).
    pub burst: u32,
}

impl RateLimit {
    /// No limit.
    pub const OFF: Self = Self {
        per_second: 0,
        burst: 0,
    };

    /// Whether this limit refuses anything at all.
    #[must_use]
    pub const fn is_enabled(&self) -> bool {
        self.per_second > 0
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Thousandths of a token.
    tokens: u64,
    /// When `tokens` was last brought up to date (milliseconds, caller's epoch).
    at_ms: u64,
}

/// Token buckets per key.
#[derive(Debug, Clone)]
pub struct RateLimiter<K> {
    limit: RateLimit,
    max_keys: usize,
    buckets: BTreeMap<K, Bucket>,
}

impl<K: Ord + Clone> RateLimiter<K> {
    /// Default most keys tracked.
    pub const DEFAULT_MAX_KEYS: usize = 65_536;

    /// A limiter applying `limit` to each key.
    #[must_use]
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            max_keys: Self::DEFAULT_MAX_KEYS,
            buckets: BTreeMap::new(),
        }
    }

    /// The same with at most `max_keys` buckets (at least 1).
    #[must_use]
    pub fn with_max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(1);
        self
    }

    /// The limit applied.
    #[must_use]
    pub const fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Most buckets kept.
    #[must_use]
    pub const fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Buckets currently kept.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Whether an event of `key` at `now_ms` (milliseconds since any fixed epoch, never going
    /// backwards by much: an earlier `now` just refills nothing) is allowed; takes a token if
    /// so.
    pub fn allow(&mut self, key: &K, now_ms: u64) -> bool {
        if !self.limit.is_enabled() {
            return true;
        }
        let capacity = u64::from(self.limit.burst.max(1)) * MILLI;
        let rate = u64::from(self.limit.per_second);
        if let Some(bucket) = self.buckets.get_mut(key) {
            refill(bucket, now_ms, rate, capacity);
            if bucket.tokens < MILLI {
                return false;
            }
            bucket.tokens -= MILLI;
            return true;
        }
        if self.buckets.len() >= self.max_keys {
            self.buckets.retain(|_, b| {
                refill(b, now_ms, rate, capacity);
                b.tokens < capacity
            });
            if self.buckets.len() >= self.max_keys {
                return true;
            }
        }
        self.buckets.insert(
            key.clone(),
            Bucket {
                tokens: capacity - MILLI,
                at_ms: now_ms,
            },
        );
        true
    }
}

/// Adds the tokens earned since the bucket's time, up to `capacity`.
fn refill(bucket: &mut Bucket, now_ms: u64, rate: u64, capacity: u64) {
    if now_ms > bucket.at_ms {
        // rate tokens/s = rate thousandths per ms.
        let earned = (now_ms - bucket.at_ms).saturating_mul(rate);
        bucket.tokens = bucket.tokens.saturating_add(earned).min(capacity);
        bucket.at_ms = now_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, burst: u32) -> RateLimiter<u32> {
        RateLimiter::new(RateLimit { per_second, burst })
    }

    /// How many of `n` events at `now_ms` for `key` are allowed.
    fn allowed(l: &mut RateLimiter<u32>, key: u32, now_ms: u64, n: usize) -> usize {
        (0..n).filter(|_| l.allow(&key, now_ms)).count()
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let mut l = limiter(2, 10);
        assert_eq!(allowed(&mut l, 1, 0, 100), 10);
        // Half a second earns one token, a second two.
        assert_eq!(allowed(&mut l, 1, 499, 100), 0);
        assert_eq!(allowed(&mut l, 1, 500, 100), 1);
        assert_eq!(allowed(&mut l, 1, 1_500, 100), 2);
        // A long pause refills to the burst, never beyond.
        assert_eq!(allowed(&mut l, 1, 1_000_000, 100), 10);
        // Other keys have their own buckets.
        assert_eq!(allowed(&mut l, 2, 1_000_000, 100), 10);
    }

    #[test]
    fn over_a_minute_a_flood_gets_the_rate_and_a_quiet_client_everything() {
        let mut l = limiter(2, 20);
        let mut flood = 0;
        let mut quiet = 0;
        // One key sends 1000 events a second for 60 s; another 1 every 5 s.
        for ms in (0..60_000).step_by(1) {
            if l.allow(&1, ms) {
                flood += 1;
            }
            if ms % 5_000 == 0 && l.allow(&2, ms) {
                quiet += 1;
            }
        }
        assert_eq!(quiet, 12);
        // The burst plus two a second (the last refill is at 59.999 s).
        assert!((138..=140).contains(&flood), "{flood}");
    }

    #[test]
    fn off_allows_everything_and_tracks_nothing() {
        let mut l = RateLimiter::new(RateLimit::OFF);
        assert_eq!(allowed(&mut l, 1, 0, 1000), 1000);
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let mut l = limiter(1, 1);
        assert!(l.allow(&1, 10_000));
        assert!(!l.allow(&1, 5_000));
        assert!(!l.allow(&1, 10_999));
        assert!(l.allow(&1, 11_000));
    }

    #[test]
    fn memory_is_bounded_and_full_buckets_are_forgotten_first() {
        let mut l = limiter(1, 2).with_max_keys(3);
        for key in 0..3 {
            assert!(l.allow(&key, 0));
        }
        assert_eq!(l.tracked(), 3);
        // Full map, no bucket refilled yet: a new key passes untracked.
        assert!(l.allow(&9, 0));
        assert!(l.allow(&9, 0));
        assert_eq!(l.tracked(), 3);
        // Key 0 is drained; the others refill by t=1 s and are forgotten to make room.
        assert!(l.allow(&0, 0));
        assert!(!l.allow(&0, 0));
        assert!(l.allow(&7, 1_000));
        assert_eq!(l.tracked(), 2, "0 (not full) and 7 remain");
        assert!(l.allow(&0, 1_000));
        assert!(!l.allow(&0, 1_000));
    }
}
