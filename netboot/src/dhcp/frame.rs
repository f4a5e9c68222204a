//! Ethernet II / IPv4 / UDP framing for raw-socket DHCP traffic.
//!
//! CONTRACT (filled in by the wire task): `parse` never panics and checks lengths, the IPv4 header
//! checksum, fragments (rejected), and the UDP length and checksum (when non-zero); `emit` builds a
//! complete frame with correct IPv4 and UDP checksums.

use std::net::Ipv4Addr;

use ims_proto::MacAddr;

/// A parsed UDP-in-IPv4-in-Ethernet frame, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrame<'a> {
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// IPv4 source.
    pub src_ip: Ipv4Addr,
    /// IPv4 destination.
    pub dst_ip: Ipv4Addr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// UDP payload.
    pub payload: &'a [u8],
}

/// Why a frame was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Too short for the headers it claims.
    #[error("truncated frame")]
    Truncated,
    /// Not IPv4/UDP (other EtherType or protocol).
    #[error("not an IPv4/UDP frame")]
    NotUdp,
    /// IPv4 header invalid (version, IHL, total length, checksum) or a fragment.
    #[error("bad IPv4 header")]
    BadIpv4,
    /// UDP length or checksum wrong.
    #[error("bad UDP header")]
    BadUdp,
}
