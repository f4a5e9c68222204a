//! A sequence of inputs to one TFTP `Server` with small limits, on virtual time.
//!
//! The input is read byte by byte as steps (missing bytes read as 0): clock moves and timeouts,
//! read requests assembled from fuzzer-chosen fields (plausible names, modes and options with
//! fuzzer values), raw datagrams on the listener or a transfer socket, ACKs steered towards the
//! blocks a transfer actually sent, client ERRORs, and the driver's answers to `Open` (a size,
//! or an error). After every step all commands are drained and checked against a model built
//! from them:
//! - ids of `Open` are fresh and increasing; every `Close` is for an open transfer, once, and is
//!   followed by its `Ended`; nothing is sent from a closed transfer's socket;
//! - the listener only sends ERRORs; every encoded packet parses;
//! - DATA lies inside the file: `offset` is a multiple of the granted blksize, its block number
//!   is `offset / blksize + 1` modulo 65536, and `len` is `min(blksize, size - offset)`;
//! - granted blksize/windowsize stay within the limits;
//! - the server's running and queued counts match the model and the limits; its `Stats` add up.
#![no_main]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ims_netboot::tftp::{
    Command, FileError, Packet, Server, Source, TftpLimits, TransferEvent, TransferId, wire,
};
use libfuzzer_sys::fuzz_target;

const LIMITS: TftpLimits = TftpLimits {
    max_blksize: 64,
    max_windowsize: 4,
    max_transfers: 2,
    max_queue: 2,
    default_timeout: Duration::from_secs(1),
    max_retries: 2,
    max_path_len: 32,
};

const FILES: [&[u8]; 6] = [
    b"pxelinux.0",
    b"boot/ipxe.efi",
    b"../etc/passwd",
    b"\\win\\boot.ini",
    b"/leading//./x",
    b"",
];
const MODES: [&[u8]; 4] = [b"octet", b"NETASCII", b"mail", b""];
const OPTIONS: [&str; 7] = [
    "blksize",
    "tsize",
    "windowsize",
    "timeout",
    "BlkSize",
    "x",
    "",
];

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn peer(n: u8) -> SocketAddr {
    match n % 4 {
        0 => SocketAddr::from(([10, 0, 0, 1], 1001)),
        1 => SocketAddr::from(([10, 0, 0, 2], 1002)),
        2 => SocketAddr::from(([10, 0, 0, 3], 1003)),
        _ => SocketAddr::from(([10, 0, 0, 1], 1999)),
    }
}

/// Fuzz input, read byte by byte; exhausted input reads as zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    fn bytes(&mut self, max: u8) -> Vec<u8> {
        let n = self.byte() % max.max(1);
        (0..n).map(|_| self.byte()).collect()
    }
}

/// What the model knows of one transfer.
#[derive(Debug, Default)]
struct Model {
    peer: Option<SocketAddr>,
    /// Size passed to `handle_file_opened` (once started).
    size: Option<u64>,
    blksize: u64,
    /// Last DATA block number sent.
    last_block: u16,
    closed: bool,
    ended: bool,
}

struct Fuzz {
    server: Server,
    now: Instant,
    transfers: BTreeMap<TransferId, Model>,
    /// Size offered in the current step's `handle_file_opened`, if any.
    opening: Option<(TransferId, u64)>,
}

impl Fuzz {
    /// A transfer id chosen by the fuzzer: mostly a known one.
    fn pick(&self, sel: u8) -> TransferId {
        let ids: Vec<TransferId> = self.transfers.keys().copied().collect();
        if ids.is_empty() || sel >= 240 {
            return TransferId(u64::from(sel));
        }
        // Prefer open ones.
        let open: Vec<TransferId> = ids
            .iter()
            .copied()
            .filter(|id| !self.transfers[id].closed)
            .collect();
        if !open.is_empty() && sel % 4 != 3 {
            return open[usize::from(sel) % open.len()];
        }
        ids[usize::from(sel) % ids.len()]
    }

    fn rrq(&self, inp: &mut Input<'_>) -> Vec<u8> {
        let f = inp.byte();
        let filename = if f >= 200 {
            inp.bytes(48)
        } else {
            FILES[usize::from(f) % FILES.len()].to_vec()
        };
        let mode = MODES[usize::from(inp.byte()) % MODES.len()].to_vec();
        let n = inp.byte() % 5;
        let mut options = Vec::new();
        for _ in 0..n {
            let name = OPTIONS[usize::from(inp.byte()) % OPTIONS.len()].to_owned();
            let value = match inp.byte() % 5 {
                0 => inp.byte().to_string(),
                1 => inp.u16().to_string(),
                2 => "0".to_owned(),
                3 => inp.u32().to_string(),
                _ => "abc".to_owned(),
            };
            options.push((name, value));
        }
        let request = wire::Request {
            filename,
            mode,
            options,
        };
        if inp.byte() % 8 == 0 {
            wire::Packet::Wrq(request)
        } else {
            wire::Packet::Rrq(request)
        }
        .emit()
    }

    fn step(&mut self, inp: &mut Input<'_>) {
        self.opening = None;
        match inp.byte() % 10 {
            0 => {
                self.now += Duration::from_millis(u64::from(inp.u16()));
                self.server.handle_timeout(self.now);
            }
            1 => {
                if let Some(at) = self.server.poll_timeout() {
                    self.now = self.now.max(at);
                }
                self.server.handle_timeout(self.now);
            }
            2 => {
                let p = peer(inp.byte());
                let bytes = self.rrq(inp);
                self.server.handle_request(self.now, p, &bytes);
            }
            3 => {
                let p = peer(inp.byte());
                let bytes = inp.bytes(64);
                self.server.handle_request(self.now, p, &bytes);
            }
            4 => {
                let id = self.pick(inp.byte());
                let who = inp.byte();
                let m = self.transfers.get(&id);
                let p = match (who % 4, m.and_then(|m| m.peer)) {
                    (0 | 1, Some(p)) => p,
                    (_, _) => peer(who),
                };
                let last = m.map_or(0, |m| m.last_block);
                let block = match inp.byte() % 4 {
                    0 => last,
                    1 => last.wrapping_sub(u16::from(inp.byte() % 4)),
                    2 => 0,
                    _ => inp.u16(),
                };
                self.server
                    .handle_datagram(self.now, id, p, &wire::emit_ack(block));
            }
            5 => {
                let id = self.pick(inp.byte());
                let p = self
                    .transfers
                    .get(&id)
                    .and_then(|m| m.peer)
                    .unwrap_or(peer(0));
                let bytes = inp.bytes(80);
                self.server.handle_datagram(self.now, id, p, &bytes);
            }
            6 => {
                let id = self.pick(inp.byte());
                let size = match inp.byte() % 4 {
                    0 => 0,
                    1 => u64::from(inp.byte()),
                    2 => u64::from(inp.byte() % 8) * 64,
                    _ => u64::from(inp.u32()),
                };
                self.opening = Some((id, size));
                self.server.handle_file_opened(self.now, id, size);
            }
            7 => {
                let id = self.pick(inp.byte());
                let e = [
                    FileError::NotFound,
                    FileError::AccessViolation,
                    FileError::Io,
                ];
                self.server
                    .handle_file_error(self.now, id, e[usize::from(inp.byte()) % 3]);
            }
            8 => {
                let id = self.pick(inp.byte());
                let p = self
                    .transfers
                    .get(&id)
                    .and_then(|m| m.peer)
                    .unwrap_or(peer(0));
                let code = if inp.byte() % 2 == 0 {
                    wire::code::OPTIONS_REFUSED
                } else {
                    0
                };
                self.server.handle_datagram(
                    self.now,
                    id,
                    p,
                    &wire::emit_error(code, "client says no"),
                );
            }
            _ => {
                // A request sent to a transfer socket, or a DATA packet.
                let id = self.pick(inp.byte());
                let p = self
                    .transfers
                    .get(&id)
                    .and_then(|m| m.peer)
                    .unwrap_or(peer(0));
                let bytes = self.rrq(inp);
                self.server.handle_datagram(self.now, id, p, &bytes);
            }
        }
        self.check();
    }

    fn check(&mut self) {
        let cmds: Vec<Command> = std::iter::from_fn(|| self.server.poll_command()).collect();
        assert!(cmds.len() <= 64, "{} commands from one input", cmds.len());
        let mut expect_ended: Option<TransferId> = None;
        for c in cmds {
            if let Some(id) = expect_ended.take() {
                assert!(
                    matches!(&c, Command::Event(TransferEvent::Ended { id: i, .. }) if *i == id),
                    "Close not followed by its Ended: {c:?}"
                );
            }
            match c {
                Command::Open { id, peer, path, .. } => {
                    assert!(self.transfers.keys().all(|&k| k < id), "Open id not fresh");
                    assert!(!path.is_empty() && path.len() <= LIMITS.max_path_len);
                    self.transfers.insert(
                        id,
                        Model {
                            peer: Some(peer),
                            ..Model::default()
                        },
                    );
                }
                Command::Send {
                    source: Source::Listener,
                    packet,
                    ..
                } => {
                    let Packet::Encoded(b) = packet else {
                        panic!("DATA from the listener")
                    };
                    assert!(matches!(wire::parse(&b), Ok(wire::Packet::Error { .. })));
                }
                Command::Send {
                    source: Source::Transfer(id),
                    peer,
                    packet,
                } => {
                    let m = self
                        .transfers
                        .get_mut(&id)
                        .expect("send from an unknown transfer");
                    assert!(!m.closed, "send from a closed transfer");
                    match packet {
                        Packet::Data { block, offset, len } => {
                            assert_eq!(Some(peer), m.peer);
                            let size = m.size.expect("DATA before Started");
                            assert!(offset <= size, "DATA offset past the end");
                            assert_eq!(offset % m.blksize, 0);
                            assert_eq!(block, (offset / m.blksize + 1) as u16);
                            assert_eq!(
                                len as u64,
                                m.blksize.min(size - offset),
                                "DATA past the end"
                            );
                            m.last_block = block;
                        }
                        Packet::Encoded(b) => {
                            let p = wire::parse(&b).expect("unparsable packet sent");
                            if Some(peer) != m.peer {
                                assert_eq!(
                                    p,
                                    wire::Packet::Error {
                                        code: 5,
                                        message: "unknown transfer ID".into()
                                    }
                                );
                            }
                        }
                    }
                }
                Command::Close { id } => {
                    let m = self
                        .transfers
                        .get_mut(&id)
                        .expect("Close of an unknown transfer");
                    assert!(!m.closed, "closed twice");
                    m.closed = true;
                    expect_ended = Some(id);
                }
                Command::Event(TransferEvent::Started {
                    id,
                    blksize,
                    windowsize,
                    ..
                }) => {
                    let (oid, size) = self.opening.expect("Started without an open");
                    assert_eq!(oid, id);
                    assert!(blksize == 512 || (8..=LIMITS.max_blksize).contains(&blksize));
                    assert!((1..=LIMITS.max_windowsize).contains(&windowsize));
                    let m = self
                        .transfers
                        .get_mut(&id)
                        .expect("Started for an unknown transfer");
                    assert!(m.size.is_none(), "started twice");
                    m.size = Some(size);
                    m.blksize = u64::from(blksize);
                }
                Command::Event(TransferEvent::Ended { id, .. }) => {
                    let m = self
                        .transfers
                        .get_mut(&id)
                        .expect("Ended for an unknown transfer");
                    assert!(m.closed && !m.ended);
                    m.ended = true;
                }
                Command::Event(TransferEvent::Refused { .. }) => {}
            }
        }
        assert!(expect_ended.is_none(), "Close was the last command");
        let open = self.transfers.values().filter(|m| !m.closed).count();
        let s = self.server.stats();
        assert_eq!(open, self.server.active_transfers());
        assert!(open <= LIMITS.max_transfers);
        assert!(self.server.queued_requests() <= LIMITS.max_queue);
        let failed: u64 = s.failed.values().sum();
        let refused: u64 = s.refused.values().sum();
        assert_eq!(s.admitted, self.transfers.len() as u64);
        assert_eq!(s.admitted, s.completed + s.size_queries + failed + open as u64);
        assert_eq!(
            s.requests,
            refused
                + s.duplicate_requests
                + s.admitted
                + s.queue_expired
                + self.server.queued_requests() as u64
        );
        assert!(s.started <= s.admitted && s.retransmitted_packets <= s.data_packets_sent);
        assert!(s.queue_peak <= LIMITS.max_queue as u64);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut f = Fuzz {
        server: Server::new(LIMITS),
        now: epoch(),
        transfers: BTreeMap::new(),
        opening: None,
    };
    let mut inp = Input(data);
    for _ in 0..256 {
        if inp.0.is_empty() {
            break;
        }
        f.step(&mut inp);
    }
});
