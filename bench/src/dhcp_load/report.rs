//! What a load run measured: counters, throughput and latency percentiles, as one summary line
//! or JSON.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// Event counts of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// DORAs started (first DISCOVER sent).
    pub started: u64,
    /// DORAs that got the ACK for the offered address.
    pub completed: u64,
    /// DORAs that got no OFFER within all tries.
    pub failed_no_offer: u64,
    /// DORAs that got no ACK within all tries.
    pub failed_no_ack: u64,
    /// DORAs answered with a NAK.
    pub failed_nak: u64,
    /// DORAs ACKed with another address than the one offered.
    pub failed_wrong_address: u64,
    /// DORAs still outstanding when the run was cut off by its time bound.
    pub unfinished: u64,
    /// Distinct client MACs that completed a DORA (what the server should hold leases for).
    pub acked_macs: u64,
    /// DISCOVERs sent, retransmissions included.
    pub discovers_sent: u64,
    /// REQUESTs sent, retransmissions included.
    pub requests_sent: u64,
    /// Retransmissions (of either kind).
    pub retransmits: u64,
    /// OFFERs received.
    pub offers: u64,
    /// ACKs received.
    pub acks: u64,
    /// NAKs received.
    pub naks: u64,
    /// Well-formed replies matching no outstanding exchange (late, duplicate or unexpected).
    pub stray: u64,
    /// Received datagrams that were not a DHCP reply.
    pub malformed: u64,
}

impl Counters {
    /// DORAs that ended without an ACK for the offered address.
    pub fn failed(&self) -> u64 {
        self.failed_no_offer + self.failed_no_ack + self.failed_nak + self.failed_wrong_address
    }
}

/// Full-DORA latency percentiles (first DISCOVER sent → ACK received), in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `samples` (all zero when empty).
    pub fn from_samples(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let rank = |p: f64| {
            let i = (p / 100.0 * sorted.len() as f64).ceil() as usize;
            ms(sorted[i.clamp(1, sorted.len()) - 1])
        };
        let total: Duration = sorted.iter().sum();
        Self {
            p50_ms: rank(50.0),
            p90_ms: rank(90.0),
            p99_ms: rank(99.0),
            max_ms: rank(100.0),
            mean_ms: ms(total) / sorted.len() as f64,
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Event counts (flattened into the JSON object).
    #[serde(flatten)]
    pub counters: Counters,
    /// DORAs that ended without an ACK for the offered address.
    pub failed: u64,
    /// From the first DISCOVER to the last finished exchange (or the cut-off), seconds.
    pub elapsed_s: f64,
    /// Completed DORAs per second over `elapsed_s`.
    pub dora_per_s: f64,
    /// Completed DORAs per second while the load was on: those completed by the time the last
    /// DORA started, over the time from the first to the last start. Falls back to
    /// `dora_per_s` when every DORA started at once.
    pub sustained_dora_per_s: f64,
    /// Full-DORA latency.
    pub latency: Latency,
    /// The generator's own CPU time (user + system) over the run, seconds; set by the driver.
    pub generator_cpu_s: Option<f64>,
}

impl Report {
    /// Builds the report from counters, the run's length, the load window (time from the first
    /// to the last start, and DORAs completed by then) and the completed DORAs' latencies.
    pub fn new(
        counters: Counters,
        elapsed: Duration,
        load_window: Option<(Duration, u64)>,
        latencies: &[Duration],
    ) -> Self {
        let rate = |n: u64, d: Duration| {
            let secs = d.as_secs_f64();
            if secs > 0.0 { n as f64 / secs } else { 0.0 }
        };
        let dora_per_s = rate(counters.completed, elapsed);
        let sustained_dora_per_s = match load_window {
            Some((window, completed)) if !window.is_zero() && completed > 0 => {
                rate(completed, window)
            }
            _ => dora_per_s,
        };
        Self {
            sustained_dora_per_s,
            elapsed_s: elapsed.as_secs_f64(),
            failed: counters.failed(),
            counters,
            dora_per_s,
            latency: Latency::from_samples(latencies),
            generator_cpu_s: None,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counters;
        write!(
            f,
            "{:.0} DORA/s ({:.0} sustained): {} completed, {} failed (no offer {}, no ack {}, nak {}, wrong address \
             {}), {} unfinished in {:.2} s; latency p50 {:.2} ms p90 {:.2} ms p99 {:.2} ms max \
             {:.2} ms; {} retransmits, {} stray",
            self.dora_per_s,
            self.sustained_dora_per_s,
            c.completed,
            self.failed,
            c.failed_no_offer,
            c.failed_no_ack,
            c.failed_nak,
            c.failed_wrong_address,
            c.unfinished,
            self.elapsed_s,
            self.latency.p50_ms,
            self.latency.p90_ms,
            self.latency.p99_ms,
            self.latency.max_ms,
            c.retransmits,
            c.stray,
        )?;
        crate::write_generator_cpu(f, self.generator_cpu_s, self.elapsed_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let l = Latency::from_samples(&samples);
        assert_eq!(
            (l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms),
            (50.0, 90.0, 99.0, 100.0)
        );
        assert!((l.mean_ms - 50.5).abs() < 1e-9);
        let one = Latency::from_samples(&[Duration::from_micros(1500)]);
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (1.5, 1.5, 1.5));
        assert_eq!(Latency::from_samples(&[]), Latency::default());
    }

    #[test]
    fn rate_and_json_fields() {
        let counters = Counters {
            completed: 500,
            failed_nak: 2,
            failed_no_ack: 1,
            ..Counters::default()
        };
        let window = Some((Duration::from_millis(200), 450));
        let r = Report::new(
            counters,
            Duration::from_millis(250),
            window,
            &[Duration::from_millis(3)],
        );
        assert_eq!(r.failed, 3);
        assert!((r.dora_per_s - 2000.0).abs() < 1e-9);
        assert!((r.sustained_dora_per_s - 2250.0).abs() < 1e-9);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["completed"], 500);
        assert_eq!(json["failed"], 3);
        assert_eq!(json["latency"]["p99_ms"], 3.0);
        assert!(
            r.to_string()
                .starts_with("2000 DORA/s (2250 sustained): 500 completed, 3 failed")
        );
        // Everything started at once, or nothing completed in the window: the overall rate.
        let all_at_once = Report::new(
            r.counters.clone(),
            Duration::from_secs(1),
            Some((Duration::ZERO, 0)),
            &[],
        );
        assert_eq!(all_at_once.sustained_dora_per_s, 500.0);
    }
}
