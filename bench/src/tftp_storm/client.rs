//! One simulated TFTP client: a read request, then DATA in, ACKs out, as RFC 1350 with the
//! RFC 7440 window. Sans-IO: it is fed packets and the time, and says what to send.
//!
//! - The first reply fixes the server's transfer port (TID); packets from other ports are
//!   counted as stray and ignored.
//! - An OACK sets the block and window size (what it leaves out keeps the RFC defaults 512 and
//!   1) and is acknowledged with ACK 0. A first reply of DATA block 1 means no options.
//! - In-order blocks are counted; every `window`-th one and the last (shorter than the block
//!   size) are acknowledged. The block number wraps past 65535 to 0.
//! - A block out of order (a gap, or a duplicate after a lost ACK) is answered once with the
//!   ACK of the last in-order block, so the server resends from there (RFC 7440 §4).
//! - After `timeout` without progress the last ACK (or the request) is sent again; after
//!   `retries` such resends in a row the client fails.

use std::time::{Duration, Instant};

use super::packet::{Granted, Incoming, decode};

/// How every client of a run behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientParams {
    /// Block size asked for; without options the block size is 512.
    pub blksize: u16,
    /// Window size asked for.
    pub windowsize: u16,
    /// Whether the request carries options (blksize, windowsize, tsize) at all.
    pub options: bool,
    /// Silence after which the last packet is sent again.
    pub timeout: Duration,
    /// Resends in a row before the client gives up.
    pub retries: u32,
    /// The file's expected length, if known; a transfer of another length fails.
    pub expect_size: Option<u64>,
}

/// Where a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The server's listening port (the request).
    Listener,
    /// The transfer's port on the server.
    Tid(u16),
}

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// The run's read request.
    Rrq,
    /// ACK of a block.
    Ack(u16),
}

/// A packet for the driver to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub target: Target,
    /// Contents.
    pub payload: Payload,
}

/// Why a client failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// No progress after `retries` resends.
    Timeout,
    /// The server sent ERROR with this code.
    ServerError(u16),
    /// The transfer ended with another length than `tsize` or the expected size.
    SizeMismatch,
    /// A block longer than the block size, or an undecodable packet from the TID.
    Protocol,
}

/// Where the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started.
    Idle,
    /// Request sent, no answer yet.
    Requesting,
    /// Receiving blocks.
    Receiving,
    /// The last block arrived and was acknowledged.
    Done,
    /// Gave up.
    Failed(Failure),
}

/// Per-client counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCounters {
    /// ACKs sent, resends included.
    pub acks: u64,
    /// ACKs sent again (after a timeout, a gap or a duplicate).
    pub reacks: u64,
    /// Requests sent again.
    pub rrq_resends: u64,
    /// DATA blocks received out of order or twice.
    pub out_of_order: u64,
    /// Packets from a port other than the TID.
    pub stray: u64,
}

/// One client; see the module docs.
#[derive(Debug, Clone)]
pub struct Client {
    params: ClientParams,
    state: State,
    tid: Option<u16>,
    blksize: usize,
    window: u16,
    granted: Option<Granted>,
    last: u16,
    blocks: u64,
    bytes: u64,
    in_window: u16,
    reacked: bool,
    tries: u32,
    last_sent: Payload,
    started: Option<Instant>,
    first_data: Option<Instant>,
    finished: Option<Instant>,
    last_progress: Option<Instant>,
    counters: ClientCounters,
}

impl Client {
    /// A client that has not started.
    pub fn new(params: ClientParams) -> Self {
        Self {
            params,
            state: State::Idle,
            tid: None,
            blksize: 512,
            window: 1,
            granted: None,
            last: 0,
            blocks: 0,
            bytes: 0,
            in_window: 0,
            reacked: false,
            tries: 0,
            last_sent: Payload::Rrq,
            started: None,
            first_data: None,
            finished: None,
            last_progress: None,
            counters: ClientCounters::default(),
        }
    }

    /// Start at `now`: the request to send.
    pub fn start(&mut self, now: Instant) -> Transmit {
        self.state = State::Requesting;
        self.started = Some(now);
        self.last_progress = Some(now);
        self.last_sent = Payload::Rrq;
        Transmit {
            target: Target::Listener,
            payload: Payload::Rrq,
        }
    }

    /// A datagram of `len` bytes starting with `head` arrived from the server's port
    /// `from_port` at `now`; returns what to answer.
    pub fn handle(
        &mut self,
        now: Instant,
        from_port: u16,
        head: &[u8],
        len: usize,
    ) -> Option<Transmit> {
        if !matches!(self.state, State::Requesting | State::Receiving) {
            // Late retransmissions after the end: not this client's business any more.
            return None;
        }
        match self.tid {
            Some(tid) if tid != from_port => {
                self.counters.stray += 1;
                return None;
            }
            _ => {}
        }
        let incoming = decode(head, len);
        if self.tid.is_none() {
            if !matches!(incoming, Incoming::Oack(_) | Incoming::Data { .. }) {
                if let Incoming::Error { code, .. } = incoming {
                    return self.fail(now, Failure::ServerError(code));
                }
                return self.fail(now, Failure::Protocol);
            }
            self.tid = Some(from_port);
            self.state = State::Receiving;
        }
        match incoming {
            Incoming::Oack(g) if self.blocks == 0 => {
                if self.granted.is_none() {
                    self.granted = Some(g);
                    self.blksize = usize::from(g.blksize.unwrap_or(512));
                    self.window = g.windowsize.unwrap_or(1).max(1);
                    self.progress(now);
                } else {
                    self.counters.reacks += 1;
                }
                Some(self.send_ack(0))
            }
            Incoming::Data { block, len } => self.data(now, block, len),
            Incoming::Error { code, .. } => self.fail(now, Failure::ServerError(code)),
            Incoming::Oack(_) | Incoming::Other => self.fail(now, Failure::Protocol),
        }
    }

    fn data(&mut self, now: Instant, block: u16, len: usize) -> Option<Transmit> {
        if block != self.last.wrapping_add(1) {
            self.counters.out_of_order += 1;
            if self.reacked {
                return None;
            }
            self.reacked = true;
            self.in_window = 0;
            self.counters.reacks += 1;
            return Some(self.send_ack(self.last));
        }
        if len > self.blksize {
            return self.fail(now, Failure::Protocol);
        }
        self.first_data.get_or_insert(now);
        self.last = block;
        self.blocks += 1;
        self.bytes += len as u64;
        self.reacked = false;
        self.progress(now);
        if len < self.blksize {
            let expected = self
                .granted
                .and_then(|g| g.tsize)
                .or(self.params.expect_size);
            if expected.is_some_and(|n| n != self.bytes) {
                self.state = State::Failed(Failure::SizeMismatch);
            } else {
                self.state = State::Done;
            }
            self.finished = Some(now);
            return Some(self.send_ack(block));
        }
        self.in_window += 1;
        if self.in_window >= self.window {
            self.in_window = 0;
            return Some(self.send_ack(block));
        }
        None
    }

    /// Time passed: resend the last packet after `timeout` of silence, or give up.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Transmit> {
        let due = self.deadline().is_some_and(|d| d <= now);
        if !due {
            return None;
        }
        if self.tries >= self.params.retries {
            return self.fail(now, Failure::Timeout);
        }
        self.tries += 1;
        self.last_progress = Some(now);
        self.in_window = 0;
        match self.last_sent {
            Payload::Rrq => {
                self.counters.rrq_resends += 1;
                Some(Transmit {
                    target: Target::Listener,
                    payload: Payload::Rrq,
                })
            }
            Payload::Ack(b) => {
                self.counters.reacks += 1;
                Some(self.send_ack(b))
            }
        }
    }

    /// When [`Self::handle_timeout`] next has something to do, while the client runs.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Requesting | State::Receiving => {
                self.last_progress.map(|t| t + self.params.timeout)
            }
            _ => None,
        }
    }

    fn progress(&mut self, now: Instant) {
        self.last_progress = Some(now);
        self.tries = 0;
    }

    fn send_ack(&mut self, block: u16) -> Transmit {
        self.counters.acks += 1;
        self.last_sent = Payload::Ack(block);
        Transmit {
            target: Target::Tid(self.tid.unwrap_or(0)),
            payload: Payload::Ack(block),
        }
    }

    fn fail(&mut self, now: Instant, why: Failure) -> Option<Transmit> {
        self.state = State::Failed(why);
        self.finished = Some(now);
        None
    }

    /// Where the client is.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether it is done or failed.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done | State::Failed(_))
    }

    /// Payload bytes received in order so far (the file offset of the next block).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// In-order blocks received.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// The options granted, if the server sent an OACK.
    pub fn granted(&self) -> Option<Granted> {
        self.granted
    }

    /// Block size in use.
    pub fn blksize(&self) -> usize {
        self.blksize
    }

    /// Window size in use.
    pub fn window(&self) -> u16 {
        self.window
    }

    /// Request sent → last block acknowledged (or failure), once finished.
    pub fn completion_time(&self) -> Option<Duration> {
        Some(self.finished?.saturating_duration_since(self.started?))
    }

    /// Request sent → first in-order block.
    pub fn first_byte_time(&self) -> Option<Duration> {
        Some(self.first_data?.saturating_duration_since(self.started?))
    }

    /// When it finished.
    pub fn finished_at(&self) -> Option<Instant> {
        self.finished
    }

    /// When it started.
    pub fn started_at(&self) -> Option<Instant> {
        self.started
    }

    /// Its counters.
    pub fn counters(&self) -> ClientCounters {
        self.counters
    }
}
