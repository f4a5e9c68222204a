//! Plain counters kept by the TFTP core; the daemon's metrics module exports them.

use std::collections::BTreeMap;

use super::FailReason;

impl FailReason {
    /// Every reason, for exporting zeroes.
    pub const ALL: [Self; 10] = [
        Self::NotFound,
        Self::AccessViolation,
        Self::BadPath,
        Self::WriteRefused,
        Self::Timeout,
        Self::ClientError,
        Self::OptionsRefused,
        Self::Busy,
        Self::Io,
        Self::Malformed,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::AccessViolation => "access_violation",
            Self::BadPath => "bad_path",
            Self::WriteRefused => "write_refused",
            Self::Timeout => "timeout",
            Self::ClientError => "client_error",
            Self::OptionsRefused => "options_refused",
            Self::Busy => "busy",
            Self::Io => "io",
            Self::Malformed => "malformed",
        }
    }
}

/// Counters since start. Monotonic except the `last_*` values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received on the listening socket (requests, well-formed or not).
    pub requests: u64,
    /// Requests refused before a transfer was admitted, by reason.
    pub refused: BTreeMap<FailReason, u64>,
    /// Retransmitted requests ignored because the same peer and file is already queued or
    /// running.
    pub duplicate_requests: u64,
    /// Requests that waited in the queue too long and were dropped.
    pub queue_expired: u64,
    /// Largest queue length seen.
    pub queue_peak: u64,
    /// Transfers admitted (a transfer id allocated and `Open` issued).
    pub admitted: u64,
    /// Transfers started (file opened and options negotiated).
    pub started: u64,
    /// Transfers completed (final ACK received).
    pub completed: u64,
    /// Size queries: the client ended the transfer after an OACK answering `tsize`.
    pub size_queries: u64,
    /// Transfers that ended without delivering the file, by reason.
    pub failed: BTreeMap<FailReason, u64>,
    /// DATA payload bytes sent (retransmissions included).
    pub bytes_sent: u64,
    /// DATA packets sent (retransmissions included).
    pub data_packets_sent: u64,
    /// DATA packets sent again (after a timeout or a partial window ACK).
    pub retransmitted_packets: u64,
    /// Datagrams on a transfer socket from a peer other than its client (answered ERROR 5).
    pub foreign_tid_packets: u64,
    /// ACKs for a block already acknowledged (ignored).
    pub duplicate_acks: u64,
    /// Datagrams on a transfer socket that were not a usable ACK or ERROR (ignored).
    pub ignored_datagrams: u64,
    /// Requests dropped because their client IP address was over its rate limit.
    pub rate_limited: u64,
    /// Block size of the last started transfer.
    pub last_blksize: u16,
    /// Window size of the last started transfer.
    pub last_windowsize: u16,
}

impl Stats {
    /// Count a refused request.
    pub(crate) fn refuse(&mut self, reason: FailReason) {
        bump(self.refused.entry(reason).or_default());
    }

    /// Count a failed transfer.
    pub(crate) fn fail(&mut self, reason: FailReason) {
        bump(self.failed.entry(reason).or_default());
    }
}

/// Saturating increment.
pub(crate) fn bump(n: &mut u64) {
    *n = n.saturating_add(1);
}
