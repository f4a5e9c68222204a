//! What the edge says about its host: name, addresses and interfaces (for Hello), and the
//! daemon's CPU and memory use (for heartbeats), read from the kernel.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ims_proto::{InterfaceInfo, MacAddr};

/// Kernel clock ticks per second in `/proc/self/stat` (`USER_HZ`, 100 on every Linux ABI that
/// runs this daemon).
const USER_HZ: f64 = 100.0;

/// The host's name (`/proc/sys/kernel/hostname`), or `netbootd` when unreadable.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "netbootd".to_owned())
}

/// Every non-loopback address of the host, and the named interfaces with their MAC and
/// addresses (an interface that does not exist is listed without either).
pub(crate) fn addresses_and_interfaces(names: &[String]) -> (Vec<IpAddr>, Vec<InterfaceInfo>) {
    let mut addresses = Vec::new();
    let mut by_name: BTreeMap<String, InterfaceInfo> = names
        .iter()
        .map(|n| {
            (
                n.clone(),
                InterfaceInfo {
                    name: n.clone(),
                    mac: None,
                    addresses: Vec::new(),
                },
            )
        })
        .collect();
    if let Ok(list) = nix::ifaddrs::getifaddrs() {
        for entry in list {
            let Some(addr) = entry.address else { continue };
            let ip = addr
                .as_sockaddr_in()
                .map(|a| IpAddr::V4(a.ip()))
                .or_else(|| addr.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())));
            let info = by_name.get_mut(&entry.interface_name);
            match (ip, info) {
                (Some(ip), info) => {
                    if !ip.is_loopback() && !addresses.contains(&ip) {
                        addresses.push(ip);
                    }
                    if let Some(info) = info {
                        info.addresses.push(ip);
                    }
                }
                (None, Some(info)) => {
                    if let Some(mac) = addr.as_link_addr().and_then(|l| l.addr()) {
                        info.mac = Some(MacAddr(mac));
                    }
                }
                (None, None) => {}
            }
        }
    }
    let interfaces = names.iter().filter_map(|n| by_name.remove(n)).collect();
    (addresses, interfaces)
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat`.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) / USER_HZ))
}

/// Resident memory of this process in bytes (`VmRSS` in `/proc/self/status`).
pub(crate) fn rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb.saturating_mul(1024))
}

/// CPU use between two samples, as a percentage of one core.
#[derive(Debug)]
pub(crate) struct CpuMeter {
    last: Option<(Duration, Duration)>,
}

impl CpuMeter {
    pub(crate) fn new() -> Self {
        Self { last: None }
    }

    /// Percent of one core used since the previous call (0 on the first), `now` being the
    /// wall time since any fixed origin.
    pub(crate) fn sample(&mut self, now: Duration) -> f64 {
        let Some(cpu) = cpu_time() else { return 0.0 };
        let percent = match self.last {
            Some((then, cpu_then)) if now > then => {
                100.0 * cpu.saturating_sub(cpu_then).as_secs_f64() / (now - then).as_secs_f64()
            }
            _ => 0.0,
        };
        self.last = Some((now, cpu));
        percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(rss_bytes() > 0);
        assert!(cpu_time().is_some());
        let mut meter = CpuMeter::new();
        assert_eq!(meter.sample(Duration::from_secs(1)), 0.0);
        // Burn a little CPU so the next sample is positive but sane.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let p = meter.sample(Duration::from_secs(1) + Duration::from_millis(100));
        assert!((0.0..=10_000.0).contains(&p), "{p}");
        assert!(!hostname().is_empty());
        let (addrs, ifaces) = addresses_and_interfaces(&["lo".to_owned(), "nope0".to_owned()]);
        assert!(addrs.iter().all(|a| !a.is_loopback()));
        assert_eq!(ifaces.len(), 2);
        assert!(ifaces[0].addresses.iter().any(IpAddr::is_loopback));
        assert!(ifaces[1].addresses.is_empty() && ifaces[1].mac.is_none());
    }
}
