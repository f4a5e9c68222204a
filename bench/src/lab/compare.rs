//! The boot-storm comparison: the same machines fetch their boot file (DHCP + TFTP) through one
//! server, then another; per server, the time until all have it, per-machine percentiles,
//! failures, and the server's CPU time and peak RSS; then the ratios.

use std::fmt::Write as _;
use std::time::Duration;

use super::machine::Outcome;
use super::procs::Usage;
use crate::dhcp_load::report::Latency;

/// One server's storm.
#[derive(Debug, Clone)]
pub struct ServerRun {
    /// Server name.
    pub server: String,
    /// Machines in the storm.
    pub machines: usize,
    /// Machines that got their boot file.
    pub ok: usize,
    /// From the start of the storm until the last machine had its boot file.
    pub all_done: Duration,
    /// Per machine: first DISCOVER until the boot file was complete.
    pub per_machine: Latency,
    /// DHCP part (DISCOVER → ACK) per machine.
    pub dhcp: Latency,
    /// CPU time the server used during the storm (utime + stime), seconds.
    pub cpu_s: Option<f64>,
    /// The server's peak RSS (VmHWM) after the storm, KiB.
    pub peak_rss_kib: Option<u64>,
    /// DHCPNAKs the machines got (each restarted its DORA).
    pub naks: u64,
}

impl ServerRun {
    /// Summarise a storm's outcomes and the server's use before and after.
    pub fn new(
        server: &str,
        outcomes: &[Outcome],
        all_done: Duration,
        before: Option<Usage>,
        after: Option<Usage>,
    ) -> Self {
        let boot: Vec<Duration> = outcomes.iter().filter_map(|o| o.boot_file).collect();
        let dhcp: Vec<Duration> = outcomes
            .iter()
            .filter_map(|o| o.dhcp.as_ref()?.as_ref().ok().copied())
            .collect();
        Self {
            server: server.to_owned(),
            machines: outcomes.len(),
            ok: boot.len(),
            all_done,
            per_machine: Latency::from_samples(&boot),
            dhcp: Latency::from_samples(&dhcp),
            cpu_s: match (before, after) {
                (Some(b), Some(a)) => Some(a.cpu_s - b.cpu_s),
                _ => None,
            },
            peak_rss_kib: after.map(|a| a.peak_rss_kib),
            naks: 0,
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

/// The comparison table: one row per server, then `other / first` ratios.
pub fn table(runs: &[ServerRun]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<10} {:>9} {:>12} {:>12} {:>12} {:>12} {:>6} {:>9} {:>10}",
        "server",
        "boot file",
        "all done s",
        "p50 ms",
        "p99 ms",
        "DHCP p99 ms",
        "NAKs",
        "CPU s",
        "RSS MiB"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "  {:<10} {:>9} {:>12.2} {:>12.1} {:>12.1} {:>12.1} {:>6} {:>9} {:>10}",
            r.server,
            format!("{}/{}", r.ok, r.machines),
            r.all_done.as_secs_f64(),
            r.per_machine.p50_ms,
            r.per_machine.p99_ms,
            r.dhcp.p99_ms,
            r.naks,
            opt(r.cpu_s, 2),
            opt(r.peak_rss_kib.map(|k| k as f64 / 1024.0), 1),
        );
    }
    if let [first, rest @ ..] = runs {
        for r in rest {
            let ratio = |a: f64, b: f64| {
                if b > 0.0 {
                    format!("{:.2}×", a / b)
                } else {
                    "-".to_owned()
                }
            };
            let _ = writeln!(
                out,
                "  {} / {}: all done {}, p99 {}, CPU {}, RSS {}",
                r.server,
                first.server,
                ratio(r.all_done.as_secs_f64(), first.all_done.as_secs_f64()),
                ratio(r.per_machine.p99_ms, first.per_machine.p99_ms),
                match (r.cpu_s, first.cpu_s) {
                    (Some(a), Some(b)) => ratio(a, b),
                    _ => "-".to_owned(),
                },
                match (r.peak_rss_kib, first.peak_rss_kib) {
                    (Some(a), Some(b)) => ratio(a as f64, b as f64),
                    _ => "-".to_owned(),
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_ratios() {
        let ok = |ms: u64| Outcome {
            dhcp: Some(Ok(Duration::from_millis(ms / 2))),
            boot_file: Some(Duration::from_millis(ms)),
            ..Outcome::default()
        };
        let failed = Outcome {
            dhcp: Some(Err("no OFFER".to_owned())),
            ..Outcome::default()
        };
        let a = ServerRun::new(
            "netbootd",
            &[ok(100), ok(200), failed],
            Duration::from_secs(1),
            Some(Usage {
                cpu_s: 1.0,
                peak_rss_kib: 1,
            }),
            Some(Usage {
                cpu_s: 1.5,
                peak_rss_kib: 10240,
            }),
        );
        assert_eq!((a.ok, a.machines), (2, 3));
        assert_eq!(a.cpu_s, Some(0.5));
        assert_eq!(a.per_machine.p99_ms, 200.0);
        let b = ServerRun::new("dnsmasq", &[ok(400)], Duration::from_secs(3), None, None);
        let t = table(&[a, b]);
        assert!(
            t.contains("dnsmasq / netbootd: all done 3.00×, p99 2.00×, CPU -"),
            "{t}"
        );
        assert!(t.contains("10.0"), "{t}");
    }
}
