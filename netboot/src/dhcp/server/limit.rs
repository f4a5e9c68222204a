//! A log-line budget on virtual time: at most N lines per minute, with a count of what was
//! suppressed.

use crate::dhcp::UnixTime;

/// Length of a budget window, in seconds.
const WINDOW: u64 = 60;

/// What to do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Verdict {
    /// Log this event.
    pub(super) log: bool,
    /// A window just closed having suppressed this many events: log a summary first.
    pub(super) suppressed: Option<u64>,
}

/// A token bucket refilled to `per_minute` tokens once a minute.
#[derive(Debug, Clone)]
pub(super) struct LogLimiter {
    per_minute: u32,
    window_start: Option<UnixTime>,
    used: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter allowing `per_minute` lines per minute (0 = none).
    pub(super) fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            window_start: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// Account for one event at `now`.
    pub(super) fn check(&mut self, now: UnixTime) -> Verdict {
        let mut summary = None;
        let expired = self
            .window_start
            .is_none_or(|start| now < start || start.until(now) >= WINDOW);
        if expired {
            if self.suppressed > 0 {
                summary = Some(self.suppressed);
            }
            self.window_start = Some(now);
            self.used = 0;
            self.suppressed = 0;
        }
        let log = self.used < self.per_minute;
        if log {
            self.used += 1;
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
        }
        Verdict {
            log,
            suppressed: summary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_per_minute_with_summary() {
        let mut l = LogLimiter::new(2);
        let t = UnixTime(1000);
        let v: Vec<bool> = (0..5).map(|_| l.check(t).log).collect();
        assert_eq!(v, [true, true, false, false, false]);
        // Still inside the window.
        assert_eq!(
            l.check(t.plus(59)),
            Verdict {
                log: false,
                suppressed: None
            }
        );
        // New window: summary of the 4 suppressed, and this one is logged.
        assert_eq!(
            l.check(t.plus(60)),
            Verdict {
                log: true,
                suppressed: Some(4)
            }
        );
        assert_eq!(
            l.check(t.plus(200)),
            Verdict {
                log: true,
                suppressed: None
            }
        );
    }

    #[test]
    fn zero_budget_logs_only_summaries() {
        let mut l = LogLimiter::new(0);
        assert!(!l.check(UnixTime(5)).log);
        assert!(!l.check(UnixTime(6)).log);
        assert_eq!(l.check(UnixTime(100)).suppressed, Some(2));
    }
}
