//! The lab's virtual edge site: three network namespaces joined by a bridge.
//!
//! ```text
//!  netns imslab-<pid>-site: bridge br0 10.77.0.254/16 (ims-control: REST :8000, QUIC :7443)
//!     |-- veth --> netns imslab-<pid>-edge: edge0 10.77.0.1/16 (netbootd or dnsmasq)
//!     '-- veth --> netns imslab-<pid>-cli:  cli0  10.77.0.2/16 (the simulated machines)
//! ```
//!
//! The client namespace also routes the dynamic range 10.77.128.0/17 to `lo` as "local"
//! (AnyIP): a simulated machine binds its sockets to the address it leased, so the servers see
//! one source address per machine, as on a real rack, without 500 `ip addr add` calls.
//!
//! [`Site`] removes its namespaces (and so every veth and the bridge) on drop; threads that
//! must create sockets in a namespace use [`enter`] first (`setns` affects only the calling
//! thread, and sockets keep their namespace afterwards).

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

use super::LabError;

/// The bridge's address in the site namespace (where `ims-control` listens).
pub const CONTROL_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);
/// The edge server's address (`netbootd`, later `dnsmasq`).
pub const EDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The client namespace's own address (used before a machine has its lease).
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The site network.
pub const CIDR: &str = "10.77.0.0/16";
/// First address of the dynamic range handed to machines.
pub const RANGE_START: Ipv4Addr = Ipv4Addr::new(10, 77, 128, 1);
/// Last address of the dynamic range.
pub const RANGE_END: Ipv4Addr = Ipv4Addr::new(10, 77, 255, 254);
/// The edge's interface.
pub const EDGE_IF: &str = "edge0";
/// The clients' interface.
pub const CLIENT_IF: &str = "cli0";

/// Prefix of every namespace the lab creates.
pub const NS_PREFIX: &str = "imslab-";

/// The three namespaces; removed on drop.
#[derive(Debug)]
pub struct Site {
    /// Bridge and control plane.
    pub site_ns: String,
    /// Edge server.
    pub edge_ns: String,
    /// Simulated machines.
    pub client_ns: String,
    created: Vec<String>,
}

/// Run `ip ARGS`, failing with its output.
pub fn ip(args: &[&str]) -> Result<(), LabError> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Setup(format!("cannot run `ip`: {e} (install iproute2)")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Setup(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl Site {
    /// Create the namespaces, the bridge and the links (see the module docs).
    ///
    /// # Errors
    /// A failed `ip` command (not root, no iproute2, a name already taken); what was created
    /// so far is removed again.
    pub fn create() -> Result<Self, LabError> {
        let id = format!("{NS_PREFIX}{}", std::process::id());
        let mut site = Self {
            site_ns: format!("{id}-site"),
            edge_ns: format!("{id}-edge"),
            client_ns: format!("{id}-cli"),
            created: Vec::new(),
        };
        site.build()?;
        Ok(site)
    }

    fn build(&mut self) -> Result<(), LabError> {
        for ns in [&self.site_ns, &self.edge_ns, &self.client_ns] {
            ip(&["netns", "add", ns])?;
            self.created.push(ns.clone());
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let (s, e, c) = (&self.site_ns, &self.edge_ns, &self.client_ns);
        let prefix = CIDR.split('/').nth(1).unwrap_or("16");
        ip(&[
            "-n",
            s,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        ip(&[
            "-n",
            s,
            "addr",
            "add",
            &format!("{CONTROL_IP}/{prefix}"),
            "dev",
            "br0",
        ])?;
        ip(&["-n", s, "link", "set", "br0", "up"])?;
        for (port, peer, ns, mac) in [
            ("p-edge", EDGE_IF, e, "02:77:00:00:00:01"),
            ("p-cli", CLIENT_IF, c, "02:77:00:00:00:02"),
        ] {
            ip(&[
                "-n", s, "link", "add", port, "type", "veth", "peer", "name", peer, "netns", ns,
            ])?;
            ip(&["-n", s, "link", "set", port, "master", "br0"])?;
            ip(&["-n", s, "link", "set", port, "up"])?;
            ip(&["-n", ns, "link", "set", peer, "address", mac])?;
        }
        ip(&[
            "-n",
            e,
            "addr",
            "add",
            &format!("{EDGE_IP}/{prefix}"),
            "dev",
            EDGE_IF,
        ])?;
        ip(&["-n", e, "link", "set", EDGE_IF, "up"])?;
        ip(&[
            "-n",
            c,
            "addr",
            "add",
            &format!("{CLIENT_IP}/{prefix}"),
            "dev",
            CLIENT_IF,
        ])?;
        ip(&["-n", c, "link", "set", CLIENT_IF, "up"])?;
        ip(&[
            "-n",
            c,
            "route",
            "add",
            "local",
            "10.77.128.0/17",
            "dev",
            "lo",
        ])?;
        for ns in [e, c] {
            let iface = if ns == e { EDGE_IF } else { CLIENT_IF };
            wait_carrier(ns, iface)?;
        }
        Ok(())
    }

    /// Remove the namespaces now (also done on drop). Returns the ones that could not be
    /// removed.
    pub fn remove(&mut self) -> Vec<String> {
        let mut failed = Vec::new();
        for ns in self.created.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                failed.push(format!("{ns}: {e}"));
            }
        }
        failed
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        for f in self.remove() {
            eprintln!("ims-lab: could not remove namespace {f}");
        }
    }
}

/// Wait (at most 5 s) until `iface` in `ns` has carrier.
fn wait_carrier(ns: &str, iface: &str) -> Result<(), LabError> {
    for _ in 0..100 {
        let out = Command::new("ip")
            .args(["-n", ns, "-o", "link", "show", "dev", iface])
            .output()
            .map_err(|e| LabError::Setup(format!("cannot run `ip`: {e}")))?;
        if String::from_utf8_lossy(&out.stdout).contains("LOWER_UP") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(LabError::Setup(format!(
        "{iface} in {ns} has no carrier after 5 s"
    )))
}

/// Move the calling thread into network namespace `ns`.
///
/// # Errors
/// The namespace does not exist or `setns` is refused (not root).
pub fn enter(ns: &str) -> Result<(), LabError> {
    let path = PathBuf::from("/run/netns").join(ns);
    let fd = File::open(&path)
        .map_err(|e| LabError::Setup(format!("cannot open namespace {}: {e}", path.display())))?;
    setns(&fd, CloneFlags::CLONE_NEWNET)
        .map_err(|e| LabError::Setup(format!("setns({}): {e} (run as root)", path.display())))
}

/// Namespaces left by earlier `ims-lab` runs whose process is gone (a `kill -9`): their names.
pub fn stale_namespaces() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(NS_PREFIX))
        .filter(|n| {
            let pid = n
                .trim_start_matches(NS_PREFIX)
                .split('-')
                .next()
                .and_then(|p| p.parse::<u32>().ok());
            pid.is_some_and(|p| !alive(p))
        })
        .map(str::to_owned)
        .collect()
}

/// Remove a stale namespace of an earlier run (see [`stale_namespaces`]): the processes still
/// in it (that run's netbootd, ims-control or dnsmasq, found with `ip netns pids`) are killed by
/// PID first, then the namespace is deleted.
pub fn remove_stale(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = ip(&["netns", "del", ns]);
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}
