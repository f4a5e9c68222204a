//! The uplink session: one edge's conversation with the control plane, as a sans-IO state
//! machine on virtual time.
//!
//! Time is a [`Duration`] since an origin the driver picks (its start); nothing here reads a
//! clock, opens a socket or awaits. The driver feeds inputs (`handle_*`), then drains
//! [`Session::poll_transmit`] (messages for the open connection, in order) and
//! [`Session::poll_command`] (everything else), and calls [`Session::handle_timeout`] at
//! [`Session::poll_timeout`].
//!
//! # Phases
//!
//! ```text
//! Waiting ──(retry time)──▶ Connecting ──connected──▶ Handshaking ──Welcome──▶ Established
//!    ▲                          │                         │                        │
//!    └──── backoff ◀────────────┴── failed / timed out ───┴── closed / error ─────┘
//! ```
//!
//! * **Connecting**: [`Command::Connect`] asks the driver to open a connection; it answers
//!   [`Session::handle_connected`] or [`Session::handle_connect_failed`].
//! * **Handshaking**: [`Hello`] goes out at once (announcing the stored snapshot generation);
//!   the control plane must answer [`Welcome`] within the handshake timeout.
//! * **Established**: a [`Heartbeat`] at once and then every interval from the Welcome (the
//!   driver fills in services and metrics: the session only numbers and times them); outbox
//!   events go out in batches of at most `max_batch`, at most `max_in_flight` batches
//!   unacknowledged, read `outbox_linger` after the driver reports an append
//!   ([`Session::handle_recorded`]) and otherwise every `outbox_poll`; snapshots and deltas
//!   turn into [`Command::Apply`], acknowledged with
//!   [`SnapshotAck`] once the driver reports them stored ([`Session::handle_applied`]); a
//!   snapshot identical to the one stored (sent again after a reconnect) is acknowledged at
//!   once without applying it. A delta
//!   that does not apply to the held snapshot is answered with a [`ResyncRequest`]. When
//!   nothing arrives for `missed_heartbeats + 1` intervals the connection is declared dead.
//!
//! Any failure closes the connection ([`Command::Close`], with an [`ErrorReply`] as the reason
//! when the edge refuses something), forgets what was in flight (unacknowledged events are sent again on the
//! next connection: their ids make that idempotent) and waits a jittered exponential backoff
//! ([`super::backoff`]), at least the `retry_after_ms` of an error from the control plane.
//!
//! # Logging once
//!
//! [`Command::Up`] and [`Command::Down`] mark state changes: `Down` is emitted once per outage
//! (when an established session ends, or the first attempt fails), later failed attempts of the
//! same outage are [`Command::Retry`], which drivers log quietly.

use std::collections::VecDeque;
use std::time::Duration;

use ims_proto::{
    CAP_DELTA, ControlMessage, EdgeEvent, EdgeMessage, ErrorCode, ErrorReply, EventBatch,
    Heartbeat, Hello, ResyncRequest, Snapshot, SnapshotAck, Welcome, check_compatible,
};

use super::backoff::{Backoff, BackoffConfig};

/// Tuning of a [`Session`].
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// What the edge says about itself; `snapshot_generation` is filled in by the session.
    pub hello: Hello,
    /// Longest a connection attempt may take.
    pub connect_timeout: Duration,
    /// Longest the control plane may take to answer Hello with Welcome.
    pub handshake_timeout: Duration,
    /// Heartbeat interval when the Welcome gives none (0).
    pub default_heartbeat: Duration,
    /// How often the outbox is checked for new events when it was empty (the fallback: the
    /// driver also reports appends with [`Session::handle_recorded`]).
    pub outbox_poll: Duration,
    /// How long after [`Session::handle_recorded`] the outbox is read: events recorded within
    /// this window (a burst of downloads finishing) go out in one batch.
    pub outbox_linger: Duration,
    /// Most events in one batch.
    pub max_batch: usize,
    /// Most batches sent and not yet acknowledged.
    pub max_in_flight: usize,
    /// Heartbeat intervals without any message before the connection is declared dead, minus
    /// one (3: dead after 4 silent intervals).
    pub missed_heartbeats: u32,
    /// Reconnection delays.
    pub backoff: BackoffConfig,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            hello: Hello::default(),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            default_heartbeat: Duration::from_secs(10),
            outbox_poll: Duration::from_millis(500),
            outbox_linger: Duration::from_millis(5),
            max_batch: 256,
            max_in_flight: 4,
            missed_heartbeats: 3,
            backoff: BackoffConfig::default(),
        }
    }
}

/// Shortest heartbeat interval accepted from a Welcome.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
/// Longest heartbeat interval accepted from a Welcome.
const MAX_HEARTBEAT: Duration = Duration::from_secs(3600);

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No connection; the next attempt is due at the timeout.
    Waiting,
    /// A connection attempt is under way.
    Connecting,
    /// Connected; Hello sent, waiting for Welcome.
    Handshaking,
    /// Welcome received: heartbeats, events and snapshots flow.
    Established,
}

/// A side effect for the driver, other than sending a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Open a connection, then call [`Session::handle_connected`] or
    /// [`Session::handle_connect_failed`].
    Connect,
    /// Close the connection (or abandon the attempt). The edge has no error message on the
    /// wire: the driver closes the QUIC connection with an error code and `reply`'s message as
    /// the reason when set.
    Close {
        /// Why the edge refuses something, when it does.
        reply: Option<ErrorReply>,
        /// Why, for logs.
        reason: String,
    },
    /// Store this snapshot durably, serve from it, then call [`Session::handle_applied`] with
    /// its generation (or [`Session::handle_apply_failed`]). Apply in the order given.
    Apply(Box<Snapshot>),
    /// Read up to `limit` outbox events with ids above `after`, then call
    /// [`Session::handle_outbox`].
    ReadOutbox {
        /// Read ids above this.
        after: u64,
        /// Most events to read.
        limit: usize,
    },
    /// Delete outbox events with ids up to and including `through`: the control plane has
    /// recorded them.
    RemoveOutbox {
        /// Highest id to delete.
        through: u64,
    },
    /// The session is up (log once).
    Up {
        /// Worker id the control plane knows this edge by (from its certificate).
        worker_id: String,
        /// The edge's site.
        site: String,
        /// Heartbeat interval in force.
        heartbeat_interval: Duration,
    },
    /// The control plane became unreachable (log once per outage).
    Down {
        /// Why.
        reason: String,
        /// When the next attempt starts.
        retry_in: Duration,
    },
    /// Another attempt of the same outage failed (log quietly).
    Retry {
        /// Why.
        reason: String,
        /// When the next attempt starts.
        retry_in: Duration,
    },
    /// Something worth a warning that changes nothing (an unknown message kind, a worker id
    /// different from the one enrolled).
    Warn(String),
}

/// Counters, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Connection attempts.
    pub connects: u64,
    /// Sessions that reached Established.
    pub established: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Events sent (resends included).
    pub events_sent: u64,
    /// Resync requests sent.
    pub resyncs: u64,
}

/// The uplink state machine. See the module docs.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    phase: Phase,
    /// Waiting: next attempt; Connecting: attempt deadline; Handshaking: Welcome deadline.
    deadline: Duration,
    backoff: Backoff,
    /// The control plane's `retry_after_ms`, applied to the next backoff.
    retry_after: Option<Duration>,
    commands: VecDeque<Command>,
    transmits: VecDeque<EdgeMessage>,
    /// The newest snapshot handed to [`Command::Apply`] (what the edge will hold).
    latest: Option<Snapshot>,
    /// The newest generation the driver reported durably stored.
    stored_generation: Option<u64>,
    /// `Down` was emitted for the current outage.
    outage_reported: bool,
    interval: Duration,
    next_heartbeat: Duration,
    heartbeat_seq: u64,
    /// `(seq, sent at)` of the newest heartbeat.
    last_heartbeat: Option<(u64, Duration)>,
    last_rtt: Option<Duration>,
    last_rx: Duration,
    acked_through: u64,
    sent_through: u64,
    /// Last id of each unacknowledged batch, oldest first.
    in_flight: VecDeque<u64>,
    /// `after` of the outstanding outbox read.
    reading: Option<u64>,
    /// Events were recorded since the last read was asked for (it may not have seen them).
    recorded: bool,
    next_poll: Duration,
    stats: SessionStats,
}

impl Session {
    /// A session that will connect at `now`. `snapshot` is the one in the store, if any;
    /// `seed` drives the backoff jitter.
    pub fn new(
        config: SessionConfig,
        seed: u64,
        snapshot: Option<Snapshot>,
        now: Duration,
    ) -> Self {
        let interval = config.default_heartbeat;
        Self {
            backoff: Backoff::new(config.backoff, seed),
            config,
            phase: Phase::Waiting,
            deadline: now,
            retry_after: None,
            commands: VecDeque::new(),
            transmits: VecDeque::new(),
            stored_generation: snapshot.as_ref().map(|s| s.generation),
            latest: snapshot,
            outage_reported: false,
            interval,
            next_heartbeat: now,
            heartbeat_seq: 0,
            last_heartbeat: None,
            last_rtt: None,
            last_rx: now,
            acked_through: 0,
            sent_through: 0,
            in_flight: VecDeque::new(),
            reading: None,
            recorded: false,
            next_poll: now,
            stats: SessionStats::default(),
        }
    }

    /// Replace what the next Hello says about the edge (addresses change).
    pub fn set_hello(&mut self, hello: Hello) {
        self.config.hello = hello;
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the session is established.
    pub fn is_up(&self) -> bool {
        self.phase == Phase::Established
    }

    /// The newest snapshot handed out for applying.
    pub fn latest(&self) -> Option<&Snapshot> {
        self.latest.as_ref()
    }

    /// The newest generation reported stored.
    pub fn stored_generation(&self) -> Option<u64> {
        self.stored_generation
    }

    /// The heartbeat interval in force.
    pub fn heartbeat_interval(&self) -> Duration {
        self.interval
    }

    /// Round trip of the newest acknowledged heartbeat.
    pub fn last_rtt(&self) -> Option<Duration> {
        self.last_rtt
    }

    /// Highest event id the control plane acknowledged in this process's lifetime.
    pub fn acked_through(&self) -> u64 {
        self.acked_through
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The next message for the open connection.
    pub fn poll_transmit(&mut self) -> Option<EdgeMessage> {
        self.transmits.pop_front()
    }

    /// The next side effect.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When [`Session::handle_timeout`] is next due (possibly already past).
    pub fn poll_timeout(&self) -> Option<Duration> {
        match self.phase {
            Phase::Waiting | Phase::Connecting | Phase::Handshaking => Some(self.deadline),
            Phase::Established => {
                let mut due = self.next_heartbeat.min(self.dead_at());
                if self.can_read() {
                    due = due.min(self.next_poll);
                }
                Some(due)
            }
        }
    }

    /// Run what is due at `now`: a connection attempt, timeouts, heartbeats, outbox reads.
    pub fn handle_timeout(&mut self, now: Duration) {
        match self.phase {
            Phase::Waiting if now >= self.deadline => {
                self.phase = Phase::Connecting;
                self.deadline = now + self.config.connect_timeout;
                self.stats.connects += 1;
                self.commands.push_back(Command::Connect);
            }
            Phase::Connecting if now >= self.deadline => {
                let reason = format!(
                    "no connection within {} s",
                    self.config.connect_timeout.as_secs()
                );
                self.fail(now, reason, Some(None));
            }
            Phase::Handshaking if now >= self.deadline => {
                let reason = format!(
                    "connected, but no Welcome within {} s",
                    self.config.handshake_timeout.as_secs()
                );
                self.fail(now, reason, Some(None));
            }
            Phase::Established => self.tick(now),
            _ => {}
        }
    }

    /// The connection asked for by [`Command::Connect`] is open: Hello goes out.
    pub fn handle_connected(&mut self, now: Duration) {
        if self.phase != Phase::Connecting {
            return;
        }
        self.phase = Phase::Handshaking;
        self.deadline = now + self.config.handshake_timeout;
        self.last_rx = now;
        let mut hello = self.config.hello.clone();
        hello.snapshot_generation = self.announced_generation();
        if !hello.capabilities.iter().any(|c| c == CAP_DELTA) {
            hello.capabilities.push(CAP_DELTA.to_owned());
        }
        self.transmits.push_back(EdgeMessage::Hello(hello));
    }

    /// The connection attempt failed (`reason` says why, for logs).
    pub fn handle_connect_failed(&mut self, now: Duration, reason: impl Into<String>) {
        if self.phase == Phase::Connecting {
            self.fail(now, reason.into(), None);
        }
    }

    /// The connection ended (closed by the peer, a transport error, the stream finished).
    pub fn handle_closed(&mut self, now: Duration, reason: impl Into<String>) {
        if matches!(self.phase, Phase::Handshaking | Phase::Established) {
            self.fail(now, reason.into(), None);
        }
    }

    /// A message from the control plane on the open connection.
    pub fn handle_message(&mut self, now: Duration, message: ControlMessage) {
        if !matches!(self.phase, Phase::Handshaking | Phase::Established) {
            return;
        }
        self.last_rx = now;
        match message {
            ControlMessage::Welcome(welcome) => self.welcome(now, welcome),
            ControlMessage::Error(reply) => {
                self.retry_after = reply.retry_after_ms.map(Duration::from_millis);
                let reason = refusal(&reply);
                self.fail(now, reason, Some(None));
                return;
            }
            other if self.phase == Phase::Handshaking => {
                self.commands.push_back(Command::Warn(format!(
                    "ignoring {} from the control plane before its Welcome",
                    other.kind()
                )));
            }
            ControlMessage::Snapshot(mut snapshot) => {
                snapshot.normalize();
                let held = self.latest.as_ref() == Some(&snapshot)
                    && self.stored_generation == Some(snapshot.generation);
                if held {
                    // Already stored and served (a reconnect): acknowledge, change nothing.
                    self.transmits
                        .push_back(EdgeMessage::SnapshotAck(SnapshotAck {
                            generation: snapshot.generation,
                        }));
                } else {
                    self.latest = Some(snapshot.clone());
                    self.commands.push_back(Command::Apply(Box::new(snapshot)));
                }
            }
            ControlMessage::Delta(delta) => match &self.latest {
                None => {
                    self.resync(self.stored_generation, "no snapshot to apply a delta to");
                }
                Some(base) => {
                    let mut next = base.clone();
                    match next.apply_delta(&delta) {
                        Ok(()) => {
                            self.latest = Some(next.clone());
                            self.commands.push_back(Command::Apply(Box::new(next)));
                        }
                        Err(mismatch) => {
                            let have = base.generation;
                            self.resync(Some(have), &mismatch.to_string());
                        }
                    }
                }
            },
            ControlMessage::HeartbeatAck(ack) => {
                if let Some((seq, sent)) = self.last_heartbeat {
                    if seq == ack.seq {
                        self.last_rtt = Some(now.saturating_sub(sent));
                    }
                }
            }
            ControlMessage::EventsAck(ack) => self.events_ack(now, ack.up_to),
            ControlMessage::EnrollResponse(_) => self.commands.push_back(Command::Warn(
                "ignoring an EnrollResponse on the uplink".to_owned(),
            )),
            ControlMessage::Unknown { kind } => self.commands.push_back(Command::Warn(format!(
                "ignoring a {kind} message from the control plane (newer protocol minor?)"
            ))),
        }
        if self.phase == Phase::Established {
            self.tick(now);
        }
    }

    /// The snapshot of `generation` from a [`Command::Apply`] is durably stored and served:
    /// acknowledge it.
    pub fn handle_applied(&mut self, _now: Duration, generation: u64) {
        self.stored_generation = Some(generation);
        if self.phase == Phase::Established {
            self.transmits
                .push_back(EdgeMessage::SnapshotAck(SnapshotAck { generation }));
        }
    }

    /// A [`Command::Apply`] failed (the store refused it): forget the unsaved state, drop the
    /// connection and ask for a full snapshot on the next one.
    pub fn handle_apply_failed(&mut self, now: Duration, reason: impl Into<String>) {
        let reason = reason.into();
        self.latest = None;
        if matches!(self.phase, Phase::Handshaking | Phase::Established) {
            let reply = ErrorReply {
                code: ErrorCode::Internal,
                message: format!("the edge could not store the snapshot: {reason}"),
                retry_after_ms: None,
            };
            self.fail(
                now,
                format!("storing the snapshot failed: {reason}"),
                Some(Some(reply)),
            );
        }
    }

    /// New events were appended to the outbox: read it within `outbox_linger` instead of at
    /// the next `outbox_poll` (a phone-home reaches the control plane in milliseconds, not up
    /// to half a second later). Reads stay one at a time and within `max_in_flight`, so under
    /// load events still accumulate into batches. Nothing happens unless established.
    pub fn handle_recorded(&mut self, now: Duration) {
        if self.phase != Phase::Established {
            return;
        }
        self.recorded = true;
        self.next_poll = self.next_poll.min(now + self.config.outbox_linger);
        self.tick(now);
    }

    /// The result of [`Command::ReadOutbox`] for `after`: the events found (unknown kinds
    /// already left out), the highest id read (`after` when none), and whether the read hit its
    /// limit (more may be waiting).
    pub fn handle_outbox(
        &mut self,
        now: Duration,
        after: u64,
        events: Vec<EdgeEvent>,
        scanned_through: u64,
        more: bool,
    ) {
        if self.phase != Phase::Established || self.reading != Some(after) {
            return; // A read from an earlier connection.
        }
        self.reading = None;
        let scanned_through = scanned_through.max(after);
        let events: Vec<EdgeEvent> = events.into_iter().filter(|e| e.id > after).collect();
        if let Some(last) = events.iter().map(|e| e.id).max() {
            self.stats.events_sent += events.len() as u64;
            self.transmits
                .push_back(EdgeMessage::Events(EventBatch { batch: events }));
            self.in_flight.push_back(last);
            self.sent_through = scanned_through.max(last);
        } else if scanned_through > self.sent_through {
            // Only kinds nobody can decode: skip them; delete them once nothing before them
            // waits for an acknowledgement.
            self.sent_through = scanned_through;
            if self.in_flight.is_empty() && scanned_through > self.acked_through {
                self.acked_through = scanned_through;
                self.commands.push_back(Command::RemoveOutbox {
                    through: scanned_through,
                });
            }
        }
        self.next_poll = if more {
            now
        } else if self.recorded {
            // Recorded while this read ran: it may have missed them.
            now + self.config.outbox_linger
        } else {
            now + self.config.outbox_poll
        };
        self.tick(now);
    }

    /// Due heartbeats, liveness and outbox reads (Established only).
    fn tick(&mut self, now: Duration) {
        if self.phase != Phase::Established {
            return;
        }
        if now >= self.dead_at() {
            let reason = format!(
                "no message from the control plane for {} s",
                now.saturating_sub(self.last_rx).as_secs()
            );
            self.fail(now, reason, Some(None));
            return;
        }
        if now >= self.next_heartbeat {
            self.heartbeat_seq += 1;
            self.stats.heartbeats += 1;
            self.last_heartbeat = Some((self.heartbeat_seq, now));
            self.transmits.push_back(EdgeMessage::Heartbeat(Heartbeat {
                seq: self.heartbeat_seq,
                ..Heartbeat::default()
            }));
            self.next_heartbeat = now + self.interval;
        }
        if self.can_read() && now >= self.next_poll {
            self.reading = Some(self.sent_through);
            self.recorded = false;
            self.commands.push_back(Command::ReadOutbox {
                after: self.sent_through,
                limit: self.config.max_batch.max(1),
            });
        }
    }

    fn welcome(&mut self, now: Duration, welcome: Welcome) {
        if self.phase == Phase::Established {
            self.commands
                .push_back(Command::Warn("ignoring a second Welcome".to_owned()));
            return;
        }
        if let Err(e) = check_compatible(welcome.version) {
            let reply = ErrorReply {
                code: ErrorCode::UnsupportedVersion,
                message: e.to_string(),
                retry_after_ms: None,
            };
            self.fail(now, e.to_string(), Some(Some(reply)));
            return;
        }
        self.interval = match welcome.heartbeat_interval_ms {
            0 => self.config.default_heartbeat,
            ms => Duration::from_millis(ms).clamp(MIN_HEARTBEAT, MAX_HEARTBEAT),
        };
        if let Some(enrolled) = &self.config.hello.worker_id {
            if *enrolled != welcome.worker_id {
                self.commands.push_back(Command::Warn(format!(
                    "the control plane knows this edge as {:?}, but it was enrolled as {enrolled:?}",
                    welcome.worker_id
                )));
            }
        }
        self.phase = Phase::Established;
        self.stats.established += 1;
        self.backoff.reset();
        self.outage_reported = false;
        self.next_heartbeat = now;
        self.next_poll = now;
        self.commands.push_back(Command::Up {
            worker_id: welcome.worker_id,
            site: welcome.site,
            heartbeat_interval: self.interval,
        });
    }

    fn events_ack(&mut self, now: Duration, up_to: u64) {
        if up_to <= self.acked_through {
            return;
        }
        let up_to = if up_to > self.sent_through {
            self.commands.push_back(Command::Warn(format!(
                "the control plane acknowledged events up to {up_to}, but only {} were sent",
                self.sent_through
            )));
            self.sent_through
        } else {
            up_to
        };
        if up_to <= self.acked_through {
            return;
        }
        self.acked_through = up_to;
        while self.in_flight.front().is_some_and(|&last| last <= up_to) {
            self.in_flight.pop_front();
        }
        self.commands
            .push_back(Command::RemoveOutbox { through: up_to });
        self.next_poll = self.next_poll.min(now);
    }

    fn resync(&mut self, have: Option<u64>, reason: &str) {
        self.stats.resyncs += 1;
        self.transmits
            .push_back(EdgeMessage::ResyncRequest(ResyncRequest {
                have_generation: have,
                reason: reason.to_owned(),
            }));
    }

    /// Give up on the connection: `close` is `Some(reply)` when the driver must close it (with
    /// an optional error for the peer), `None` when it is already gone.
    fn fail(&mut self, now: Duration, reason: String, close: Option<Option<ErrorReply>>) {
        if let Some(reply) = close {
            self.commands.push_back(Command::Close {
                reply,
                reason: reason.clone(),
            });
        }
        self.transmits.clear();
        self.in_flight.clear();
        self.sent_through = self.acked_through;
        self.reading = None;
        self.heartbeat_seq = 0;
        self.last_heartbeat = None;
        let mut delay = self.backoff.next_delay();
        if let Some(at_least) = self.retry_after.take() {
            delay = delay.max(at_least);
        }
        self.phase = Phase::Waiting;
        self.deadline = now + delay;
        if self.outage_reported {
            self.commands.push_back(Command::Retry {
                reason,
                retry_in: delay,
            });
        } else {
            self.outage_reported = true;
            self.commands.push_back(Command::Down {
                reason,
                retry_in: delay,
            });
        }
    }

    /// The generation to announce in Hello: the held snapshot's, when it is also stored.
    fn announced_generation(&self) -> Option<u64> {
        let latest = self.latest.as_ref()?.generation;
        (self.stored_generation == Some(latest)).then_some(latest)
    }

    fn can_read(&self) -> bool {
        self.reading.is_none() && self.in_flight.len() < self.config.max_in_flight.max(1)
    }

    fn dead_at(&self) -> Duration {
        self.last_rx + self.interval * (self.config.missed_heartbeats + 1)
    }
}

/// The log line for an error from the control plane, with what to do.
fn refusal(reply: &ErrorReply) -> String {
    let hint = match reply.code {
        ErrorCode::Unauthorized => {
            "; the control plane does not accept this edge's certificate (revoked, or from \
             another control plane): enrol again with `netbootd enroll`"
        }
        ErrorCode::UnsupportedVersion => "; upgrade the older of netbootd and ims-control",
        _ => "",
    };
    format!(
        "the control plane refused the session ({}): {}{hint}",
        reply.code.as_str(),
        reply.message
    )
}
