//! Provisioning events: what the edge did, delivered from its durable outbox exactly once.
//!
//! # Delivery
//!
//! Each [`EdgeEvent`] carries `id`, the edge outbox's sequence number (1, 2, 3, … never
//! reused). Together with the worker id from the edge's certificate it is the event's
//! idempotency key: the control plane records `(worker_id, id)` at most once, so the edge may
//! resend anything not yet acknowledged (after a reconnect, say) without creating duplicates.
//! The edge sends events in id order in [`EventBatch`]es; the control plane answers with
//! [`EventsAck`] `{up_to}` once everything up to and including `up_to` is durably recorded,
//! and the edge then deletes those from its outbox.
//!
//! An event kind this build does not know decodes as [`EdgeEventKind::Unknown`]; the control
//! plane should still record (and acknowledge) its id so the edge does not resend it forever.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::MacAddr;
use crate::cidr::Ipv4Cidr;
use crate::tagged::tagged_enum;

/// A batch of events, oldest first (ids strictly increasing).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventBatch {
    /// The events.
    #[serde(default)]
    pub batch: Vec<EdgeEvent>,
}

/// Every event with an id up to and including `up_to` is durably recorded by the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventsAck {
    /// Highest acknowledged [`EdgeEvent::id`].
    pub up_to: u64,
}

/// One thing the edge did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeEvent {
    /// The edge outbox sequence number; with the worker id, the idempotency key.
    pub id: u64,
    /// When it happened (UNIX milliseconds, the edge's clock).
    pub at_ms: i64,
    /// What happened.
    pub kind: EdgeEventKind,
}

/// What happened. Travels internally tagged like the messages (see the crate docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum EdgeEventKind {
    /// A new lease (DHCPACK to a client without a binding).
    LeaseGranted(LeaseEvent),
    /// A lease extended (DHCPACK to a renewing or rebinding client).
    LeaseRenewed(LeaseEvent),
    /// The client released its lease (DHCPRELEASE).
    LeaseReleased(LeaseEvent),
    /// A lease ran out.
    LeaseExpired(LeaseEvent),
    /// A TFTP transfer began.
    TftpStarted(TftpStarted),
    /// A TFTP transfer delivered the whole file.
    TftpCompleted(TftpCompleted),
    /// A TFTP transfer ended without delivering the file.
    TftpFailed(TransferFailed),
    /// An HTTP boot-file download began (protocol 1.1; an older peer decodes it as
    /// [`EdgeEventKind::Unknown`]).
    HttpStarted(HttpStarted),
    /// An HTTP boot-file download delivered the whole file.
    HttpCompleted(HttpCompleted),
    /// An HTTP boot-file download stopped before the end of its body (the client closed the
    /// connection, reading the file failed, the server shut down).
    HttpFailed(TransferFailed),
    /// iPXE fetched the machine's boot script.
    IpxeScript(IpxeScript),
    /// The installed OS called home: provisioning finished.
    PhoneHome(PhoneHome),
    /// A service of the edge hit an error.
    ServiceError(ServiceError),
    /// A kind from a newer peer. Never encoded.
    #[serde(skip_serializing)]
    Unknown {
        /// The `type` the peer sent.
        kind: String,
    },
}

tagged_enum!(
    EdgeEventKind,
    "edge event",
    [
        LeaseGranted,
        LeaseRenewed,
        LeaseReleased,
        LeaseExpired,
        TftpStarted,
        TftpCompleted,
        TftpFailed,
        HttpStarted,
        HttpCompleted,
        HttpFailed,
        IpxeScript,
        PhoneHome,
        ServiceError
    ]
);

impl EdgeEventKind {
    /// The machine the event is about, when known (events about one machine are recorded in
    /// order per machine).
    pub fn mac(&self) -> Option<MacAddr> {
        match self {
            Self::LeaseGranted(e)
            | Self::LeaseRenewed(e)
            | Self::LeaseReleased(e)
            | Self::LeaseExpired(e) => Some(e.mac),
            Self::TftpStarted(e) => e.mac,
            Self::TftpCompleted(e) => e.mac,
            Self::TftpFailed(e) | Self::HttpFailed(e) => e.mac,
            Self::HttpStarted(e) => e.mac,
            Self::HttpCompleted(e) => e.mac,
            Self::IpxeScript(e) => Some(e.mac),
            Self::PhoneHome(e) => Some(e.mac),
            Self::ServiceError(_) | Self::Unknown { .. } => None,
        }
    }
}

/// A lease changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseEvent {
    /// The client.
    pub mac: MacAddr,
    /// The leased address.
    pub ip: Ipv4Addr,
    /// The client's host name (registered, or from option 12).
    #[serde(default)]
    pub hostname: Option<String>,
    /// When the lease ends (UNIX milliseconds); for released and expired leases, when it
    /// ended.
    pub lease_end_ms: i64,
    /// The boot file handed out, if any.
    #[serde(default)]
    pub boot_file: Option<String>,
    /// The subnet the address belongs to.
    #[serde(default)]
    pub subnet: Option<Ipv4Cidr>,
}

/// A TFTP transfer began (after option negotiation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TftpStarted {
    /// The machine, when the peer's address maps to a known lease.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// The client.
    pub peer: SocketAddr,
    /// The requested file (normalised).
    pub path: String,
    /// Negotiated block size.
    pub blksize: u16,
    /// Negotiated window size.
    pub windowsize: u16,
    /// Whether the client asked for the transfer size.
    #[serde(default)]
    pub tsize: bool,
}

/// A TFTP transfer delivered the whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TftpCompleted {
    /// The machine, when known.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// The client.
    pub peer: SocketAddr,
    /// The requested file.
    pub path: String,
    /// Negotiated block size.
    #[serde(default)]
    pub blksize: u16,
    /// Negotiated window size.
    #[serde(default)]
    pub windowsize: u16,
    /// Bytes delivered.
    pub bytes: u64,
    /// From request to final acknowledgement, milliseconds.
    pub duration_ms: u64,
    /// Retransmitted data packets.
    #[serde(default)]
    pub retransmits: u64,
}

/// A TFTP or HTTP transfer ended without delivering the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferFailed {
    /// The machine, when known.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// The client.
    pub peer: SocketAddr,
    /// The requested file.
    pub path: String,
    /// Why, a short label (`not_found`, `timeout`, `client_error`, `access_denied`, …).
    pub reason: String,
    /// Bytes delivered before it failed.
    #[serde(default)]
    pub bytes: u64,
    /// From request to failure, milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
    /// Retransmitted data packets (TFTP).
    #[serde(default)]
    pub retransmits: u64,
    /// The HTTP status sent, if any (HTTP).
    #[serde(default)]
    pub status: Option<u16>,
}

/// An HTTP boot-file download began: the file was found and opened, and a `200` or `206`
/// response with its body is on its way. Followed by [`EdgeEventKind::HttpCompleted`] when the
/// body reaches the file's end, or [`EdgeEventKind::HttpFailed`] when it stops early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpStarted {
    /// The machine, when the peer's address maps to a known lease.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// The client.
    pub peer: SocketAddr,
    /// The requested file (normalised).
    pub path: String,
    /// The request's `Range` header when the response honours it (`206`); `None` for the
    /// whole file.
    #[serde(default)]
    pub range: Option<String>,
    /// The file's size in bytes (the whole file, also for a range).
    pub size: u64,
}

/// An HTTP boot-file download delivered the whole file (or the requested range).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCompleted {
    /// The machine, when known.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// The client.
    pub peer: SocketAddr,
    /// The requested file (normalised).
    pub path: String,
    /// Body bytes sent.
    pub bytes: u64,
    /// From request to last byte, milliseconds.
    pub duration_ms: u64,
    /// Response status (200, or 206 for a range).
    pub status: u16,
}

/// iPXE fetched the machine's boot script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpxeScript {
    /// The registered machine.
    pub mac: MacAddr,
    /// The client.
    pub peer: SocketAddr,
    /// Boot profile used, when one was found.
    #[serde(default)]
    pub profile: Option<String>,
    /// Why the script only exits (netboot off, no kernel in the profile); `None` when it boots
    /// the kernel.
    #[serde(default)]
    pub refused: Option<String>,
}

/// The installed OS called `POST /phone-home/{mac}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneHome {
    /// The registered machine.
    pub mac: MacAddr,
    /// Address the request came from.
    #[serde(default)]
    pub ip: Option<IpAddr>,
    /// Request body (at most 4 KiB, invalid UTF-8 replaced).
    #[serde(default)]
    pub body: Option<String>,
}

/// A service of the edge hit an error.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceError {
    /// The service ([`SERVICE_DHCP`](crate::SERVICE_DHCP), …).
    pub service: String,
    /// What went wrong.
    pub message: String,
}
