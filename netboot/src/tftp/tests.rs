//! Scenario tests of the TFTP core on virtual time.
//!
//! Requests are real encoded packets (`wire::Packet::emit`); everything the server sends is
//! decoded back with `wire::parse`. No file bytes move in the transcript tests: DATA is checked
//! as (block, offset, len). The simulation (`sim`) moves real bytes through a lossy network.

mod ratelimit;
mod requests;
mod sim;
mod transfer;
mod wire_tests;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::wire::{self, Request};
use super::{
    Command, FailReason, Mode, Outcome, Packet, Server, Source, TftpLimits, TransferEvent,
    TransferId,
};

/// Default retransmission timeout in these tests.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Retransmissions before giving up in these tests.
const RETRIES: u32 = 3;

fn limits() -> TftpLimits {
    TftpLimits {
        max_blksize: 1468,
        max_windowsize: 16,
        max_transfers: 8,
        max_queue: 8,
        default_timeout: TIMEOUT,
        max_retries: RETRIES,
        max_path_len: 255,
    }
}

/// Client `n` (port 2000 + n).
fn client(n: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 10], 2000 + n))
}

/// An encoded RRQ.
fn rrq(file: &str, mode: &str, opts: &[(&str, &str)]) -> Vec<u8> {
    wire::Packet::Rrq(Request {
        filename: file.as_bytes().to_vec(),
        mode: mode.as_bytes().to_vec(),
        options: opts
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
    })
    .emit()
}

/// A server on virtual time.
struct Harness {
    server: Server,
    /// Virtual "now".
    now: Instant,
    /// Virtual epoch.
    t0: Instant,
}

impl Harness {
    fn new(limits: TftpLimits) -> Self {
        #[allow(clippy::disallowed_methods)] // A virtual epoch; the core never reads the clock.
        let t0 = Instant::now();
        Self {
            server: Server::new(limits),
            now: t0,
            t0,
        }
    }

    fn drain(&mut self) -> Vec<Command> {
        std::iter::from_fn(|| self.server.poll_command()).collect()
    }

    fn request(&mut self, peer: SocketAddr, bytes: &[u8]) -> Vec<Command> {
        self.server.handle_request(self.now, peer, bytes);
        self.drain()
    }

    /// RRQ from `peer`; returns the commands.
    fn rrq(&mut self, peer: SocketAddr, file: &str, opts: &[(&str, &str)]) -> Vec<Command> {
        self.request(peer, &rrq(file, "octet", opts))
    }

    /// RRQ that must be admitted at once; returns its id.
    fn admit(&mut self, peer: SocketAddr, file: &str, opts: &[(&str, &str)]) -> TransferId {
        let cmds = self.rrq(peer, file, opts);
        match cmds.as_slice() {
            [
                Command::Open {
                    id,
                    peer: p,
                    path,
                    mode: Mode::Octet,
                },
            ] if *p == peer && path == file => *id,
            other => panic!("expected one Open, got {other:?}"),
        }
    }

    fn opened(&mut self, id: TransferId, size: u64) -> Vec<Command> {
        self.server.handle_file_opened(self.now, id, size);
        self.drain()
    }

    fn datagram(&mut self, id: TransferId, peer: SocketAddr, bytes: &[u8]) -> Vec<Command> {
        self.server.handle_datagram(self.now, id, peer, bytes);
        self.drain()
    }

    fn ack(&mut self, id: TransferId, peer: SocketAddr, block: u16) -> Vec<Command> {
        self.datagram(id, peer, &wire::emit_ack(block))
    }

    /// Move the clock by `d` and run timeouts.
    fn advance(&mut self, d: Duration) -> Vec<Command> {
        self.now += d;
        self.server.handle_timeout(self.now);
        self.drain()
    }

    /// Admit, open with `size` and check `Started` plus the first packets (returned).
    fn start(
        &mut self,
        peer: SocketAddr,
        file: &str,
        opts: &[(&str, &str)],
        size: u64,
    ) -> (TransferId, Vec<Command>) {
        let id = self.admit(peer, file, opts);
        let mut cmds = self.opened(id, size);
        assert!(
            matches!(cmds.first(), Some(Command::Event(TransferEvent::Started { id: i, .. })) if *i == id),
            "{cmds:?}"
        );
        cmds.remove(0);
        (id, cmds)
    }
}

/// The DATA packets in `cmds`, as (wire block, offset, len); every one goes to `peer` from `id`.
fn data(cmds: &[Command], id: TransferId, peer: SocketAddr) -> Vec<(u16, u64, usize)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Send {
                source,
                peer: p,
                packet: Packet::Data { block, offset, len },
            } => {
                assert_eq!((*source, *p), (Source::Transfer(id), peer));
                Some((*block, *offset, *len))
            }
            _ => None,
        })
        .collect()
}

/// Every encoded packet sent in `cmds`, decoded, with source and destination.
fn sent(cmds: &[Command]) -> Vec<(Source, SocketAddr, wire::Packet)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Send {
                source,
                peer,
                packet: Packet::Encoded(b),
            } => Some((
                *source,
                *peer,
                wire::parse(b).expect("server sent an unparsable packet"),
            )),
            _ => None,
        })
        .collect()
}

/// The single ERROR sent in `cmds`: (source, destination, code, message).
fn error(cmds: &[Command]) -> (Source, SocketAddr, u16, String) {
    let errors: Vec<_> = sent(cmds)
        .into_iter()
        .filter_map(|(s, p, pk)| match pk {
            wire::Packet::Error { code, message } => Some((s, p, code, message)),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 1, "{cmds:?}");
    errors.into_iter().next().unwrap()
}

/// The outcome of the `Ended` event in `cmds` (which must follow `Close` for `id`).
fn ended(cmds: &[Command], id: TransferId) -> Outcome {
    let close = cmds
        .iter()
        .position(|c| *c == Command::Close { id })
        .expect("no Close");
    let end = cmds
        .iter()
        .position(|c| matches!(c, Command::Event(TransferEvent::Ended { id: i, .. }) if *i == id))
        .expect("no Ended");
    assert!(close < end, "Close must precede Ended: {cmds:?}");
    match &cmds[end] {
        Command::Event(TransferEvent::Ended { outcome, .. }) => outcome.clone(),
        _ => unreachable!(),
    }
}

/// The `Refused` reason in `cmds`.
fn refused(cmds: &[Command]) -> FailReason {
    let r: Vec<_> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Event(TransferEvent::Refused { reason, .. }) => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(r.len(), 1, "{cmds:?}");
    r[0]
}

/// Stats invariants that hold after any sequence of inputs.
fn check_stats(server: &Server) {
    let s = server.stats();
    let failed: u64 = s.failed.values().sum();
    let refused: u64 = s.refused.values().sum();
    assert_eq!(
        s.admitted,
        s.completed + s.size_queries + failed + server.active_transfers() as u64,
        "{s:?}"
    );
    assert_eq!(
        s.requests,
        refused
            + s.duplicate_requests
            + s.admitted
            + s.queue_expired
            + server.queued_requests() as u64,
        "{s:?}"
    );
    assert!(
        s.started <= s.admitted && s.retransmitted_packets <= s.data_packets_sent,
        "{s:?}"
    );
}
