//! The top-level messages ([`EdgeMessage`], [`ControlMessage`]) and the session messages:
//! hello/welcome, heartbeats and errors.
//!
//! # Conversation
//!
//! On the uplink (ALPN [`alpn()`](crate::alpn), mutual TLS) the edge speaks first:
//!
//! ```text
//! edge                                   control plane
//! Hello {version, capabilities, ...} ──▶
//!                                     ◀── Welcome {worker_id, site, heartbeat_interval_ms}
//!                                         (or Error {UnsupportedVersion | Unauthorized, ...})
//!                                     ◀── Snapshot {generation, ...}   (or Delta if the edge
//!                                         announced CAP_DELTA and a known snapshot_generation)
//! SnapshotAck {generation}           ──▶
//! Heartbeat {seq, ...} every interval ──▶
//!                                     ◀── HeartbeatAck {seq}
//! Events {batch}                     ──▶
//!                                     ◀── EventsAck {up_to}
//!                                     ◀── Delta {generation, base_generation, ...} on changes
//! ResyncRequest (a Delta did not apply) ──▶
//! ```
//!
//! Enrolment uses its own connection (ALPN [`enroll_alpn()`](crate::enroll_alpn), no client
//! certificate): [`EnrollRequest`] one way, [`EnrollResponse`] or [`ErrorReply`] back.
//!
//! A message of a kind this build does not know decodes as `Unknown { kind }`; receivers log
//! it and carry on.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::enroll::{EnrollRequest, EnrollResponse};
use crate::events::{EventBatch, EventsAck};
use crate::sync::{Delta, ResyncRequest, Snapshot, SnapshotAck};
use crate::tagged::{string_enum, tagged_enum};
use crate::{MacAddr, ProtocolVersion};

/// A message from the edge to the control plane.
///
/// Travels as a map whose first entry is `"type": "<variant name>"`, followed by the fields of
/// the variant's struct (see the crate docs).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum EdgeMessage {
    /// First message of every uplink connection.
    Hello(Hello),
    /// Liveness, service status and metrics, every heartbeat interval.
    Heartbeat(Heartbeat),
    /// Events from the durable outbox, oldest first.
    Events(EventBatch),
    /// The edge has durably stored this snapshot generation (after a Snapshot or a Delta).
    SnapshotAck(SnapshotAck),
    /// The edge could not apply a Delta and asks for a full Snapshot.
    ResyncRequest(ResyncRequest),
    /// Enrolment request (enrolment connections only).
    EnrollRequest(EnrollRequest),
    /// A kind from a newer peer. Never encoded.
    #[serde(skip_serializing)]
    Unknown {
        /// The `type` the peer sent.
        kind: String,
    },
}

tagged_enum!(
    EdgeMessage,
    "edge message",
    [
        Hello,
        Heartbeat,
        Events,
        SnapshotAck,
        ResyncRequest,
        EnrollRequest
    ]
);

/// A message from the control plane to the edge.
///
/// Travels like [`EdgeMessage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum ControlMessage {
    /// Answer to [`Hello`]: the session is up.
    Welcome(Welcome),
    /// Answer to a [`Heartbeat`].
    HeartbeatAck(HeartbeatAck),
    /// The site's full desired state.
    Snapshot(Snapshot),
    /// Changes from one generation of the desired state to the next.
    Delta(Delta),
    /// Events up to an id are durably recorded: the edge may drop them from its outbox.
    EventsAck(EventsAck),
    /// Something went wrong; see [`ErrorCode`].
    Error(ErrorReply),
    /// Enrolment succeeded (enrolment connections only).
    EnrollResponse(EnrollResponse),
    /// A kind from a newer peer. Never encoded.
    #[serde(skip_serializing)]
    Unknown {
        /// The `type` the peer sent.
        kind: String,
    },
}

tagged_enum!(
    ControlMessage,
    "control message",
    [
        Welcome,
        HeartbeatAck,
        Snapshot,
        Delta,
        EventsAck,
        Error,
        EnrollResponse
    ]
);

/// `From<Struct> for Message` for each variant.
macro_rules! from_variants {
    ($ty:ident: $($variant:ident($inner:ty)),+ $(,)?) => {
        $(impl From<$inner> for $ty {
            fn from(inner: $inner) -> Self {
                Self::$variant(inner)
            }
        })+
    };
}

from_variants!(EdgeMessage:
    Hello(Hello),
    Heartbeat(Heartbeat),
    Events(EventBatch),
    SnapshotAck(SnapshotAck),
    ResyncRequest(ResyncRequest),
    EnrollRequest(EnrollRequest),
);

from_variants!(ControlMessage:
    Welcome(Welcome),
    HeartbeatAck(HeartbeatAck),
    Snapshot(Snapshot),
    Delta(Delta),
    EventsAck(EventsAck),
    Error(ErrorReply),
    EnrollResponse(EnrollResponse),
);

/// The edge introduces itself; first message of every uplink connection.
///
/// The edge's identity is its client certificate: `worker_id` and `site` are informational
/// (for logs and mismatch warnings), never trusted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the edge speaks.
    pub version: ProtocolVersion,
    /// The worker id from the edge's certificate, if it knows it.
    #[serde(default)]
    pub worker_id: Option<String>,
    /// The site from the edge's certificate, if it knows it.
    #[serde(default)]
    pub site: Option<String>,
    /// `netbootd` version (`0.1.0`).
    pub software_version: String,
    /// The edge host's name.
    pub hostname: String,
    /// The edge's addresses (all interfaces).
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// The interfaces it serves DHCP on.
    #[serde(default)]
    pub interfaces: Vec<InterfaceInfo>,
    /// Capabilities the edge supports (such as [`CAP_DELTA`](crate::CAP_DELTA)); unknown names
    /// are ignored.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Generation of the snapshot the edge holds in its store, if any: the control plane may
    /// answer with a Delta from it (when the edge has [`CAP_DELTA`](crate::CAP_DELTA)) or
    /// nothing at all when it is current.
    #[serde(default)]
    pub snapshot_generation: Option<u64>,
}

/// One network interface of the edge.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InterfaceInfo {
    /// Kernel name (`eth1`).
    pub name: String,
    /// Hardware address.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// Configured addresses.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
}

/// Name of the DHCP service in [`Heartbeat::services`].
pub const SERVICE_DHCP: &str = "dhcp";
/// Name of the TFTP service in [`Heartbeat::services`].
pub const SERVICE_TFTP: &str = "tftp";
/// Name of the HTTP boot service in [`Heartbeat::services`].
pub const SERVICE_HTTP: &str = "http";
/// Name of the uplink itself in [`Heartbeat::services`].
pub const SERVICE_UPLINK: &str = "uplink";

/// Periodic liveness report from the edge.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Heartbeat {
    /// 1, 2, 3, … per connection; echoed in [`HeartbeatAck::seq`].
    pub seq: u64,
    /// Status per service, keyed by name ([`SERVICE_DHCP`], [`SERVICE_TFTP`],
    /// [`SERVICE_HTTP`], …).
    #[serde(default)]
    pub services: BTreeMap<String, ServiceStatus>,
    /// Gauges.
    #[serde(default)]
    pub metrics: Metrics,
}

/// How one service of the edge is doing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Current state.
    pub state: ServiceState,
    /// The most recent error, if any.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the most recent error happened (UNIX milliseconds).
    #[serde(default)]
    pub last_error_at_ms: Option<i64>,
}

string_enum! {
    /// A service's state. Travels as its name; unknown names decode as `Unknown`.
    pub enum ServiceState {
        /// Serving normally.
        Running,
        /// Serving, with problems (for example some interfaces failed).
        Degraded,
        /// Not serving because of an error.
        Error,
        /// Turned off in the configuration.
        Disabled,
    }
    /// Not known (or a state from a newer peer).
    Unknown;
}

impl Default for ServiceState {
    /// [`ServiceState::Unknown`].
    fn default() -> Self {
        Self::Unknown
    }
}

/// The edge's gauges at heartbeat time. Missing fields decode as 0.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// Bound DHCP leases.
    pub active_leases: u64,
    /// TFTP and HTTP transfers in progress.
    pub active_transfers: u64,
    /// Transfers waiting for a slot.
    pub queued_transfers: u64,
    /// CPU use of the daemon, percent of one core (may exceed 100 on several cores).
    pub cpu_percent: f64,
    /// Resident memory of the daemon, bytes.
    pub memory_bytes: u64,
    /// Events waiting in the outbox.
    pub outbox_depth: u64,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
}

/// The control plane's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Welcome {
    /// The protocol version the control plane speaks.
    pub version: ProtocolVersion,
    /// The worker id, from the edge's certificate.
    pub worker_id: String,
    /// The site, from the edge's certificate.
    pub site: String,
    /// How often the edge sends a [`Heartbeat`], milliseconds.
    pub heartbeat_interval_ms: u64,
    /// The control plane's clock (UNIX milliseconds), for skew warnings.
    pub server_time_ms: i64,
    /// Capabilities the control plane supports; unknown names are ignored.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// Acknowledges a [`Heartbeat`]; lets the edge measure the round trip.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// [`Heartbeat::seq`] of the acknowledged heartbeat.
    pub seq: u64,
    /// The control plane's clock (UNIX milliseconds).
    pub server_time_ms: i64,
}

/// An error reported to the peer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What kind of error (decides what the receiver does).
    pub code: ErrorCode,
    /// What went wrong and what to do, for logs and operators.
    pub message: String,
    /// When set, retry no sooner than this many milliseconds.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
}

string_enum! {
    /// Why a request failed. Travels as its name; unknown names decode as `Unknown`.
    pub enum ErrorCode {
        /// The peer's major version is not supported; the connection closes.
        UnsupportedVersion,
        /// The join token is unknown, expired or already used; get a new one
        /// (`ims-control join-token --site NAME`).
        InvalidToken,
        /// The certificate signing request is malformed or unsupported.
        InvalidCsr,
        /// The client certificate is not (or no longer) accepted, for example revoked.
        Unauthorized,
        /// A message was malformed or out of order.
        BadMessage,
        /// The peer failed internally; retry later.
        Internal,
        /// The peer is temporarily unable to serve (overloaded, starting); retry later.
        Unavailable,
    }
    /// An error code from a newer peer.
    Unknown;
}

impl Default for ErrorCode {
    /// [`ErrorCode::Unknown`].
    fn default() -> Self {
        Self::Unknown
    }
}
