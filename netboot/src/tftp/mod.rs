//! The TFTP server core (RFC 1350, option extension RFC 2347, `blksize` RFC 2348, `timeout` and
//! `tsize` RFC 2349, `windowsize` RFC 7440).
//!
//! Pure: no sockets, no files, no clock. The driver feeds datagrams and file-open results with
//! `handle_*(now, …)` and performs the [`Command`]s it drains from [`Server::poll_command`]. The
//! core never sees file bytes: DATA is described as a byte range of the opened file
//! ([`Packet::Data`]) so the driver can send it straight out of a shared buffer, without a
//! per-client copy.
//!
//! # Driving the core
//!
//! ```text
//! Server::new(limits: TftpLimits) -> Server
//! handle_request(now, peer, bytes)        // datagram on the listening socket (port 69)
//! handle_datagram(now, id, peer, bytes)   // datagram on transfer id's own socket (its TID)
//! handle_file_opened(now, id, size)       // after Command::Open succeeded (size as served)
//! handle_file_error(now, id, error)       // after Command::Open failed
//! handle_timeout(now)                     // at or after poll_timeout()
//! poll_command() -> Option<Command>       // drain after every handle_* call, perform in order
//! poll_timeout() -> Option<Instant>
//! stats() -> &Stats; active_transfers(); queued_requests()
//! ```
//!
//! A transfer's life: `Open` → (`handle_file_opened`) `Event(Started)` → OACK, or DATA when no
//! option was granted → … → `Close` → `Event(Ended)`. A failed open sends the client its ERROR
//! from the transfer's socket, so the driver creates the socket before opening the file.
//!
//! Modules: [`wire`] (packet parse/emit), [`path`] (file-name normalisation), [`netascii`]
//! (conversion the driver applies once per file), `options` (RFC 2347 negotiation), `transfer`
//! (one transfer's window state machine), `server` (admission, queue, dispatch), `stats`.
#![forbid(unsafe_code)]

pub mod netascii;
mod options;
pub mod path;
mod server;
mod stats;
mod transfer;
pub mod wire;

#[cfg(test)]
mod tests;

pub use path::PathError;
pub use server::{QUEUE_TIMEOUT, Server};
pub use stats::Stats;

use std::net::SocketAddr;
use std::time::Duration;

/// Identifies one transfer (and its own UDP socket, the server's TID) for its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransferId(pub u64);

/// Transfer mode of a read request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Raw bytes.
    Octet,
    /// Netascii: the driver serves the file converted (LF → CR LF, CR → CR NUL).
    Netascii,
}

/// Limits and defaults of the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TftpLimits {
    /// Largest `blksize` granted (RFC 2348 allows 8–65464).
    pub max_blksize: u16,
    /// Largest `windowsize` granted (RFC 7440).
    pub max_windowsize: u16,
    /// Transfers running at once; further requests wait in a fair queue.
    pub max_transfers: usize,
    /// Requests that may wait; past this a request gets ERROR 0 "server busy".
    pub max_queue: usize,
    /// Retransmission timeout when the client does not ask for one (RFC 2349 `timeout`).
    pub default_timeout: Duration,
    /// Retransmissions of one window before the transfer fails.
    pub max_retries: u32,
    /// Longest accepted file name in a request, in bytes.
    pub max_path_len: usize,
}

/// Why the driver could not open a requested file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileError {
    /// No such file (ERROR 1).
    NotFound,
    /// Outside the root (symlink leading out), a device or other non-regular file, or
    /// unreadable (ERROR 2).
    AccessViolation,
    /// Any other I/O failure (ERROR 0).
    Io,
}

/// A packet to send, built by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// DATA `block` carrying bytes `offset .. offset + len` of the transfer's opened file (as
    /// served in its mode). `len` may be 0 (the final empty block).
    Data {
        /// Block number on the wire (wraps past 65535 to 0).
        block: u16,
        /// Offset into the file.
        offset: u64,
        /// Byte count.
        len: usize,
    },
    /// Any other packet (OACK, ERROR), fully encoded.
    Encoded(Vec<u8>),
}

/// Which socket a packet leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The listening socket (port 69): only for refusing a request before any transfer exists.
    Listener,
    /// The transfer's own socket (its TID).
    Transfer(TransferId),
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every block acknowledged.
    Completed {
        /// Bytes delivered.
        bytes: u64,
        /// Retransmitted DATA packets.
        retransmits: u64,
        /// From request to final ACK.
        duration: Duration,
        /// Negotiated block size.
        blksize: u16,
        /// Negotiated window size.
        windowsize: u16,
    },
    /// The client asked for the options with `tsize` and ended the transfer after the OACK
    /// with an ERROR, as UEFI PXE firmware does to learn a file's size before downloading it.
    /// Not a failure: the real download follows as a new request.
    SizeQueried,
    /// Ended without delivering the file.
    Failed {
        /// Why.
        reason: FailReason,
    },
}

/// Why a transfer or request failed (metric label via `as_str`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailReason {
    /// File not found.
    NotFound,
    /// Access violation (path outside the root, device, symlink out, unreadable).
    AccessViolation,
    /// The request's file name was refused before any file access (`..`, NUL, too long).
    BadPath,
    /// A write request (refused: read-only server).
    WriteRefused,
    /// No answer after `max_retries` retransmissions.
    Timeout,
    /// The client sent an ERROR.
    ClientError,
    /// The client refused our OACK (ERROR 8) or the options were invalid.
    OptionsRefused,
    /// The queue was full.
    Busy,
    /// File I/O failed.
    Io,
    /// Malformed request.
    Malformed,
}

/// A notable step of a transfer, for logs, metrics and (later) the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEvent {
    /// The transfer started (after admission).
    Started {
        /// Transfer.
        id: TransferId,
        /// Client.
        peer: SocketAddr,
        /// Requested file name (as normalised).
        path: String,
        /// Negotiated block size.
        blksize: u16,
        /// Negotiated window size.
        windowsize: u16,
        /// Whether `tsize` was asked for.
        tsize: bool,
    },
    /// The transfer ended.
    Ended {
        /// Transfer.
        id: TransferId,
        /// Client.
        peer: SocketAddr,
        /// Requested file name.
        path: String,
        /// How.
        outcome: Outcome,
    },
    /// A request was refused before a transfer started (bad path, WRQ, busy, malformed).
    Refused {
        /// Client.
        peer: SocketAddr,
        /// Why.
        reason: FailReason,
    },
}

/// A side effect for the driver, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create transfer `id`'s own UDP socket (ephemeral port) and open `path` (relative to the
    /// root, already normalised; the driver confines it, refusing symlinks out and non-regular
    /// files) in `mode`; answer with `handle_file_opened` or `handle_file_error`. Create the
    /// socket first: after a failed open the client's ERROR goes out of it, before `Close`.
    Open {
        /// Transfer.
        id: TransferId,
        /// Client.
        peer: SocketAddr,
        /// Normalised relative path.
        path: String,
        /// Mode the file is served in.
        mode: Mode,
    },
    /// Send `packet` from `source` to `peer`.
    Send {
        /// Socket to send from.
        source: Source,
        /// Destination.
        peer: SocketAddr,
        /// What to send.
        packet: Packet,
    },
    /// Transfer `id` is over: close its socket and release its file.
    Close {
        /// Transfer.
        id: TransferId,
    },
    /// Something to log/count/report.
    Event(TransferEvent),
}
