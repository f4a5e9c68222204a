//! The default `max_blksize`: the largest block that fits one unfragmented datagram on the
//! interface holding the listen address (RFC 2348 §1 advises against IP fragmentation).
//!
//! The MTU comes from `SIOCGIFMTU` on a socket, which answers in the daemon's own network
//! namespace (unlike `/sys/class/net`, which shows the namespace sysfs was mounted in).
#![allow(unsafe_code)]

use std::fmt;
use std::mem;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use nix::net::if_::InterfaceFlags;
use socket2::{Domain, Socket, Type};

use crate::config::TftpConfig;

/// Smallest and largest `blksize` (RFC 2348).
const BLKSIZE_MIN: u16 = 8;
const BLKSIZE_MAX: u16 = 65464;
/// Used when the MTU cannot be determined: a 1500-byte Ethernet MTU over IPv4.
pub(crate) const FALLBACK_BLKSIZE: u16 = 1468;
/// UDP header and TFTP DATA header.
const UDP_TFTP_HEADERS: u32 = 8 + 4;

/// The largest `blksize` whose DATA datagram fits `mtu` bytes: MTU − IP header (20 for IPv4,
/// 40 for IPv6) − UDP (8) − TFTP (4), within RFC 2348's 8–65464.
pub(crate) fn fit_blksize(mtu: u32, ipv6: bool) -> u16 {
    let ip = if ipv6 { 40 } else { 20 };
    let fit = mtu.saturating_sub(ip + UDP_TFTP_HEADERS);
    u16::try_from(fit)
        .unwrap_or(u16::MAX)
        .clamp(BLKSIZE_MIN, BLKSIZE_MAX)
}

/// Where the effective `max_blksize` came from (for the startup log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlksizeSource {
    /// `max_blksize` in the configuration.
    Configured,
    /// Fitted to the MTU of an interface.
    Mtu {
        /// Interface name (the smallest MTU among all when listening on a wildcard).
        interface: String,
        /// Its MTU.
        mtu: u32,
    },
    /// The MTU could not be determined; 1468 (Ethernet) assumed.
    Fallback,
}

impl fmt::Display for BlksizeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Configured => f.write_str("configured"),
            Self::Mtu { interface, mtu } => write!(f, "fitted to MTU {mtu} of {interface}"),
            Self::Fallback => f.write_str("MTU unknown, Ethernet assumed"),
        }
    }
}

/// The `max_blksize` to run with: the configured one, or fitted to the MTU of the interface
/// holding `listen` (for a wildcard, the smallest MTU among the up, non-loopback interfaces
/// with an address of its family), or `FALLBACK_BLKSIZE` (1468).
pub fn effective_max_blksize(config: &TftpConfig) -> (u16, BlksizeSource) {
    if let Some(n) = config.max_blksize {
        return (n, BlksizeSource::Configured);
    }
    let ip = config.listen.ip();
    match interface_mtu(ip) {
        Some((interface, mtu)) => (
            fit_blksize(mtu, ip.is_ipv6()),
            BlksizeSource::Mtu { interface, mtu },
        ),
        None => (FALLBACK_BLKSIZE, BlksizeSource::Fallback),
    }
}

/// The interface owning `ip` (or, for a wildcard, the one with the smallest MTU) and its MTU.
fn interface_mtu(ip: IpAddr) -> Option<(String, u32)> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    let mut names: Vec<String> = Vec::new();
    for addr in addrs {
        let Some(storage) = addr.address else {
            continue;
        };
        let own = storage
            .as_sockaddr_in()
            .map(|a| IpAddr::V4(a.ip()))
            .or_else(|| storage.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())));
        let Some(own) = own else { continue };
        let wanted = if ip.is_unspecified() {
            own.is_ipv4() == ip.is_ipv4()
                && addr.flags.contains(InterfaceFlags::IFF_UP)
                && !addr.flags.contains(InterfaceFlags::IFF_LOOPBACK)
        } else {
            own == ip
        };
        if wanted && !names.contains(&addr.interface_name) {
            names.push(addr.interface_name);
        }
    }
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, None).ok()?;
    names
        .into_iter()
        .filter_map(|name| mtu_of(&socket, &name).map(|mtu| (name, mtu)))
        .min_by_key(|(_, mtu)| *mtu)
}

/// `SIOCGIFMTU` for interface `name`.
fn mtu_of(socket: &Socket, name: &str) -> Option<u32> {
    // SAFETY: all-zero bytes are a valid `ifreq` (integers, arrays and a union of such).
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return None;
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    // SAFETY: `req` is a valid, NUL-terminated `ifreq` that the kernel fills in; the fd is open.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFMTU, &raw mut req) };
    if rc != 0 {
        return None;
    }
    // SAFETY: after a successful SIOCGIFMTU the kernel has written `ifru_mtu`.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).ok()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::TftpDriver;

    fn config(listen: &str, max_blksize: Option<u16>) -> TftpConfig {
        TftpConfig {
            root: PathBuf::from("/"),
            listen: listen.parse().unwrap(),
            max_blksize,
            max_windowsize: 64,
            max_transfers: 1,
            max_queue: 1,
            timeout: Duration::from_secs(1),
            max_retries: 1,
            driver: TftpDriver::Auto,
            rate_limit_per_ip: crate::ratelimit::RateLimit::OFF,
        }
    }

    #[test]
    fn blksize_fits_the_mtu() {
        assert_eq!(fit_blksize(1500, false), 1468);
        assert_eq!(fit_blksize(1500, true), 1448);
        assert_eq!(fit_blksize(9000, false), 8968);
        assert_eq!(fit_blksize(1280, true), 1228);
        // Loopback's 65536 is past the RFC maximum; tiny MTUs are clamped to the minimum.
        assert_eq!(fit_blksize(65536, false), 65464);
        assert_eq!(fit_blksize(u32::MAX, false), 65464);
        assert_eq!(fit_blksize(30, false), 8);
    }

    #[test]
    fn configured_blksize_wins() {
        assert_eq!(
            effective_max_blksize(&config("127.0.0.1:69", Some(512))),
            (512, BlksizeSource::Configured)
        );
    }

    #[test]
    fn loopback_address_uses_the_loopback_mtu() {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        let lo = mtu_of(&socket, "lo").expect("lo has an MTU");
        let (blksize, source) = effective_max_blksize(&config("127.0.0.1:69", None));
        assert_eq!(
            source,
            BlksizeSource::Mtu {
                interface: "lo".into(),
                mtu: lo
            }
        );
        assert_eq!(blksize, fit_blksize(lo, false));
    }

    #[test]
    fn unknown_address_falls_back_to_ethernet() {
        // TEST-NET-3: held by no interface here.
        assert_eq!(
            effective_max_blksize(&config("203.0.113.77:69", None)),
            (1468, BlksizeSource::Fallback)
        );
        assert_eq!(
            mtu_of(
                &Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap(),
                "nope0"
            ),
            None
        );
    }
}
