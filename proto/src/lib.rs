//! The edge ↔ control-plane protocol ("uplink"), shared by the edge daemon (`netbootd`) and
//! the control plane (`ims-control`), plus identifiers both sides agree on ([`MacAddr`]).
//!
//! This crate is pure: no sockets, no clocks, no async. Drivers move bytes between a QUIC
//! stream and [`FrameDecoder`] / [`encode_frame`]; sessions decide what to send.
//!
//! # What crosses the wire
//!
//! * The edge sends [`EdgeMessage`]s: [`Hello`], [`Heartbeat`], [`EventBatch`] (durable
//!   [`EdgeEvent`]s), [`SnapshotAck`], [`ResyncRequest`], and on enrolment connections
//!   [`EnrollRequest`].
//! * The control plane sends [`ControlMessage`]s: [`Welcome`], [`HeartbeatAck`],
//!   [`Snapshot`] / [`Delta`] (machine sync), [`EventsAck`], [`ErrorReply`], and on enrolment
//!   connections [`EnrollResponse`].
//! * Each message is one CBOR item (RFC 8949) made by serde ([`encode_message`]), sent in a
//!   frame: a 4-byte big-endian length, then the body ([`encode_frame`], [`FrameDecoder`],
//!   limits in [`MAX_FRAME`] and its siblings).
//! * Enums with data are maps whose first entry is `"type": "<variant>"`, followed by the
//!   variant's fields: `{"type": "EventsAck", "up_to": 42}`. Enums without data are their
//!   variant's name as a string (`"Running"`). Structs are maps keyed by field name. `None` is
//!   CBOR `null`; byte blobs (certificates) are byte strings; addresses use serde's compact
//!   forms for `std::net` types; MACs and networks are text (`52:54:00:12:34:56`,
//!   `10.0.0.0/24`).
//!
//! # Versioning and compatibility
//!
//! A version is `major.minor` ([`ProtocolVersion`], this build: [`PROTOCOL_MAJOR`].
//! [`PROTOCOL_MINOR`]).
//!
//! * **Major**: named by the QUIC ALPN token ([`alpn()`] = `ims-uplink/1`, and
//!   [`enroll_alpn()`] = `ims-enroll/1` for enrolment), so peers of different majors never
//!   exchange a message; [`Hello`] and [`Welcome`] repeat the version and
//!   [`check_compatible`] refuses a different major. A major bump is the only time a message,
//!   field or variant may be removed, renamed or change meaning. During a migration the control
//!   plane offers both ALPN tokens ([`alpn_for`]) and the edge picks.
//! * **Minor**: additive only, so any two minors of one major interoperate:
//!   * A new field is `Option` or `#[serde(default)]`: an older peer ignores fields it does
//!     not know (no `deny_unknown_fields` anywhere), and a newer peer reading an older one's
//!     message fills the missing field with its default.
//!   * A new message kind, event kind or enum value decodes on an older peer as that enum's
//!     `Unknown` catch-all ([`EdgeMessage::Unknown`], [`ControlMessage::Unknown`],
//!     [`EdgeEventKind::Unknown`] keep the kind's name; [`ServiceState::Unknown`],
//!     [`ErrorCode::Unknown`]), which receivers log and ignore. Every enum on the wire has
//!     one. `Unknown { kind }` values cannot be encoded (they carry no data): they are never
//!     forwarded.
//!   * Field names and variant names are never reused for something else; the `"type"` entry
//!     is always first (decoders stream and rely on it).
//!   * Optional features are announced as capability strings in [`Hello::capabilities`] and
//!     [`Welcome::capabilities`] ([`CAP_DELTA`], [`shared_capabilities`]) and used only when
//!     both sides list them.
//! * **Golden fixtures**: `proto/tests/fixtures/*.cbor` hold an encoding of every message and
//!   event kind; a test decodes each one and compares it with the expected value, forever.
//!   Existing fixtures are never rewritten: when a minor adds a field, add new fixtures
//!   beside the old ones.
//!
//! # Panics
//!
//! None on any input: decoding malformed bytes returns [`ProtoError`].
#![forbid(unsafe_code)]

mod cidr;
mod codec;
mod enroll;
mod events;
mod frame;
mod messages;
mod sync;
mod tagged;
mod types;
mod version;

pub use cidr::{CidrError, Ipv4Cidr};
pub use codec::{MAX_NESTING, Message, ProtoError, decode_message, encode_message};
pub use enroll::{EnrollRequest, EnrollResponse};
pub use events::{
    EdgeEvent, EdgeEventKind, EventBatch, EventsAck, HttpCompleted, HttpStarted, IpxeScript,
    LeaseEvent, PhoneHome, ServiceError, TftpCompleted, TftpStarted, TransferFailed,
};
pub use frame::{
    FRAME_HEADER_LEN, FrameDecoder, MAX_EDGE_FRAME, MAX_ENROLL_FRAME, MAX_FRAME, encode_frame,
    encode_frame_with_max,
};
pub use messages::{
    ControlMessage, EdgeMessage, ErrorCode, ErrorReply, Heartbeat, HeartbeatAck, Hello,
    InterfaceInfo, Metrics, SERVICE_DHCP, SERVICE_HTTP, SERVICE_TFTP, SERVICE_UPLINK, ServiceState,
    ServiceStatus, Welcome,
};
pub use sync::{
    BootProfileEntry, Delta, DeltaMismatch, MAX_CMDLINE_LEN, MAX_TFTP_TRANSFERS, MachineEntry,
    ResyncRequest, Snapshot, SnapshotAck, SubnetEntry,
};
pub use types::{MacAddr, ParseMacError};
pub use version::{
    ALPN_PREFIX, CAP_DELTA, ENROLL_ALPN_PREFIX, PROTOCOL_MAJOR, PROTOCOL_MINOR, ProtocolVersion,
    VersionError, alpn, alpn_for, check_compatible, enroll_alpn, major_from_alpn,
    shared_capabilities,
};
