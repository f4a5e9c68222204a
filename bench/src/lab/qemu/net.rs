//! The network side of a QEMU machine: its tap device on a bridge ([`Tap`]), a bridge joining a
//! namespace's uplink and a tap ([`Lan`]), and an IPv6 router advertiser ([`RouterAdvertiser`]).
//! Everything is created with `ip -n NS …` inside a namespace and removed on drop.

use std::net::{Ipv6Addr, SocketAddrV6};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{QemuError, find_tool, run_tool};

const CMD_TIMEOUT: Duration = Duration::from_secs(20);

/// `ip -n NS ARGS…`.
fn ip(ns: &str, args: &[&str]) -> Result<String, QemuError> {
    run_tool(
        Command::new(find_tool("ip")?).args(["-n", ns]).args(args),
        CMD_TIMEOUT,
    )
}

/// A tap device (QEMU's `-netdev tap,ifname=`) in a namespace, a port of a bridge there;
/// deleted on drop.
#[derive(Debug)]
pub struct Tap {
    /// The namespace (QEMU runs in it).
    pub ns: String,
    /// The tap's name.
    pub name: String,
}

impl Tap {
    /// Create tap `name` in `ns`, make it a port of `bridge` and bring it up.
    ///
    /// # Errors
    /// An `ip` command failed (the name is taken, no `/dev/net/tun`, not root); what was
    /// created is removed again.
    pub fn attach(ns: &str, bridge: &str, name: &str) -> Result<Self, QemuError> {
        ip(ns, &["tuntap", "add", "dev", name, "mode", "tap"])?;
        let tap = Self {
            ns: ns.to_owned(),
            name: name.to_owned(),
        };
        ip(ns, &["link", "set", name, "master", bridge])?;
        ip(ns, &["link", "set", name, "up"])?;
        Ok(tap)
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = ip(&self.ns, &["link", "del", &self.name]);
    }
}

/// A bridge `br0` in a namespace joining an uplink (e.g. a site's client-side veth) and a
/// [`Tap`] `tap0`; both are deleted on drop (the tap first).
#[derive(Debug)]
pub struct Lan {
    /// The tap for QEMU.
    pub tap: Tap,
    /// The bridge's name.
    pub bridge: String,
}

impl Lan {
    /// Create `br0` in `ns` (STP off, no forward delay) with `uplink` and `tap0` as ports.
    ///
    /// # Errors
    /// An `ip` command failed.
    pub fn new(ns: &str, uplink: &str) -> Result<Self, QemuError> {
        let bridge = "br0";
        ip(
            ns,
            &[
                "link",
                "add",
                bridge,
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
            ],
        )?;
        let made = || -> Result<Tap, QemuError> {
            ip(ns, &["link", "set", uplink, "master", bridge])?;
            let tap = Tap::attach(ns, bridge, "tap0")?;
            ip(ns, &["link", "set", bridge, "up"])?;
            Ok(tap)
        };
        match made() {
            Ok(tap) => Ok(Self {
                tap,
                bridge: bridge.to_owned(),
            }),
            Err(e) => {
                let _ = ip(ns, &["link", "del", bridge]);
                Err(e)
            }
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = ip(&self.tap.ns, &["link", "del", &self.tap.name]);
        let _ = ip(&self.tap.ns, &["link", "del", &self.bridge]);
    }
}

/// An IPv6 router on the LAN, as most provisioning networks have one: it sends a Router
/// Advertisement (no prefix, no default route, no DHCPv6) to all nodes on an interface every
/// 500 ms. iPXE's autoconfiguration otherwise waits ≈ 13 s for one on every boot; with it
/// iPXE finishes IPv6 at once and goes on with IPv4. Stops (bounded: at most 10 minutes) when
/// dropped.
#[derive(Debug)]
pub struct RouterAdvertiser {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RouterAdvertiser {
    /// Start advertising on `ifname` in namespace `ns`.
    ///
    /// # Errors
    /// The interface does not exist, or the thread cannot enter the namespace or open a raw
    /// ICMPv6 socket (not root).
    pub fn start(ns: &str, ifname: &str) -> Result<Self, QemuError> {
        let out = ip(ns, &["-o", "link", "show", "dev", ifname])?;
        let ifindex: u32 = out
            .split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| QemuError::Command(format!("no ifindex for {ifname} in {ns}: {out}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let ns_owned = ns.to_owned();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let socket = match advertiser_socket(&ns_owned, ifindex) {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            // Type 134, code 0, checksum (the kernel fills it in), hop limit 64, no M/O flags,
            // router lifetime 0 (not a default router), reachable time 0, retrans timer 0.
            let ra: [u8; 16] = [134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            let all_nodes = SockAddr::from(SocketAddrV6::new(
                Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
                0,
                0,
                ifindex,
            ));
            // Bounded: 1200 rounds of 500 ms at most.
            for _ in 0..1200 {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                // Fails until the interface's link-local address is ready: tried again.
                let _ = socket.send_to(&ra, &all_nodes);
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        let started = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| Err("the advertiser thread did not start".to_owned()));
        match started {
            Ok(()) => Ok(Self {
                stop,
                thread: Some(thread),
            }),
            Err(e) => {
                let _ = thread.join();
                Err(QemuError::Command(format!(
                    "IPv6 router advertiser on {ifname} in {ns}: {e}"
                )))
            }
        }
    }
}

/// On the calling thread: enter `ns` and open a raw ICMPv6 socket sending on `ifindex`.
fn advertiser_socket(ns: &str, ifindex: u32) -> Result<Socket, String> {
    crate::lab::netns::enter(ns).map_err(|e| e.to_string())?;
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
        .map_err(|e| format!("raw ICMPv6 socket: {e}"))?;
    // RFC 4861: hop limit 255, or receivers drop the advertisement.
    s.set_multicast_hops_v6(255)
        .map_err(|e| format!("IPV6_MULTICAST_HOPS: {e}"))?;
    s.set_multicast_if_v6(ifindex)
        .map_err(|e| format!("IPV6_MULTICAST_IF: {e}"))?;
    Ok(s)
}

impl Drop for RouterAdvertiser {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
