//! The DHCPv4 server core (RFC 2131, RFC 2132, PXE per RFC 4578, relay agent information per
//! RFC 3046).
//!
//! Everything here is pure: the [`Server`] owns the lease table and address pools, takes input
//! through `handle_*(now, …)` and returns its side effects as [`Command`]s in the order they must
//! run. A [`Command::Persist`] always precedes the [`Command::Send`] of the ACK it backs: the driver
//! commits persists durably before it sends anything queued after them.
#![forbid(unsafe_code)]

pub mod boot;
pub mod frame;
pub mod lease;
pub mod pool;
pub mod server;
mod stats;
pub mod wire;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddrV4};

use ims_proto::MacAddr;

pub use lease::{Lease, LeaseState, UnixTime};
pub use server::Server;
pub use stats::{DropReason, IngressLabel, Stats};
pub use wire::MessageType;

/// Index of a configured `[[interface]]` (its position in the config), not a kernel ifindex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InterfaceId(pub usize);

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// Received as a raw frame on a configured interface (client on the same link).
    Interface(InterfaceId),
    /// Received on the UDP port 67 socket from a relay agent (`giaddr` set).
    Relay {
        /// Our local address the relay sent to (from `IP_PKTINFO`); used as server identifier.
        local: Ipv4Addr,
        /// The relay agent's address and port.
        peer: SocketAddrV4,
    },
}

/// Where a reply goes (RFC 2131 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// A whole Ethernet/IPv4/UDP frame (source port 67, destination port 68) out of `interface`,
    /// addressed to `mac`/`ip`; broadcast is `FF:FF:FF:FF:FF:FF` / `255.255.255.255`.
    Link {
        /// Interface to send on.
        interface: InterfaceId,
        /// Ethernet destination.
        mac: MacAddr,
        /// IPv4 destination.
        ip: Ipv4Addr,
    },
    /// A UDP datagram from port 67 to the relay agent at `giaddr`, port 67.
    Relay(SocketAddrV4),
    /// A UDP datagram from port 67 to a client behind a router, at `ciaddr`, port 68: a relayed
    /// client renewing its lease by unicast (RENEWING state), whose request reached us without
    /// `giaddr`.
    Unicast(SocketAddrV4),
}

/// An encoded DHCP reply and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Addressing decided by the core.
    pub destination: Destination,
    /// Reply type, for metrics.
    pub message_type: MessageType,
    /// The encoded BOOTP/DHCP message (UDP payload).
    pub payload: Vec<u8>,
}

/// A machine seen in discovery mode (`allow_unknown = true`): an unknown MAC given a dynamic
/// address. Recorded so an operator can register it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiscoveredMachine {
    /// Hardware address.
    pub mac: MacAddr,
    /// Address it was given.
    pub ip: Ipv4Addr,
    /// First and last time seen.
    pub first_seen: UnixTime,
    /// Last time seen.
    pub last_seen: UnixTime,
    /// Client system architecture (option 93), if sent.
    pub arch: Option<u16>,
    /// Vendor class identifier (option 60), if sent.
    pub vendor_class: Option<String>,
    /// Client machine UUID (option 97), if sent.
    pub uuid: Option<Vec<u8>>,
    /// Hostname the client asked for (option 12), if sent.
    pub hostname: Option<String>,
}

/// A side effect the driver must perform, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Durably store this lease (keyed by its IP) before running any later `Send`.
    Persist(Lease),
    /// Delete the lease stored under this IP.
    Remove(Ipv4Addr),
    /// Record a machine seen in discovery mode.
    Discovered(DiscoveredMachine),
    /// Transmit a reply.
    Send(Reply),
}
