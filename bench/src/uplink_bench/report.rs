//! The figures of a run, from the edges' outcomes ([`Report::from_outcomes`], pure), printed as
//! a table (`Display`) or JSON (`Serialize`).

use std::collections::BTreeMap;

use serde::Serialize;
use tokio::time::Instant;

use super::edge::EdgeOutcome;
use crate::dhcp_load::Latency;

/// Heartbeat counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Heartbeats {
    /// Heartbeats sent during the whole run.
    pub sent: usize,
    /// Of those, acknowledged.
    pub acked: usize,
    /// Sent and never acknowledged (within the drain time after the stop, or the connection
    /// was lost first).
    pub unacked: usize,
    /// Heartbeats sent in the steady window.
    pub steady_sent: usize,
    /// Of those, acknowledged.
    pub steady_acked: usize,
    /// Heartbeats per second in the steady window.
    pub steady_per_s: f64,
}

/// The result of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Simulated edges started.
    pub edges: usize,
    /// Edges that enrolled.
    pub enrolled: usize,
    /// Edges whose session came up (Welcome and Snapshot received, SnapshotAck sent).
    pub connected: usize,
    /// Edges whose session was still up at the stop.
    pub alive_at_end: usize,
    /// Edges still setting up at the stop (set-up bound reached).
    pub unfinished: usize,
    /// The heartbeat interval from Welcome (the largest, if they differed), milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Seconds from the start until the last enrolment finished.
    pub enrol_total_s: f64,
    /// Seconds from the start until every edge's set-up had ended (the steady window starts).
    pub setup_total_s: f64,
    /// Time of one enrolment: key and CSR, handshake, request, answer.
    pub enrol: Latency,
    /// Time of one uplink set-up: mTLS handshake, Hello, Welcome, Snapshot.
    pub connect: Latency,
    /// Length of the steady window (all set-ups ended, heartbeats only), seconds.
    pub steady_s: f64,
    /// Start of the steady window, UNIX milliseconds (to line up server samples).
    pub steady_from_unix_ms: i64,
    /// End of the steady window, UNIX milliseconds.
    pub steady_to_unix_ms: i64,
    /// Heartbeat counts.
    pub heartbeats: Heartbeats,
    /// Heartbeat round trips (Heartbeat sent → HeartbeatAck read) of heartbeats sent in the
    /// steady window.
    pub rtt: Latency,
    /// Round trips of every acknowledged heartbeat, set-up phase included.
    pub rtt_all: Latency,
    /// Edges ended early, by kind.
    pub failures: BTreeMap<String, usize>,
    /// The first message of each failure kind.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub first_errors: BTreeMap<String, String>,
    /// Wall time of the whole run, seconds.
    pub elapsed_s: f64,
    /// CPU time of the generator process, seconds.
    pub generator_cpu_s: Option<f64>,
}

/// The times that frame a run.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    /// When the first edge started.
    pub started: Instant,
    /// When every set-up had ended (or the set-up bound hit): the steady window's start.
    pub steady_from: Instant,
    /// When the edges were told to stop.
    pub steady_to: Instant,
    /// `steady_from` in UNIX milliseconds.
    pub steady_from_unix_ms: i64,
    /// `steady_to` in UNIX milliseconds.
    pub steady_to_unix_ms: i64,
    /// When the last edge had finished.
    pub finished: Instant,
}

impl Report {
    /// Adds up the edges' outcomes.
    #[must_use]
    pub fn from_outcomes(outcomes: &[EdgeOutcome], frame: &Frame) -> Self {
        let mut r = Self {
            edges: outcomes.len(),
            steady_s: (frame.steady_to - frame.steady_from).as_secs_f64(),
            setup_total_s: (frame.steady_from - frame.started).as_secs_f64(),
            steady_from_unix_ms: frame.steady_from_unix_ms,
            steady_to_unix_ms: frame.steady_to_unix_ms,
            elapsed_s: (frame.finished - frame.started).as_secs_f64(),
            ..Self::default()
        };
        let mut enrol = Vec::new();
        let mut connect = Vec::new();
        let mut rtt = Vec::new();
        let mut rtt_all = Vec::new();
        let mut last_enrolled = frame.started;
        for o in outcomes {
            if let Some((at, took)) = o.enrolled {
                r.enrolled += 1;
                enrol.push(took);
                last_enrolled = last_enrolled.max(at);
            }
            if let Some(took) = o.connected {
                r.connected += 1;
                connect.push(took);
            }
            r.alive_at_end += usize::from(o.alive_at_stop);
            r.unfinished += usize::from(o.unfinished);
            r.heartbeat_interval_ms = r.heartbeat_interval_ms.max(o.interval_ms.unwrap_or(0));
            for &(sent, ack) in &o.heartbeats {
                let steady = sent >= frame.steady_from && sent < frame.steady_to;
                r.heartbeats.sent += 1;
                r.heartbeats.steady_sent += usize::from(steady);
                if let Some(d) = ack {
                    r.heartbeats.acked += 1;
                    rtt_all.push(d);
                    if steady {
                        r.heartbeats.steady_acked += 1;
                        rtt.push(d);
                    }
                }
            }
            if let Some(f) = &o.failure {
                *r.failures.entry(f.kind.clone()).or_default() += 1;
                r.first_errors
                    .entry(f.kind.clone())
                    .or_insert_with(|| f.message.clone());
            }
        }
        if r.unfinished > 0 {
            r.failures.insert("setup_unfinished".into(), r.unfinished);
        }
        r.heartbeats.unacked = r.heartbeats.sent - r.heartbeats.acked;
        if r.steady_s > 0.0 {
            #[allow(clippy::cast_precision_loss)]
            let n = r.heartbeats.steady_sent as f64;
            r.heartbeats.steady_per_s = n / r.steady_s;
        }
        r.enrol_total_s = (last_enrolled - frame.started).as_secs_f64();
        r.enrol = Latency::from_samples(&enrol);
        r.connect = Latency::from_samples(&connect);
        r.rtt = Latency::from_samples(&rtt);
        r.rtt_all = Latency::from_samples(&rtt_all);
        r
    }

    /// Edges that failed, all kinds together.
    #[must_use]
    pub fn failed(&self) -> usize {
        self.failures.values().sum()
    }
}

fn lat(f: &mut std::fmt::Formatter<'_>, name: &str, l: &Latency) -> std::fmt::Result {
    writeln!(
        f,
        "{name:<28} p50 {:>8.2} ms  p90 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
        l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
    )
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<28} {} of {} ({} enrolled, {} still up at the end)",
            "edges connected", self.connected, self.edges, self.enrolled, self.alive_at_end
        )?;
        writeln!(
            f,
            "{:<28} {:.1} s for all (set-ups done after {:.1} s)",
            "enrolment", self.enrol_total_s, self.setup_total_s
        )?;
        lat(f, "  one enrolment", &self.enrol)?;
        lat(f, "  one uplink set-up", &self.connect)?;
        let h = &self.heartbeats;
        writeln!(
            f,
            "{:<28} {} sent, {} acked, {} unacked; steady window {:.1} s: {} sent ({:.1}/s), \
             {} acked (interval {} ms)",
            "heartbeats",
            h.sent,
            h.acked,
            h.unacked,
            self.steady_s,
            h.steady_sent,
            h.steady_per_s,
            h.steady_acked,
            self.heartbeat_interval_ms
        )?;
        lat(f, "heartbeat RTT (steady)", &self.rtt)?;
        lat(f, "heartbeat RTT (whole run)", &self.rtt_all)?;
        if self.failures.is_empty() {
            write!(f, "{:<28} none", "failures")?;
        } else {
            write!(f, "{:<28}", "failures")?;
            for (kind, n) in &self.failures {
                write!(f, " {kind}={n}")?;
            }
            for (kind, msg) in &self.first_errors {
                write!(f, "\n  first {kind}: {msg}")?;
            }
        }
        write!(f, "\n{:<28} {:.1} s", "elapsed", self.elapsed_s)?;
        crate::write_generator_cpu(f, self.generator_cpu_s, self.elapsed_s)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::edge::Failure;
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn outcomes_add_up() {
        let t0 = Instant::now();
        let frame = Frame {
            started: t0,
            steady_from: t0 + ms(1_000),
            steady_to: t0 + ms(11_000),
            steady_from_unix_ms: 1_000,
            steady_to_unix_ms: 11_000,
            finished: t0 + ms(12_000),
        };
        let good = EdgeOutcome {
            enrolled: Some((t0 + ms(400), ms(300))),
            connected: Some(ms(20)),
            interval_ms: Some(10_000),
            heartbeats: vec![
                (t0 + ms(900), Some(ms(50))),   // before the steady window
                (t0 + ms(5_000), Some(ms(2))),  // steady
                (t0 + ms(10_999), None),        // steady, never acked
                (t0 + ms(11_000), Some(ms(3))), // after the stop: not steady
            ],
            alive_at_stop: true,
            ..EdgeOutcome::default()
        };
        let refused = EdgeOutcome {
            failure: Some(Failure {
                kind: "enrol_refused:InvalidToken".into(),
                message: "used".into(),
            }),
            ..EdgeOutcome::default()
        };
        let late = EdgeOutcome {
            unfinished: true,
            ..EdgeOutcome::default()
        };
        let r = Report::from_outcomes(&[good, refused.clone(), refused, late], &frame);
        assert_eq!(
            (r.edges, r.enrolled, r.connected, r.alive_at_end),
            (4, 1, 1, 1)
        );
        assert_eq!(r.heartbeats.sent, 4);
        assert_eq!(r.heartbeats.acked, 3);
        assert_eq!(r.heartbeats.unacked, 1);
        assert_eq!(
            (r.heartbeats.steady_sent, r.heartbeats.steady_acked),
            (2, 1)
        );
        assert!((r.heartbeats.steady_per_s - 0.2).abs() < 1e-9);
        assert!((r.rtt.p99_ms - 2.0).abs() < 1e-9, "{:?}", r.rtt);
        assert!((r.rtt_all.max_ms - 50.0).abs() < 1e-9);
        assert!((r.enrol_total_s - 0.4).abs() < 1e-9);
        assert!((r.setup_total_s - 1.0).abs() < 1e-9);
        assert!((r.steady_s - 10.0).abs() < 1e-9);
        assert_eq!(r.failures.get("enrol_refused:InvalidToken"), Some(&2));
        assert_eq!(r.failures.get("setup_unfinished"), Some(&1));
        assert_eq!(r.failed(), 3);
        assert_eq!(r.heartbeat_interval_ms, 10_000);
        let text = r.to_string();
        assert!(text.contains("1 of 4") && text.contains("enrol_refused:InvalidToken=2"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["heartbeats"]["steady_acked"], 1);
        assert!(json["rtt"]["p99_ms"].is_number());
    }
}
