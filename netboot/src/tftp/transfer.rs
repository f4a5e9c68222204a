//! One transfer's state machine: opening, option negotiation, windowed sending.
//!
//! Blocks are numbered absolutely from 1 (`u64`, never wraps); the 16-bit wire block number is
//! the absolute number modulo 65536, so block 65536 goes out as 0 (the rollover most servers
//! and clients use). A file of `size` bytes at `blksize` has `size / blksize + 1` blocks, the
//! last one shorter than `blksize` (empty when `size` is a multiple of it).
//!
//! A 16-bit ACK is mapped to the absolute block at most [`MAX_WINDOW`] blocks past the last
//! acknowledged one; the granted window never exceeds that, so the mapping is exact for every
//! block the client can have seen. An ACK that maps to the last acknowledged block or behind it
//! is a duplicate: it is ignored, which is what prevents the Sorcerer's Apprentice syndrome
//! (a duplicated ACK never triggers a duplicated window). Retransmission is driven by the timer
//! alone, and by a partial ACK (RFC 7440 §4: the client saw a gap and names the last block it
//! has; the window restarts right after it).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::options::{self, Asked, MAX_WINDOW};
use super::stats::{Stats, bump};
use super::wire::{self, code};
use super::{
    Command, FailReason, FileError, Mode, Outcome, Packet, Source, TftpLimits, TransferEvent,
    TransferId,
};

/// Shortest retransmission timeout used, whatever the limits say (keeps timers moving).
const MIN_TIMEOUT: Duration = Duration::from_millis(10);

/// What a transfer method needs from the server.
pub(crate) struct Ctx<'a> {
    /// Commands for the driver.
    pub(crate) commands: &'a mut VecDeque<Command>,
    /// Counters.
    pub(crate) stats: &'a mut Stats,
    /// Limits.
    pub(crate) limits: &'a TftpLimits,
}

/// Whether the transfer goes on.
#[derive(Debug)]
pub(crate) enum Step {
    /// Still running.
    Continue,
    /// Over; the server closes it.
    End(Outcome),
}

/// Sizes fixed when the file is opened.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// File size in bytes (as served in the mode).
    size: u64,
    /// Block size.
    blksize: u16,
    /// Window size.
    windowsize: u16,
    /// Retransmission timeout.
    timeout: Duration,
    /// Number of DATA blocks (the last may be empty).
    total_blocks: u64,
}

/// Where a transfer is.
#[derive(Debug)]
enum Phase {
    /// `Command::Open` issued; waiting for the driver.
    Opening,
    /// OACK sent; waiting for ACK 0.
    Negotiating {
        /// Sizes.
        plan: Plan,
        /// The OACK, for retransmission.
        oack: Vec<u8>,
        /// Whether the OACK answered `tsize` (an ERROR now is a size query, not a failure).
        size_query: bool,
    },
    /// Sending DATA.
    Sending {
        /// Sizes.
        plan: Plan,
        /// Highest block acknowledged (0: none).
        acked: u64,
        /// Last block of the window in flight.
        sent_upto: u64,
    },
}

/// One admitted request.
#[derive(Debug)]
pub(crate) struct Transfer {
    /// Id (and TID socket).
    pub(crate) id: TransferId,
    /// Client.
    pub(crate) peer: SocketAddr,
    /// Normalised path.
    pub(crate) path: String,
    /// When the request arrived (on the listener, before any queueing).
    requested_at: Instant,
    /// Options the client asked for.
    asked: Vec<Asked>,
    /// State.
    phase: Phase,
    /// When [`Transfer::timeout`] is due.
    pub(crate) deadline: Option<Instant>,
    /// The server's timer index holds `(armed, id)`: at or before `deadline` (an ACK that
    /// moves the deadline later leaves the entry; when it fires early it is re-armed).
    pub(crate) armed: Option<Instant>,
    /// Consecutive retransmissions without progress.
    retries: u32,
    /// DATA packets retransmitted.
    retransmits: u64,
    /// Highest block ever sent.
    highest_sent: u64,
    /// The client has sent a valid packet to this transfer's TID.
    pub(crate) heard: bool,
    /// The server's duplicate-request index holds this transfer's (peer, path).
    pub(crate) indexed: bool,
}

/// Longest file name echoed in an ERROR message, in characters.
pub(crate) const SHOWN_NAME_CHARS: usize = 64;

/// `name` as echoed to the client in an ERROR: its first [`SHOWN_NAME_CHARS`] characters,
/// followed by "..." when it is longer (a name may be up to `max_path_len` bytes; the ERROR
/// should stay a short datagram).
pub(crate) fn shown_name(name: &str) -> std::borrow::Cow<'_, str> {
    match name.char_indices().nth(SHOWN_NAME_CHARS) {
        None => name.into(),
        Some((cut, _)) => format!("{}...", &name[..cut]).into(),
    }
}

/// `now + d`, saturating at `now` (an `Instant` that cannot be represented never comes up in
/// practice; this only keeps arithmetic panic-free).
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

impl Transfer {
    /// A transfer waiting for its file.
    pub(crate) fn new(
        id: TransferId,
        peer: SocketAddr,
        path: String,
        asked: Vec<Asked>,
        requested_at: Instant,
    ) -> Self {
        Self {
            id,
            peer,
            path,
            requested_at,
            asked,
            phase: Phase::Opening,
            deadline: None,
            armed: None,
            retries: 0,
            retransmits: 0,
            highest_sent: 0,
            heard: false,
            indexed: true,
        }
    }

    /// The `Open` command for this transfer.
    pub(crate) fn open_command(&self, mode: Mode) -> Command {
        Command::Open {
            id: self.id,
            peer: self.peer,
            path: self.path.clone(),
            mode,
        }
    }

    /// Queue `packet` to the client from this transfer's socket.
    fn send(&self, ctx: &mut Ctx<'_>, peer: SocketAddr, packet: Packet) {
        ctx.commands.push_back(Command::Send {
            source: Source::Transfer(self.id),
            peer,
            packet,
        });
    }

    /// The file is open with `size` bytes: grant options, then OACK or the first window.
    pub(crate) fn opened(&mut self, now: Instant, size: u64, ctx: &mut Ctx<'_>) -> Step {
        if !matches!(self.phase, Phase::Opening) {
            bump(&mut ctx.stats.ignored_datagrams);
            return Step::Continue;
        }
        let g = options::grant(&self.asked, ctx.limits, size);
        let plan = Plan {
            size,
            blksize: g.blksize,
            windowsize: g.windowsize,
            timeout: g.timeout.max(MIN_TIMEOUT),
            total_blocks: (size / u64::from(g.blksize)).saturating_add(1),
        };
        bump(&mut ctx.stats.started);
        ctx.stats.last_blksize = g.blksize;
        ctx.stats.last_windowsize = g.windowsize;
        ctx.commands
            .push_back(Command::Event(TransferEvent::Started {
                id: self.id,
                peer: self.peer,
                path: self.path.clone(),
                blksize: g.blksize,
                windowsize: g.windowsize,
                tsize: g.tsize,
            }));
        if g.oack.is_empty() {
            self.phase = Phase::Sending {
                plan,
                acked: 0,
                sent_upto: 0,
            };
            self.send_window(now, ctx);
        } else {
            let oack = wire::emit_oack(&g.oack);
            self.send(ctx, self.peer, Packet::Encoded(oack.clone()));
            self.phase = Phase::Negotiating {
                plan,
                oack,
                size_query: g.tsize,
            };
            self.deadline = Some(later(now, plan.timeout));
        }
        Step::Continue
    }

    /// The file could not be opened: tell the client and end.
    pub(crate) fn open_failed(&mut self, error: FileError, ctx: &mut Ctx<'_>) -> Step {
        if !matches!(self.phase, Phase::Opening) {
            bump(&mut ctx.stats.ignored_datagrams);
            return Step::Continue;
        }
        let name = shown_name(&self.path);
        let (c, message, reason) = match error {
            FileError::NotFound => (
                code::FILE_NOT_FOUND,
                format!("file not found: {name}"),
                FailReason::NotFound,
            ),
            FileError::AccessViolation => (
                code::ACCESS_VIOLATION,
                format!("access violation: {name} is not a readable file under the root"),
                FailReason::AccessViolation,
            ),
            FileError::Io => (
                code::NOT_DEFINED,
                format!("read error on the server for {name}; retry later"),
                FailReason::Io,
            ),
        };
        self.send(
            ctx,
            self.peer,
            Packet::Encoded(wire::emit_error(c, &message)),
        );
        Step::End(Outcome::Failed { reason })
    }

    /// A datagram on this transfer's socket.
    pub(crate) fn datagram(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        bytes: &[u8],
        ctx: &mut Ctx<'_>,
    ) -> Step {
        let parsed = wire::parse(bytes);
        if peer != self.peer {
            bump(&mut ctx.stats.foreign_tid_packets);
            // Never answer an ERROR (two servers could bounce errors forever).
            if !matches!(parsed, Ok(wire::Packet::Error { .. })) {
                let error = wire::emit_error(code::UNKNOWN_TID, "unknown transfer ID");
                self.send(ctx, peer, Packet::Encoded(error));
            }
            return Step::Continue;
        }
        let ignored = |ctx: &mut Ctx<'_>| {
            bump(&mut ctx.stats.ignored_datagrams);
            Step::Continue
        };
        let Ok(packet) = parsed else {
            return ignored(ctx);
        };
        if matches!(self.phase, Phase::Opening) {
            // The client cannot know this TID yet.
            return ignored(ctx);
        }
        match packet {
            wire::Packet::Error { code: c, .. } => {
                self.heard = true;
                let reason = match self.phase {
                    // UEFI PXE asks for tsize, reads the OACK and aborts (ERROR 8 "User
                    // aborted the transfer", or 0); the download follows as a new request.
                    Phase::Negotiating {
                        size_query: true, ..
                    } if c == code::OPTIONS_REFUSED || c == 0 => {
                        return Step::End(Outcome::SizeQueried);
                    }
                    Phase::Negotiating { .. } if c == code::OPTIONS_REFUSED => {
                        FailReason::OptionsRefused
                    }
                    _ => FailReason::ClientError,
                };
                Step::End(Outcome::Failed { reason })
            }
            wire::Packet::Ack { block } => {
                self.heard = true;
                self.ack(now, block, ctx)
            }
            _ => ignored(ctx),
        }
    }

    /// ACK `block` from the client.
    fn ack(&mut self, now: Instant, block: u16, ctx: &mut Ctx<'_>) -> Step {
        match &mut self.phase {
            Phase::Opening => Step::Continue,
            Phase::Negotiating { plan, .. } => {
                if block == 0 {
                    let plan = *plan;
                    self.phase = Phase::Sending {
                        plan,
                        acked: 0,
                        sent_upto: 0,
                    };
                    self.retries = 0;
                    self.send_window(now, ctx);
                } else {
                    bump(&mut ctx.stats.ignored_datagrams);
                }
                Step::Continue
            }
            Phase::Sending {
                plan,
                acked,
                sent_upto,
            } => {
                // Blocks ahead of the last ACK, modulo 65536 (truncation intended).
                let ahead = u64::from(block.wrapping_sub(*acked as u16));
                if ahead == 0 || ahead > u64::from(MAX_WINDOW) {
                    bump(&mut ctx.stats.duplicate_acks);
                    return Step::Continue;
                }
                let target = acked.saturating_add(ahead);
                if target > *sent_upto {
                    // A block never sent.
                    bump(&mut ctx.stats.ignored_datagrams);
                    return Step::Continue;
                }
                *acked = target;
                self.retries = 0;
                if target >= plan.total_blocks {
                    self.deadline = None;
                    return Step::End(Outcome::Completed {
                        bytes: plan.size,
                        retransmits: self.retransmits,
                        duration: now.saturating_duration_since(self.requested_at),
                        blksize: plan.blksize,
                        windowsize: plan.windowsize,
                    });
                }
                self.send_window(now, ctx);
                Step::Continue
            }
        }
    }

    /// Send the window after the last acknowledged block and arm the timer.
    fn send_window(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        let Phase::Sending {
            plan,
            acked,
            sent_upto,
        } = &mut self.phase
        else {
            return;
        };
        let plan = *plan;
        let first = acked.saturating_add(1);
        let last = acked
            .saturating_add(u64::from(plan.windowsize))
            .min(plan.total_blocks);
        *sent_upto = last;
        let blksize = u64::from(plan.blksize);
        for abs in first..=last {
            let offset = (abs - 1).saturating_mul(blksize);
            let len = plan.size.saturating_sub(offset).min(blksize);
            if abs <= self.highest_sent {
                self.retransmits = self.retransmits.saturating_add(1);
                bump(&mut ctx.stats.retransmitted_packets);
            } else {
                self.highest_sent = abs;
            }
            bump(&mut ctx.stats.data_packets_sent);
            ctx.stats.bytes_sent = ctx.stats.bytes_sent.saturating_add(len);
            let packet = Packet::Data {
                // Wire block number: modulo 65536 (truncation intended).
                block: abs as u16,
                offset,
                // `len <= blksize <= 65535`.
                len: usize::try_from(len).unwrap_or(usize::MAX),
            };
            ctx.commands.push_back(Command::Send {
                source: Source::Transfer(self.id),
                peer: self.peer,
                packet,
            });
        }
        self.deadline = Some(later(now, plan.timeout));
    }

    /// The timer fired (if due): retransmit, or give up after `max_retries`.
    pub(crate) fn timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) -> Step {
        if self.deadline.is_none_or(|d| d > now) {
            return Step::Continue;
        }
        if self.retries >= ctx.limits.max_retries {
            self.deadline = None;
            let message = format!(
                "timed out: no acknowledgement after {} retransmissions",
                self.retries
            );
            self.send(
                ctx,
                self.peer,
                Packet::Encoded(wire::emit_error(code::NOT_DEFINED, &message)),
            );
            return Step::End(Outcome::Failed {
                reason: FailReason::Timeout,
            });
        }
        self.retries += 1;
        match &self.phase {
            Phase::Opening => self.deadline = None,
            Phase::Negotiating { plan, oack, .. } => {
                let (timeout, oack) = (plan.timeout, oack.clone());
                self.send(ctx, self.peer, Packet::Encoded(oack));
                self.deadline = Some(later(now, timeout));
            }
            Phase::Sending { .. } => self.send_window(now, ctx),
        }
        Step::Continue
    }
}
