//! Plain counters kept by the DHCP core; the daemon's metrics module exports them.

use std::collections::BTreeMap;

use super::wire::MessageType;

/// Why a received packet got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Not a well-formed Ethernet/IPv4/UDP frame or BOOTP/DHCP message (truncated, bad lengths,
    /// bad checksum, bad option encoding, oversized).
    Malformed,
    /// A BOOTREPLY, or an `op`/`htype`/`hlen` we do not serve.
    WrongOp,
    /// A plain BOOTP request or a DHCP message type a server does not handle.
    Unsupported,
    /// The client's MAC is not registered and its subnet is not in discovery mode.
    UnknownClient,
    /// A REQUEST naming another server's identifier (the client chose another server).
    ForeignServerId,
    /// No configured subnet matches the interface or relay (`giaddr`).
    NoSubnet,
    /// No free address in the dynamic range.
    PoolExhausted,
    /// A request about a lease we have no record of (RFC 2131: stay silent).
    NoLease,
    /// Addressed to someone else (unicast IP that is not ours).
    NotForUs,
    /// Arrived on the wrong path: a relayed message on a raw socket or a direct one on the relay
    /// socket (each is handled by the other).
    WrongPath,
    /// A registered machine whose reserved address is quarantined after a DECLINE.
    Quarantined,
}

impl DropReason {
    /// Every reason, for exporting zeroes.
    pub const ALL: [Self; 11] = [
        Self::Malformed,
        Self::WrongOp,
        Self::Unsupported,
        Self::UnknownClient,
        Self::ForeignServerId,
        Self::NoSubnet,
        Self::PoolExhausted,
        Self::NoLease,
        Self::NotForUs,
        Self::WrongPath,
        Self::Quarantined,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::WrongOp => "wrong_op",
            Self::Unsupported => "unsupported",
            Self::UnknownClient => "unknown_mac",
            Self::ForeignServerId => "foreign_server_id",
            Self::NoSubnet => "no_subnet",
            Self::PoolExhausted => "pool_exhausted",
            Self::NoLease => "no_lease",
            Self::NotForUs => "not_for_us",
            Self::WrongPath => "wrong_path",
            Self::Quarantined => "quarantined",
        }
    }
}

/// Where a packet arrived, as a metric label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IngressLabel {
    /// A configured interface, by name.
    Interface(String),
    /// The relay (UDP port 67) socket.
    Relay,
}

/// Counters since start. Monotonic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Well-formed DHCP messages received, by where and by message type.
    pub received: BTreeMap<(IngressLabel, MessageType), u64>,
    /// Replies queued, by message type.
    pub replies: BTreeMap<MessageType, u64>,
    /// Packets dropped, by reason.
    pub drops: BTreeMap<DropReason, u64>,
    /// NAKs are also counted in `replies`; this counts DECLINEs that quarantined an address.
    pub declines: u64,
    /// Leases that reached their end without renewal.
    pub expirations: u64,
    /// Messages dropped because their client MAC was over its rate limit.
    pub rate_limited: u64,
}

impl Stats {
    /// Count a drop.
    pub fn drop_packet(&mut self, reason: DropReason) {
        let n = self.drops.entry(reason).or_default();
        *n = n.saturating_add(1);
    }

    /// Count a well-formed message received.
    pub fn count_received(&mut self, ingress: IngressLabel, message_type: MessageType) {
        let n = self.received.entry((ingress, message_type)).or_default();
        *n = n.saturating_add(1);
    }

    /// Count a reply queued.
    pub fn count_reply(&mut self, message_type: MessageType) {
        let n = self.replies.entry(message_type).or_default();
        *n = n.saturating_add(1);
    }
}
