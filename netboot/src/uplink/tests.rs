//! Session transcripts on virtual time: a harness plays the driver (connections succeed or
//! fail on demand, the outbox is a map the harness serves reads from) and the tests play the
//! control plane.

mod handshake;
mod latency;
mod outbox;
mod sync;

use std::collections::BTreeMap;
use std::time::Duration;

use ims_proto::{
    ControlMessage, EdgeEvent, EdgeEventKind, EdgeMessage, HeartbeatAck, Hello, MacAddr, PhoneHome,
    ProtocolVersion, Snapshot, Welcome,
};

use super::session::{Command, Phase, Session, SessionConfig};

const SEC: Duration = Duration::from_secs(1);

/// The driver side of a session under test.
struct Harness {
    session: Session,
    now: Duration,
    /// Messages the session sent, not yet taken by the test.
    sent: Vec<EdgeMessage>,
    /// Commands other than outbox reads/removals, not yet taken by the test.
    commands: Vec<Command>,
    /// The durable outbox: id -> event.
    outbox: BTreeMap<u64, EdgeEvent>,
    /// Answer `ReadOutbox` at once from `outbox`.
    serve_outbox: bool,
    /// Reads asked for and not answered (when `serve_outbox` is off).
    pending_reads: Vec<(u64, usize)>,
    /// Id of the newest event ever added.
    last_id: u64,
}

impl Harness {
    fn new(snapshot: Option<Snapshot>) -> Self {
        Self::with_config(SessionConfig::default(), snapshot)
    }

    fn with_config(mut config: SessionConfig, snapshot: Option<Snapshot>) -> Self {
        config.hello = Hello {
            worker_id: Some("site-a-edge1".into()),
            site: Some("site-a".into()),
            software_version: "0.1.0".into(),
            hostname: "edge1".into(),
            ..Hello::default()
        };
        let mut h = Self {
            session: Session::new(config, 42, snapshot, Duration::ZERO),
            now: Duration::ZERO,
            sent: Vec::new(),
            commands: Vec::new(),
            outbox: BTreeMap::new(),
            serve_outbox: true,
            pending_reads: Vec::new(),
            last_id: 0,
        };
        h.session.handle_timeout(Duration::ZERO);
        h.drain();
        h
    }

    /// Collect the session's output; serve outbox reads and removals.
    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(m) = self.session.poll_transmit() {
                self.sent.push(m);
                progressed = true;
            }
            while let Some(c) = self.session.poll_command() {
                progressed = true;
                match c {
                    Command::ReadOutbox { after, limit } if self.serve_outbox => {
                        self.answer_read(after, limit);
                    }
                    Command::ReadOutbox { after, limit } => self.pending_reads.push((after, limit)),
                    Command::RemoveOutbox { through } => {
                        self.outbox.retain(|&id, _| id > through);
                        self.commands.push(Command::RemoveOutbox { through });
                    }
                    other => self.commands.push(other),
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn answer_read(&mut self, after: u64, limit: usize) {
        let events: Vec<EdgeEvent> = self
            .outbox
            .range(after + 1..)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect();
        let more = events.len() == limit;
        let through = events.last().map_or(after, |e| e.id);
        self.session
            .handle_outbox(self.now, after, events, through, more);
    }

    /// Move virtual time to `t`, firing every timeout on the way.
    fn run_until(&mut self, t: Duration) {
        while let Some(due) = self.session.poll_timeout() {
            if due > t {
                break;
            }
            self.now = self.now.max(due);
            self.session.handle_timeout(self.now);
            self.drain();
        }
        self.now = self.now.max(t);
        self.session.handle_timeout(self.now);
        self.drain();
    }

    fn advance(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    fn receive(&mut self, m: impl Into<ControlMessage>) {
        self.session.handle_message(self.now, m.into());
        self.drain();
    }

    fn take_sent(&mut self) -> Vec<EdgeMessage> {
        std::mem::take(&mut self.sent)
    }

    fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
    }

    /// Expect a Connect command, connect, and return the Hello.
    fn connect(&mut self) -> Hello {
        let cmds = self.take_commands();
        assert!(
            cmds.contains(&Command::Connect),
            "expected Connect, got {cmds:?}"
        );
        assert_eq!(self.session.phase(), Phase::Connecting);
        self.session.handle_connected(self.now);
        self.drain();
        match self.take_sent().as_slice() {
            [EdgeMessage::Hello(h)] => h.clone(),
            other => panic!("expected Hello, got {other:?}"),
        }
    }

    /// Connect and answer Welcome with `interval_ms`; returns the messages sent after it.
    fn establish(&mut self, interval_ms: u64) -> Vec<EdgeMessage> {
        self.connect();
        self.receive(welcome(interval_ms));
        assert_eq!(self.session.phase(), Phase::Established);
        let cmds = self.take_commands();
        assert!(
            cmds.iter().any(|c| matches!(c, Command::Up { .. })),
            "expected Up in {cmds:?}"
        );
        self.take_sent()
    }

    /// Append `n` events and report it, as the driver does when the event log is written.
    fn record(&mut self, n: u64) {
        self.add_events(n);
        self.session.handle_recorded(self.now);
        self.drain();
    }

    /// Append `n` phone-home events with the next ids.
    fn add_events(&mut self, n: u64) {
        for _ in 0..n {
            self.last_id += 1;
            self.outbox.insert(self.last_id, event(self.last_id));
        }
    }
}

fn welcome(interval_ms: u64) -> Welcome {
    Welcome {
        version: ProtocolVersion::CURRENT,
        worker_id: "site-a-edge1".into(),
        site: "site-a".into(),
        heartbeat_interval_ms: interval_ms,
        server_time_ms: 1_700_000_000_000,
        capabilities: vec!["delta".into()],
    }
}

fn hb_ack(seq: u64) -> HeartbeatAck {
    HeartbeatAck {
        seq,
        server_time_ms: 0,
    }
}

fn event(id: u64) -> EdgeEvent {
    EdgeEvent {
        id,
        at_ms: 1_700_000_000_000 + id as i64,
        kind: EdgeEventKind::PhoneHome(PhoneHome {
            mac: MacAddr([0x52, 0x54, 0, 0, 0, 1]),
            ip: None,
            body: None,
        }),
    }
}

/// Ids of the events in each Events message of `sent`.
fn batches(sent: &[EdgeMessage]) -> Vec<Vec<u64>> {
    sent.iter()
        .filter_map(|m| match m {
            EdgeMessage::Events(b) => Some(b.batch.iter().map(|e| e.id).collect()),
            _ => None,
        })
        .collect()
}

/// Sequence numbers of the heartbeats in `sent`.
fn heartbeats(sent: &[EdgeMessage]) -> Vec<u64> {
    sent.iter()
        .filter_map(|m| match m {
            EdgeMessage::Heartbeat(h) => Some(h.seq),
            _ => None,
        })
        .collect()
}

/// The `retry_in` of a Down or Retry command.
fn retry_in(c: &Command) -> Option<Duration> {
    match c {
        Command::Down { retry_in, .. } | Command::Retry { retry_in, .. } => Some(*retry_in),
        _ => None,
    }
}
