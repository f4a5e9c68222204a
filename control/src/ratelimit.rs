//! Login throttling and the control plane's monotonic time source.
//!
//! [`LoginLimiter`] is a pure sliding-window counter of failed logins per username and per
//! client address: it takes `now` as an argument, so its tests run on virtual time. By default
//! a username is refused after 5 failures within 5 minutes, an address after 20; a successful
//! login clears the username's failures (not the address's). Memory is bounded: usernames are
//! truncated, each key keeps at most its limit of timestamps, and each map holds at most
//! [`LoginLimits::max_entries`] keys (expired keys are pruned first, then the least recently
//! failed key is evicted). [`LoginGuard`] shares one limiter between requests and reads the
//! time from a [`Clock`].
//!
//! Behind a reverse proxy every request has the proxy's address, so the per-address limit
//! then applies to all clients together.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A monotonic time source (injectable so time-dependent code is testable).
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current monotonic time.
    fn now(&self) -> Instant;
}

/// The operating system's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the control plane's one monotonic clock read
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Limits on failed logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures per username within [`Self::window`] before that username is refused (5).
    pub max_user_failures: usize,
    /// Failures per client address within [`Self::window`] before that address is refused (20).
    pub max_addr_failures: usize,
    /// The sliding window (5 minutes).
    pub window: Duration,
    /// Most usernames, and most addresses, tracked at once (10,000 each).
    pub max_entries: usize,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            max_user_failures: 5,
            max_addr_failures: 20,
            window: Duration::from_secs(300),
            max_entries: 10_000,
        }
    }
}

/// Longest username key kept (longer names are truncated; valid usernames are at most 150).
const MAX_KEY_CHARS: usize = 150;

/// Recent failure times of one key, oldest first.
#[derive(Debug, Default)]
struct Failures(VecDeque<Instant>);

impl Failures {
    /// Drops failures older than `window`.
    fn prune(&mut self, now: Instant, window: Duration) {
        while self
            .0
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.0.pop_front();
        }
    }

    /// How long until a new attempt is allowed, when `max` failures are in the window.
    fn blocked_for(&self, now: Instant, window: Duration, max: usize) -> Option<Duration> {
        if self.0.len() < max.max(1) {
            return None;
        }
        let oldest = *self.0.front()?;
        Some(window.saturating_sub(now.saturating_duration_since(oldest)))
    }

    fn push(&mut self, now: Instant, max: usize) {
        self.0.push_back(now);
        while self.0.len() > max.max(1) {
            self.0.pop_front();
        }
    }

    fn newest(&self) -> Option<Instant> {
        self.0.back().copied()
    }
}

/// Failed-login counters (pure: every method takes `now`).
#[derive(Debug)]
pub struct LoginLimiter {
    limits: LoginLimits,
    users: BTreeMap<String, Failures>,
    addrs: BTreeMap<IpAddr, Failures>,
}

impl LoginLimiter {
    /// An empty limiter.
    #[must_use]
    pub const fn new(limits: LoginLimits) -> Self {
        Self {
            limits,
            users: BTreeMap::new(),
            addrs: BTreeMap::new(),
        }
    }

    /// `Ok` when `user` from `addr` may try to log in now, else how long to wait.
    ///
    /// # Errors
    /// The username or the address has reached its limit; the error is the wait.
    pub fn check(
        &mut self,
        now: Instant,
        user: &str,
        addr: Option<IpAddr>,
    ) -> Result<(), Duration> {
        let window = self.limits.window;
        let key = user_key(user);
        let mut wait = None;
        if let Some(f) = self.users.get_mut(&key) {
            f.prune(now, window);
            wait = f.blocked_for(now, window, self.limits.max_user_failures);
        }
        if let Some(f) = addr.and_then(|a| self.addrs.get_mut(&a)) {
            f.prune(now, window);
            let w = f.blocked_for(now, window, self.limits.max_addr_failures);
            wait = wait.max(w);
        }
        wait.map_or(Ok(()), Err)
    }

    /// Counts a failed login of `user` from `addr`.
    pub fn record_failure(&mut self, now: Instant, user: &str, addr: Option<IpAddr>) {
        let limits = self.limits;
        record(
            &mut self.users,
            user_key(user),
            now,
            limits,
            limits.max_user_failures,
        );
        if let Some(a) = addr {
            record(&mut self.addrs, a, now, limits, limits.max_addr_failures);
        }
    }

    /// `Ok` when `addr` may try again now (its failures only; for token refreshes), else how
    /// long to wait.
    ///
    /// # Errors
    /// The address has reached its limit; the error is the wait.
    pub fn check_addr(&mut self, now: Instant, addr: Option<IpAddr>) -> Result<(), Duration> {
        let window = self.limits.window;
        let Some(f) = addr.and_then(|a| self.addrs.get_mut(&a)) else {
            return Ok(());
        };
        f.prune(now, window);
        f.blocked_for(now, window, self.limits.max_addr_failures)
            .map_or(Ok(()), Err)
    }

    /// Counts a failure of `addr` alone (a bad refresh token names no username).
    pub fn record_addr_failure(&mut self, now: Instant, addr: Option<IpAddr>) {
        let limits = self.limits;
        if let Some(a) = addr {
            record(&mut self.addrs, a, now, limits, limits.max_addr_failures);
        }
    }

    /// Forgets the failures of `user` (after a successful login).
    pub fn record_success(&mut self, user: &str) {
        self.users.remove(&user_key(user));
    }

    /// How many usernames and addresses are tracked.
    #[must_use]
    pub fn tracked(&self) -> (usize, usize) {
        (self.users.len(), self.addrs.len())
    }
}

/// The map key of a username: lower case (logins match case-insensitively), truncated.
fn user_key(user: &str) -> String {
    user.chars()
        .take(MAX_KEY_CHARS)
        .flat_map(char::to_lowercase)
        .collect()
}

fn record<K: Ord + Clone>(
    map: &mut BTreeMap<K, Failures>,
    key: K,
    now: Instant,
    limits: LoginLimits,
    max: usize,
) {
    if !map.contains_key(&key) && map.len() >= limits.max_entries.max(1) {
        map.retain(|_, f| {
            f.prune(now, limits.window);
            !f.0.is_empty()
        });
        if map.len() >= limits.max_entries.max(1) {
            let stalest = map
                .iter()
                .min_by_key(|(_, f)| f.newest())
                .map(|(k, _)| k.clone());
            if let Some(k) = stalest {
                map.remove(&k);
            }
        }
    }
    map.entry(key).or_default().push(now, max);
}

/// A [`LoginLimiter`] shared between requests, reading the time from a [`Clock`].
pub struct LoginGuard {
    limiter: Mutex<LoginLimiter>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for LoginGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginGuard")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl LoginGuard {
    /// A guard with `limits` on `clock`.
    #[must_use]
    pub fn new(limits: LoginLimits, clock: Arc<dyn Clock>) -> Self {
        Self {
            limiter: Mutex::new(LoginLimiter::new(limits)),
            clock,
        }
    }

    /// See [`LoginLimiter::check`].
    ///
    /// # Errors
    /// The caller must wait the returned duration.
    pub fn check(&self, user: &str, addr: Option<IpAddr>) -> Result<(), Duration> {
        let now = self.clock.now();
        self.lock().check(now, user, addr)
    }

    /// See [`LoginLimiter::record_failure`].
    pub fn record_failure(&self, user: &str, addr: Option<IpAddr>) {
        let now = self.clock.now();
        self.lock().record_failure(now, user, addr);
    }

    /// See [`LoginLimiter::check_addr`].
    ///
    /// # Errors
    /// The caller must wait the returned duration.
    pub fn check_addr(&self, addr: Option<IpAddr>) -> Result<(), Duration> {
        let now = self.clock.now();
        self.lock().check_addr(now, addr)
    }

    /// See [`LoginLimiter::record_addr_failure`].
    pub fn record_addr_failure(&self, addr: Option<IpAddr>) {
        let now = self.clock.now();
        self.lock().record_addr_failure(now, addr);
    }

    /// See [`LoginLimiter::record_success`].
    pub fn record_success(&self, user: &str) {
        self.lock().record_success(user);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LoginLimiter> {
        // The limiter holds no invariant a panicking holder could break half-way.
        self.limiter.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));

    /// Virtual time: a fixed origin plus offsets.
    fn t0() -> Instant {
        SystemClock.now()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn five_user_failures_block_until_the_oldest_leaves_the_window() {
        let t = t0();
        let mut l = LoginLimiter::new(LoginLimits::default());
        for i in 0..5 {
            assert_eq!(l.check(t + secs(i * 10), "ana", None), Ok(()));
            l.record_failure(t + secs(i * 10), "ana", None);
        }
        // The first failure was at t; it leaves the window at t+300.
        assert_eq!(l.check(t + secs(40), "ana", None), Err(secs(260)));
        assert_eq!(l.check(t + secs(299), "ANA", None), Err(secs(1)));
        assert_eq!(l.check(t + secs(300), "ana", None), Ok(()));
        // Another user is not affected.
        assert_eq!(l.check(t + secs(40), "bob", None), Ok(()));
    }

    #[test]
    fn success_clears_the_user_but_not_the_address() {
        let t = t0();
        let limits = LoginLimits {
            max_addr_failures: 6,
            ..LoginLimits::default()
        };
        let mut l = LoginLimiter::new(limits);
        for _ in 0..4 {
            l.record_failure(t, "ana", ADDR);
        }
        l.record_success("Ana");
        assert_eq!(l.check(t, "ana", None), Ok(()));
        l.record_failure(t + secs(1), "bob", ADDR);
        l.record_failure(t + secs(2), "carl", ADDR);
        // Six failures from the address, by three users: the address is blocked for everyone.
        assert_eq!(l.check(t + secs(2), "dora", ADDR), Err(secs(298)));
        assert_eq!(l.check(t + secs(2), "dora", None), Ok(()));
        let other = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(l.check(t + secs(2), "dora", other), Ok(()));
    }

    #[test]
    fn the_longer_wait_wins() {
        let t = t0();
        let limits = LoginLimits {
            max_user_failures: 1,
            max_addr_failures: 1,
            ..LoginLimits::default()
        };
        let mut l = LoginLimiter::new(limits);
        l.record_failure(t, "x", None);
        l.record_failure(t + secs(100), "y", ADDR);
        assert_eq!(l.check(t + secs(100), "x", ADDR), Err(secs(300)));
    }

    #[test]
    fn memory_is_bounded() {
        let t = t0();
        let limits = LoginLimits {
            max_entries: 100,
            ..LoginLimits::default()
        };
        let mut l = LoginLimiter::new(limits);
        for i in 0..1000u64 {
            l.record_failure(t + Duration::from_millis(i), &format!("user{i}"), None);
        }
        assert_eq!(l.tracked(), (100, 0));
        // The most recent failures are the ones kept.
        assert_eq!(l.check(t + secs(1), "user999", None), Ok(()));
        for _ in 0..4 {
            l.record_failure(t + secs(1), "user999", None);
        }
        assert!(l.check(t + secs(1), "user999", None).is_err());
        // Expired keys are pruned first once the map is full.
        for i in 0..100u64 {
            l.record_failure(t + secs(400), &format!("late{i}"), None);
        }
        assert_eq!(l.tracked(), (100, 0));
        assert_eq!(l.check(t + secs(400), "user999", None), Ok(()));
        // Each key keeps at most its limit of timestamps; long names are truncated.
        let long = "z".repeat(10_000);
        for _ in 0..50 {
            l.record_failure(t + secs(500), &long, None);
        }
        let key = user_key(&long);
        assert_eq!(key.len(), MAX_KEY_CHARS);
        assert_eq!(l.users.get(&key).map(|f| f.0.len()), Some(5));
    }

    #[test]
    fn guard_reads_its_clock() {
        #[derive(Debug)]
        struct Fixed(Mutex<Instant>);
        impl Clock for Fixed {
            fn now(&self) -> Instant {
                *self.0.lock().unwrap()
            }
        }
        let start = t0();
        let clock = Arc::new(Fixed(Mutex::new(start)));
        let guard = LoginGuard::new(LoginLimits::default(), clock.clone());
        for _ in 0..5 {
            guard.record_failure("ana", ADDR);
        }
        assert_eq!(guard.check("ana", ADDR), Err(secs(300)));
        *clock.0.lock().unwrap() = start + secs(301);
        assert_eq!(guard.check("ana", ADDR), Ok(()));
    }
}
