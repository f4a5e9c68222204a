//! The TFTP server: admission, the wait queue, and dispatch to the transfers.
//!
//! # Requests (the listening socket)
//!
//! A read request is checked in this order, and refused with an ERROR from the listening
//! socket at the first failure: it must parse (else ERROR 4), be a read request (a write
//! request gets ERROR 2: the server is read-only), name a mode we serve (`octet`, `netascii`;
//! else ERROR 0) and a file name [`path::normalize`] accepts (else ERROR 2). Every refusal is a
//! [`TransferEvent::Refused`] and a count in [`Stats::refused`]; an ERROR packet sent to the
//! listener is counted but never answered.
//!
//! A request repeated by the same client (address and port) for the same file while the first
//! one still waits in the queue, or runs but has not yet heard from the client, is a
//! retransmission and is ignored.
//!
//! # Admission
//!
//! At most `max_transfers` transfers run at once. A request beyond that waits in a FIFO queue
//! of at most `max_queue`; past that it gets ERROR 0 "server busy". Whenever a transfer ends
//! the oldest waiting request starts. A request that waited [`QUEUE_TIMEOUT`] without a slot is
//! dropped silently (its client has long retransmitted or given up) and counted.
//!
//! # Transfers
//!
//! Each admitted request gets a fresh [`TransferId`] (its own socket) and a `Command::Open`.
//! See the `transfer` module for negotiation and the window. Every transfer ends with
//! `Command::Close` followed by a `TransferEvent::Ended`.
//!
//! No input makes any method panic, and all state is bounded by the limits.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::options::{self, Asked};
use super::path;
use super::stats::{Stats, bump};
use super::transfer::{Ctx, Step, Transfer, later};
use super::wire::{self, code};
use super::{
    Command, FailReason, FileError, Mode, Outcome, Packet, Source, TftpLimits, TransferEvent,
    TransferId,
};
use crate::ratelimit::{RateLimit, RateLimiter};

/// How long a request may wait in the queue for a transfer slot.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// A request waiting for a slot.
#[derive(Debug)]
struct Queued {
    /// Client.
    peer: SocketAddr,
    /// Normalised path.
    path: String,
    /// Mode.
    mode: Mode,
    /// Valid options asked for.
    asked: Vec<Asked>,
    /// Arrival.
    received: Instant,
}

/// The TFTP server core.
#[derive(Debug)]
pub struct Server {
    /// Limits.
    limits: TftpLimits,
    /// Counters.
    stats: Stats,
    /// Side effects not yet polled.
    commands: VecDeque<Command>,
    /// Running transfers (opening, negotiating or sending).
    transfers: BTreeMap<TransferId, Transfer>,
    /// Transfer timers, earliest first: `(armed, id)`, at or before the transfer's deadline
    /// (see [`Transfer::armed`]).
    timers: BTreeSet<(Instant, TransferId)>,
    /// Requests waiting for a slot, oldest first.
    queue: VecDeque<Queued>,
    /// (client, path) of queued requests and of transfers not yet heard from: a request
    /// matching one is a retransmission.
    pending: BTreeSet<(SocketAddr, String)>,
    /// Next transfer id.
    next_id: u64,
    /// Requests per client IP ([`Server::set_rate_limit`]; off by default).
    ip_limit: RateLimiter<IpAddr>,
    /// Time origin of `ip_limit` (the first request's `now`).
    limit_epoch: Option<Instant>,
}

impl Server {
    /// A server with no transfers.
    pub fn new(limits: TftpLimits) -> Self {
        Self {
            limits,
            stats: Stats::default(),
            commands: VecDeque::new(),
            transfers: BTreeMap::new(),
            timers: BTreeSet::new(),
            queue: VecDeque::new(),
            pending: BTreeSet::new(),
            next_id: 0,
            ip_limit: RateLimiter::new(RateLimit::OFF),
            limit_epoch: None,
        }
    }

    /// Limit the requests (datagrams on the listening socket) each client IP address may send
    /// (token bucket on the `now` of the calls); one over the limit is dropped unanswered,
    /// counted in [`Stats::rate_limited`] and not in [`Stats::requests`]. Transfers already
    /// running are never limited. Off until set.
    pub fn set_rate_limit(&mut self, limit: RateLimit) {
        self.ip_limit = RateLimiter::new(limit);
    }

    /// A datagram from `peer` on the listening socket (port 69).
    pub fn handle_request(&mut self, now: Instant, peer: SocketAddr, bytes: &[u8]) {
        self.expire_queue(now);
        let epoch = *self.limit_epoch.get_or_insert(now);
        let now_ms =
            u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX);
        if !self.ip_limit.allow(&peer.ip(), now_ms) {
            bump(&mut self.stats.rate_limited);
            return;
        }
        bump(&mut self.stats.requests);
        let request = match wire::parse(bytes) {
            Ok(wire::Packet::Rrq(r)) => r,
            Ok(wire::Packet::Wrq(_)) => {
                let m = "write requests are refused: this server is read-only";
                return self.refuse(
                    peer,
                    FailReason::WriteRefused,
                    Some((code::ACCESS_VIOLATION, m.into())),
                );
            }
            // Never answer an ERROR; nor datagrams too short to be anything.
            Ok(wire::Packet::Error { .. }) => {
                return self.refuse(peer, FailReason::Malformed, None);
            }
            Err(_) if bytes.len() < 4 || bytes.starts_with(&wire::OP_ERROR.to_be_bytes()) => {
                return self.refuse(peer, FailReason::Malformed, None);
            }
            Ok(_) | Err(_) => {
                let m = "illegal TFTP operation: expected a read request";
                return self.refuse(
                    peer,
                    FailReason::Malformed,
                    Some((code::ILLEGAL_OPERATION, m.into())),
                );
            }
        };
        let Some(mode) = request.served_mode() else {
            let shown: String = String::from_utf8_lossy(&request.mode)
                .chars()
                .take(32)
                .collect();
            let m = format!("unsupported transfer mode '{shown}': use octet or netascii");
            return self.refuse(peer, FailReason::Malformed, Some((code::NOT_DEFINED, m)));
        };
        let path = match path::normalize(&request.filename, self.limits.max_path_len) {
            Ok(p) => p,
            Err(e) => {
                let m = format!("access violation: {e}");
                return self.refuse(peer, FailReason::BadPath, Some((code::ACCESS_VIOLATION, m)));
            }
        };
        if self.pending.contains(&(peer, path.clone())) {
            bump(&mut self.stats.duplicate_requests);
            return;
        }
        let asked = options::read(&request.options);
        let queued = Queued {
            peer,
            path,
            mode,
            asked,
            received: now,
        };
        if self.transfers.len() < self.limits.max_transfers {
            self.admit(queued);
        } else if self.queue.len() < self.limits.max_queue {
            self.pending.insert((queued.peer, queued.path.clone()));
            self.queue.push_back(queued);
            self.stats.queue_peak = self.stats.queue_peak.max(self.queue.len() as u64);
        } else {
            let m = format!(
                "server busy: {} transfers running, {} waiting; retry later",
                self.transfers.len(),
                self.queue.len()
            );
            self.refuse(peer, FailReason::Busy, Some((code::NOT_DEFINED, m)));
        }
    }

    /// A datagram from `peer` on transfer `id`'s own socket.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        id: TransferId,
        peer: SocketAddr,
        bytes: &[u8],
    ) {
        if !self.transfers.contains_key(&id) {
            // Late packet for a transfer already closed.
            bump(&mut self.stats.ignored_datagrams);
            return;
        }
        self.with_transfer(now, id, |t, ctx| t.datagram(now, peer, bytes, ctx));
    }

    /// `Command::Open` for `id` succeeded; the file (as served in its mode) has `size` bytes.
    pub fn handle_file_opened(&mut self, now: Instant, id: TransferId, size: u64) {
        self.with_transfer(now, id, |t, ctx| t.opened(now, size, ctx));
    }

    /// `Command::Open` for `id` failed: the client gets the matching ERROR.
    pub fn handle_file_error(&mut self, now: Instant, id: TransferId, error: FileError) {
        self.with_transfer(now, id, |t, ctx| t.open_failed(error, ctx));
    }

    /// Time passed: retransmit or give up on transfers that are due, drop queued requests that
    /// waited too long.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_queue(now);
        let due: Vec<(Instant, TransferId)> = self
            .timers
            .range(..=(now, TransferId(u64::MAX)))
            .copied()
            .collect();
        for (at, id) in due {
            // The entry may be early (the deadline moved later since it was armed): the
            // transfer ignores a timeout that is not due and `with_transfer` re-arms it.
            self.timers.remove(&(at, id));
            if let Some(t) = self.transfers.get_mut(&id) {
                t.armed = None;
            }
            self.with_transfer(now, id, |t, ctx| t.timeout(now, ctx));
        }
    }

    /// The next side effect, in the order it must be performed.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When [`Server::handle_timeout`] should next be called, if anything is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let transfer = self.timers.first().map(|&(at, _)| at);
        let queue = self.queue.front().map(|q| later(q.received, QUEUE_TIMEOUT));
        match (transfer, queue) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Transfers admitted and not yet ended.
    pub fn active_transfers(&self) -> usize {
        self.transfers.len()
    }

    /// Requests waiting for a transfer slot.
    pub fn queued_requests(&self) -> usize {
        self.queue.len()
    }

    /// Refuse a request: count, answer (if `reply`), report.
    fn refuse(&mut self, peer: SocketAddr, reason: FailReason, reply: Option<(u16, String)>) {
        self.stats.refuse(reason);
        if let Some((c, message)) = reply {
            let packet = Packet::Encoded(wire::emit_error(c, &message));
            self.commands.push_back(Command::Send {
                source: Source::Listener,
                peer,
                packet,
            });
        }
        self.commands
            .push_back(Command::Event(TransferEvent::Refused { peer, reason }));
    }

    /// Start a transfer for `q`: allocate its id and ask the driver to open the file.
    fn admit(&mut self, q: Queued) {
        let id = TransferId(self.next_id);
        self.next_id = self.next_id.saturating_add(1);
        self.pending.insert((q.peer, q.path.clone()));
        let t = Transfer::new(id, q.peer, q.path, q.asked, q.received);
        self.commands.push_back(t.open_command(q.mode));
        self.transfers.insert(id, t);
        bump(&mut self.stats.admitted);
    }

    /// Run `f` on transfer `id` (if it exists), then keep the timer index and the
    /// duplicate-request index in step and close the transfer if it ended.
    fn with_transfer(
        &mut self,
        now: Instant,
        id: TransferId,
        f: impl FnOnce(&mut Transfer, &mut Ctx<'_>) -> Step,
    ) {
        let Some(t) = self.transfers.get_mut(&id) else {
            return;
        };
        let mut ctx = Ctx {
            commands: &mut self.commands,
            stats: &mut self.stats,
            limits: &self.limits,
        };
        let step = f(t, &mut ctx);
        // Lazy re-indexing: every ACK moves the deadline later, and moving the index entry
        // each time costs a remove and an insert per packet. An entry at or before the
        // deadline stays; it fires early at most once per timeout and is re-armed then.
        match (t.armed, t.deadline) {
            (Some(armed), Some(deadline)) if armed <= deadline => {}
            (armed, deadline) => {
                if let Some(at) = armed {
                    self.timers.remove(&(at, id));
                }
                if let Some(at) = deadline {
                    self.timers.insert((at, id));
                }
                t.armed = deadline;
            }
        }
        if t.heard && t.indexed {
            t.indexed = false;
            self.pending.remove(&(t.peer, t.path.clone()));
        }
        if let Step::End(outcome) = step {
            self.end(now, id, outcome);
        }
    }

    /// Remove transfer `id`, emit `Close` and `Ended`, and start waiting requests.
    fn end(&mut self, now: Instant, id: TransferId, outcome: Outcome) {
        let Some(t) = self.transfers.remove(&id) else {
            return;
        };
        if let Some(at) = t.armed {
            self.timers.remove(&(at, id));
        }
        if t.indexed {
            self.pending.remove(&(t.peer, t.path.clone()));
        }
        match &outcome {
            Outcome::Completed { .. } => bump(&mut self.stats.completed),
            Outcome::Failed { reason } => self.stats.fail(*reason),
            Outcome::SizeQueried => bump(&mut self.stats.size_queries),
        }
        self.commands.push_back(Command::Close { id });
        self.commands
            .push_back(Command::Event(TransferEvent::Ended {
                id,
                peer: t.peer,
                path: t.path,
                outcome,
            }));
        self.expire_queue(now);
        while self.transfers.len() < self.limits.max_transfers {
            let Some(q) = self.queue.pop_front() else {
                break;
            };
            self.admit(q);
        }
    }

    /// Drop queued requests that waited [`QUEUE_TIMEOUT`] (oldest first).
    fn expire_queue(&mut self, now: Instant) {
        while let Some(q) = self.queue.front() {
            if later(q.received, QUEUE_TIMEOUT) > now {
                break;
            }
            if let Some(q) = self.queue.pop_front() {
                self.pending.remove(&(q.peer, q.path));
                bump(&mut self.stats.queue_expired);
            }
        }
    }
}
