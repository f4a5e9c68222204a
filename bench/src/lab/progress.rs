//! Progress bars per phase while the lab runs, and the final table.
//!
//! [`Progress`] is a set of atomic counters the machines bump; [`render`] draws one bar per
//! phase (redrawn in place with ANSI cursor movement on a terminal, a plain line every few
//! seconds otherwise, so logs of CI runs stay readable).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::dhcp_load::report::Latency;

/// The phases of a boot, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Machines registered over REST.
    Register,
    /// DORA with PXE options.
    Dhcp,
    /// Boot file over TFTP.
    Tftp,
    /// iPXE script, kernel and initrd over HTTP.
    Http,
    /// POST /phone-home/{mac}.
    PhoneHome,
    /// Seen ACTIVE in the REST API.
    Active,
}

/// Every phase, in order.
pub const PHASES: [Phase; 6] = [
    Phase::Register,
    Phase::Dhcp,
    Phase::Tftp,
    Phase::Http,
    Phase::PhoneHome,
    Phase::Active,
];

impl Phase {
    /// Its label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Dhcp => "DHCP",
            Self::Tftp => "TFTP",
            Self::Http => "HTTP",
            Self::PhoneHome => "phone-home",
            Self::Active => "ACTIVE",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters per phase: machines done and failed.
#[derive(Debug)]
pub struct Progress {
    total: u64,
    done: [AtomicU64; 6],
    failed: [AtomicU64; 6],
    skipped: [AtomicU64; 6],
}

impl Progress {
    /// Counters for `total` machines.
    pub fn new(total: u64) -> Self {
        Self {
            total,
            done: Default::default(),
            failed: Default::default(),
            skipped: Default::default(),
        }
    }

    /// Machine count.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// One machine finished `phase`, well or not.
    pub fn finish(&self, phase: Phase, ok: bool) {
        let slot = if ok { &self.done } else { &self.failed };
        slot[phase.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// One machine does not go through `phase` (a QEMU machine's iPXE ROM fetches no boot file
    /// over TFTP): its bar counts one machine fewer.
    pub fn skip(&self, phase: Phase) {
        self.skipped[phase.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Machines that do not go through `phase` (see [`Progress::skip`]).
    pub fn skipped(&self, phase: Phase) -> u64 {
        self.skipped[phase.index()].load(Ordering::Relaxed)
    }

    /// Set the done count of `phase` (for phases observed from outside, such as ACTIVE).
    pub fn set_done(&self, phase: Phase, n: u64) {
        self.done[phase.index()].store(n, Ordering::Relaxed);
    }

    /// Done and failed counts of `phase`.
    pub fn get(&self, phase: Phase) -> (u64, u64) {
        (
            self.done[phase.index()].load(Ordering::Relaxed),
            self.failed[phase.index()].load(Ordering::Relaxed),
        )
    }

    /// Reset every phase except registration (a second round of the same machines).
    pub fn reset_boot(&self) {
        for p in PHASES.iter().skip(1) {
            self.done[p.index()].store(0, Ordering::Relaxed);
            self.failed[p.index()].store(0, Ordering::Relaxed);
            self.skipped[p.index()].store(0, Ordering::Relaxed);
        }
    }
}

/// The bars, one line per phase in `phases`, and the elapsed time (nothing without phases).
pub fn render(p: &Progress, phases: &[Phase], elapsed: Duration) -> String {
    let width = 40u64;
    let mut out = String::new();
    if phases.is_empty() {
        return out;
    }
    for &phase in phases {
        let (done, failed) = p.get(phase);
        let skipped = p.skipped(phase);
        let of = p.total().saturating_sub(skipped);
        let filled = ((done + failed) * width / of.max(1)).min(width);
        let bar: String = (0..width)
            .map(|i| if i < filled { '#' } else { '.' })
            .collect();
        let _ = write!(out, "  {:<10} [{bar}] {done:>5}/{of} ok", phase.label(),);
        if failed > 0 {
            let _ = write!(out, ", {failed} failed");
        }
        if skipped > 0 {
            let _ = write!(out, " ({skipped} not applicable)");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "  elapsed {:.1} s", elapsed.as_secs_f64());
    out
}

/// One row of the final table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Phase label.
    pub label: String,
    /// Machines that finished it.
    pub ok: usize,
    /// Machines that failed it (or did not reach it in time).
    pub failed: usize,
    /// Percentiles of the successful ones.
    pub latency: Latency,
}

impl Row {
    /// A row from the successful durations and the failure count.
    pub fn new(label: &str, samples: &[Duration], failed: usize) -> Self {
        Self {
            label: label.to_owned(),
            ok: samples.len(),
            failed,
            latency: Latency::from_samples(samples),
        }
    }
}

/// The final table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<12} {:>6} {:>7} {:>10} {:>10} {:>10}",
        "phase", "ok", "failed", "p50 ms", "p99 ms", "max ms"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "  {:<12} {:>6} {:>7} {:>10.1} {:>10.1} {:>10.1}",
            r.label, r.ok, r.failed, r.latency.p50_ms, r.latency.p99_ms, r.latency.max_ms
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_table() {
        let p = Progress::new(4);
        p.finish(Phase::Dhcp, true);
        p.finish(Phase::Dhcp, true);
        p.finish(Phase::Dhcp, false);
        let text = render(&p, &[Phase::Dhcp], Duration::from_secs(1));
        assert!(text.contains("2/4 ok, 1 failed"), "{text}");
        assert!(text.contains(&"#".repeat(30)), "{text}");
        assert_eq!(render(&p, &[], Duration::from_secs(1)), "");
        p.skip(Phase::Tftp);
        p.finish(Phase::Tftp, true);
        let text = render(&p, &[Phase::Tftp], Duration::from_secs(1));
        assert!(text.contains("1/3 ok (1 not applicable)"), "{text}");
        let row = Row::new(
            "DHCP",
            &[Duration::from_millis(10), Duration::from_millis(30)],
            1,
        );
        assert_eq!(row.latency.p99_ms, 30.0);
        let t = table(&[row]);
        assert!(t.contains("DHCP"), "{t}");
        assert!(t.contains("30.0"), "{t}");
    }
}
