//! BOOTP/DHCPv4 messages (RFC 2131 §2, RFC 2132 options, RFC 3396 long options).
//!
//! CONTRACT (filled in by the wire task): `Message::parse` never panics on any input and returns a
//! small `Copy` error; `Message::emit` never panics. Options are kept as raw bytes keyed by code
//! (split options concatenated per RFC 3396; option overload (52) honoured when parsing), with
//! typed accessors for the ones the server reads and writes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ims_proto::MacAddr;

/// DHCP message type (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageType {
    /// DHCPDISCOVER (1).
    Discover,
    /// DHCPOFFER (2).
    Offer,
    /// DHCPREQUEST (3).
    Request,
    /// DHCPDECLINE (4).
    Decline,
    /// DHCPACK (5).
    Ack,
    /// DHCPNAK (6).
    Nak,
    /// DHCPRELEASE (7).
    Release,
    /// DHCPINFORM (8).
    Inform,
    /// Any other code.
    Unknown(u8),
}

/// Option codes used by the server.
pub mod code {
    #![allow(missing_docs)]
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const BROADCAST_ADDRESS: u8 = 28;
    pub const VENDOR_SPECIFIC: u8 = 43;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const VENDOR_CLASS: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    pub const TFTP_SERVER_NAME: u8 = 66;
    pub const BOOTFILE_NAME: u8 = 67;
    pub const USER_CLASS: u8 = 77;
    pub const RELAY_AGENT_INFO: u8 = 82;
    pub const CLIENT_ARCH: u8 = 93;
    pub const CLIENT_NDI: u8 = 94;
    pub const CLIENT_UUID: u8 = 97;
    pub const IPXE_ENCAP: u8 = 175;
    pub const END: u8 = 255;
}

/// Why bytes are not a DHCP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shorter than the fixed BOOTP header (236 bytes) plus the magic cookie.
    #[error("truncated message")]
    Truncated,
    /// The magic cookie 99.130.83.99 is missing.
    #[error("missing DHCP magic cookie")]
    BadMagic,
    /// An option's length runs past the end of its area.
    #[error("bad option length")]
    BadOption,
    /// Larger than any DHCP message we accept.
    #[error("oversized message")]
    Oversized,
}

/// A decoded BOOTP/DHCP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// 1 = BOOTREQUEST, 2 = BOOTREPLY.
    pub op: u8,
    /// Hardware type (1 = Ethernet).
    pub htype: u8,
    /// Hardware address length (6 for Ethernet).
    pub hlen: u8,
    /// Relay hops.
    pub hops: u8,
    /// Transaction id.
    pub xid: u32,
    /// Seconds since the client began.
    pub secs: u16,
    /// Flags; bit 15 is BROADCAST.
    pub flags: u16,
    /// Client address (when the client already has one).
    pub ciaddr: Ipv4Addr,
    /// "Your" address: the one offered/assigned.
    pub yiaddr: Ipv4Addr,
    /// Next server (TFTP) address.
    pub siaddr: Ipv4Addr,
    /// Relay agent address.
    pub giaddr: Ipv4Addr,
    /// Client hardware address field, 16 bytes.
    pub chaddr: [u8; 16],
    /// Server host name field (up to 64 bytes, without trailing NULs).
    pub sname: Vec<u8>,
    /// Boot file name field (up to 128 bytes, without trailing NULs).
    pub file: Vec<u8>,
    /// Options (without PAD/END; overload already resolved).
    pub options: Options,
}

/// DHCP options by code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    entries: BTreeMap<u8, Vec<u8>>,
}
