//! An in-memory network between the server and simulated clients, with loss, duplication,
//! reordering (per-packet latency jitter) and latency, all on virtual time.
//!
//! The driver part plays the daemon's role: it answers `Open` with the file size and turns
//! `Packet::Data { offset, len }` into real DATA bytes cut from the file. The clients are
//! RFC 1350 / 2347 / 7440 readers written here: they lock onto the first TID that answers
//! (anything from another TID gets ERROR 5), acknowledge each window (or the last in-order
//! block when they see a gap), retransmit their last packet on timeout and give up after a few
//! tries. At the end, every transfer must have ended; a completed one must have delivered
//! exactly the file; any other may only have failed by timeout (or by the client's ERROR 5,
//! for a transfer started by a stale duplicate request).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// Deterministic pseudo-random numbers (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `per_mille / 1000`.
    fn chance(&mut self, per_mille: u32) -> bool {
        self.next() % 1000 < u64::from(per_mille)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// Network behaviour.
#[derive(Debug, Clone, Copy)]
struct NetConfig {
    /// Loss probability (‰), each direction.
    loss: u32,
    /// Duplication probability (‰).
    dup: u32,
    /// Base one-way latency.
    latency: Duration,
    /// Extra random latency, up to this (reorders packets).
    jitter: Duration,
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    /// The server's listening socket.
    Listener,
    /// A transfer's socket.
    Transfer(TransferId),
    /// Client `n`, from the server socket `from`.
    Client(usize, Source),
}

/// A simulated client.
struct Client {
    addr: SocketAddr,
    file: String,
    /// Options it asks for.
    opts: Vec<(String, String)>,
    /// The server TID it locked onto.
    tid: Option<TransferId>,
    /// Negotiated block size.
    blksize: usize,
    /// Negotiated window size.
    windowsize: u64,
    /// Bytes received in order.
    received: Vec<u8>,
    /// Next absolute block expected.
    expected: u64,
    /// Blocks received since the last ACK.
    in_window: u64,
    /// Got the last block.
    done: bool,
    /// Stopped trying.
    gave_up: bool,
    /// Last packet sent and where (retransmitted on timeout).
    last: Option<(Dest, Vec<u8>)>,
    /// Retransmission deadline.
    deadline: Option<Instant>,
    retries: u32,
}

const CLIENT_TIMEOUT: Duration = Duration::from_millis(1500);
const CLIENT_RETRIES: u32 = 6;

impl Client {
    fn new(n: u16, file: &str, opts: &[(&str, &str)]) -> Self {
        Self {
            addr: client(n),
            file: file.to_owned(),
            opts: opts
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
            tid: None,
            blksize: 512,
            windowsize: 1,
            received: Vec::new(),
            expected: 1,
            in_window: 0,
            done: false,
            gave_up: false,
            last: None,
            deadline: None,
            retries: 0,
        }
    }

    /// Send (and remember for retransmission).
    fn send(
        &mut self,
        now: Instant,
        dest: Dest,
        bytes: Vec<u8>,
        out: &mut Vec<(Dest, SocketAddr, Vec<u8>)>,
    ) {
        out.push((dest, self.addr, bytes.clone()));
        self.last = Some((dest, bytes));
        self.deadline = Some(now + CLIENT_TIMEOUT);
    }

    fn start(&mut self, now: Instant, out: &mut Vec<(Dest, SocketAddr, Vec<u8>)>) {
        let opts: Vec<(&str, &str)> = self
            .opts
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        self.send(now, Dest::Listener, rrq(&self.file, "octet", &opts), out);
    }

    fn ack_to(
        &mut self,
        now: Instant,
        tid: TransferId,
        block: u64,
        out: &mut Vec<(Dest, SocketAddr, Vec<u8>)>,
    ) {
        self.in_window = 0;
        self.send(
            now,
            Dest::Transfer(tid),
            wire::emit_ack(block as u16).to_vec(),
            out,
        );
    }

    /// A datagram from server socket `from`.
    fn receive(
        &mut self,
        now: Instant,
        from: Source,
        bytes: &[u8],
        out: &mut Vec<(Dest, SocketAddr, Vec<u8>)>,
    ) {
        let Source::Transfer(tid) = from else {
            // Refusals come from the listener.
            self.gave_up = true;
            self.deadline = None;
            return;
        };
        if self.gave_up {
            return;
        }
        if self.tid.is_some_and(|t| t != tid) {
            out.push((
                Dest::Transfer(tid),
                self.addr,
                wire::emit_error(5, "unknown transfer ID"),
            ));
            return;
        }
        self.tid = Some(tid);
        match wire::parse(bytes).expect("server sent garbage") {
            wire::Packet::Oack { options } => {
                if self.expected == 1 {
                    for (n, v) in options {
                        match n.as_str() {
                            "blksize" => self.blksize = v.parse().unwrap(),
                            "windowsize" => self.windowsize = v.parse().unwrap(),
                            _ => {}
                        }
                    }
                    self.retries = 0;
                    self.ack_to(now, tid, 0, out);
                }
            }
            wire::Packet::Data { block, data } => {
                assert!(data.len() <= self.blksize, "DATA longer than blksize");
                if !self.done && block == self.expected as u16 {
                    self.received.extend_from_slice(&data);
                    self.expected += 1;
                    self.in_window += 1;
                    self.retries = 0;
                    if data.len() < self.blksize {
                        self.done = true;
                        self.ack_to(now, tid, self.expected - 1, out);
                        // Dally: no more timeouts, but re-ACK the final block if it comes again.
                        self.deadline = None;
                    } else if self.in_window >= self.windowsize {
                        self.ack_to(now, tid, self.expected - 1, out);
                    }
                } else if self.done || block != (self.expected - 1) as u16 || self.windowsize == 1 {
                    // A gap, a stale block or (lock-step) a duplicate: ACK the last in-order one.
                    let deadline = self.deadline;
                    self.ack_to(now, tid, self.expected - 1, out);
                    if self.done {
                        self.deadline = deadline;
                    }
                }
            }
            wire::Packet::Error { .. } => {
                self.gave_up = true;
                self.deadline = None;
            }
            other => panic!("unexpected packet {other:?}"),
        }
    }

    fn timeout(&mut self, now: Instant, out: &mut Vec<(Dest, SocketAddr, Vec<u8>)>) {
        if self.retries >= CLIENT_RETRIES {
            self.gave_up = true;
            self.deadline = None;
            return;
        }
        self.retries += 1;
        if let Some((dest, bytes)) = self.last.clone() {
            self.send(now, dest, bytes, out);
        }
    }
}

/// File content: a position-dependent pattern, so misplaced bytes are caught.
fn file_bytes(size: usize, salt: u8) -> Vec<u8> {
    (0..size)
        .map(|i| ((i * 131 + i / 251) as u8) ^ salt)
        .collect()
}

/// What a simulation produced.
#[derive(Debug)]
struct SimResult {
    /// Outcome of every transfer, by id, with the client index.
    outcomes: BTreeMap<TransferId, (usize, Outcome)>,
    /// Per client: whether it got the whole file, exactly.
    exact: Vec<bool>,
    steps: usize,
    /// The server's counters at the end.
    stats: crate::tftp::Stats,
}

/// Run `clients` against a server with `limits` over `net` until everything is quiet.
fn simulate(
    limits: TftpLimits,
    net: NetConfig,
    mut clients: Vec<Client>,
    sizes: &[usize],
    seed: u64,
) -> SimResult {
    let mut h = Harness::new(limits);
    let mut rng = Rng(seed);
    let files: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &s)| file_bytes(s, i as u8))
        .collect();
    let by_addr: BTreeMap<SocketAddr, usize> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| (c.addr, i))
        .collect();
    let mut owner: BTreeMap<TransferId, usize> = BTreeMap::new();
    let mut outcomes = BTreeMap::new();
    // In flight: (arrival, sequence) -> (dest, from, bytes).
    let mut flight: BTreeMap<(Instant, u64), (Dest, SocketAddr, Vec<u8>)> = BTreeMap::new();
    let mut seq = 0u64;
    let mut out = Vec::new();
    for c in &mut clients {
        c.start(h.now, &mut out);
    }
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 2_000_000, "simulation does not end");
        // Put client output and server commands on the wire.
        for (dest, from, bytes) in out.drain(..) {
            let copies = if rng.chance(net.loss) {
                0
            } else if rng.chance(net.dup) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let delay = net.latency
                    + Duration::from_micros(rng.below(net.jitter.as_micros() as u64 + 1));
                seq += 1;
                flight.insert((h.now + delay, seq), (dest, from, bytes.clone()));
            }
        }
        let mut cmds = h.drain();
        while !cmds.is_empty() {
            let mut more = Vec::new();
            for c in cmds {
                match c {
                    Command::Open { id, peer, .. } => {
                        let n = by_addr[&peer];
                        owner.insert(id, n);
                        h.server.handle_file_opened(h.now, id, sizes[n] as u64);
                        more.extend(h.drain());
                    }
                    Command::Send {
                        source,
                        peer,
                        packet,
                    } => {
                        let n = by_addr[&peer];
                        let bytes = match packet {
                            Packet::Data { block, offset, len } => {
                                let mut b = wire::emit_data_header(block).to_vec();
                                b.extend_from_slice(
                                    &files[n][offset as usize..offset as usize + len],
                                );
                                b
                            }
                            Packet::Encoded(b) => b,
                        };
                        out.push((Dest::Client(n, source), peer, bytes));
                    }
                    Command::Event(TransferEvent::Ended { id, outcome, .. }) => {
                        assert!(
                            outcomes.insert(id, (owner[&id], outcome)).is_none(),
                            "ended twice"
                        );
                    }
                    Command::Close { .. } | Command::Event(_) => {}
                }
            }
            cmds = more;
        }
        if !out.is_empty() {
            continue;
        }
        check_stats(&h.server);
        // Next event.
        let next_packet = flight.keys().next().map(|k| k.0);
        let next_client = clients.iter().filter_map(|c| c.deadline).min();
        let next = [next_packet, next_client, h.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else { break };
        h.now = h.now.max(next);
        if next_packet == Some(next) {
            let (_, (dest, from, bytes)) = flight.pop_first().unwrap();
            match dest {
                Dest::Listener => h.server.handle_request(h.now, from, &bytes),
                Dest::Transfer(id) => h.server.handle_datagram(h.now, id, from, &bytes),
                Dest::Client(n, source) => clients[n].receive(h.now, source, &bytes, &mut out),
            }
        } else if next_client == Some(next) {
            for c in clients
                .iter_mut()
                .filter(|c| c.deadline.is_some_and(|d| d <= next))
            {
                c.timeout(h.now, &mut out);
            }
        } else {
            h.server.handle_timeout(h.now);
        }
    }
    assert_eq!(
        (h.server.active_transfers(), h.server.queued_requests()),
        (0, 0)
    );
    let exact = clients
        .iter()
        .enumerate()
        .map(|(i, c)| c.done && c.received == files[i])
        .collect();
    // Every transfer admitted has ended.
    assert_eq!(outcomes.len() as u64, h.server.stats().admitted);
    SimResult {
        outcomes,
        exact,
        steps,
        stats: h.server.stats().clone(),
    }
}

/// The property every run must satisfy.
fn check(r: &SimResult) {
    for (id, (n, outcome)) in &r.outcomes {
        match outcome {
            Outcome::Completed { .. } => assert!(
                r.exact[*n],
                "transfer {id:?} completed but client {n} lacks the exact file"
            ),
            Outcome::Failed {
                reason: FailReason::Timeout | FailReason::ClientError,
            } => {}
            other => panic!("transfer {id:?}: unexpected {other:?}"),
        }
    }
}

fn net(loss: u32, dup: u32, jitter_ms: u64) -> NetConfig {
    NetConfig {
        loss,
        dup,
        latency: Duration::from_millis(2),
        jitter: Duration::from_millis(jitter_ms),
    }
}

#[test]
fn clean_network_many_clients_all_complete() {
    let l = TftpLimits {
        max_transfers: 3,
        max_queue: 16,
        ..limits()
    };
    let clients: Vec<Client> = (0..8)
        .map(|n| match n % 4 {
            0 => Client::new(n, "a", &[]),
            1 => Client::new(n, "b", &[("blksize", "1024"), ("tsize", "0")]),
            2 => Client::new(n, "c", &[("blksize", "256"), ("windowsize", "8")]),
            _ => Client::new(n, "d", &[("windowsize", "4")]),
        })
        .collect();
    let sizes = [0, 1024, 70_000, 9_999, 512, 3000, 1, 20_000];
    let r = simulate(l, net(0, 0, 0), clients, &sizes, 1);
    check(&r);
    assert!(r.exact.iter().all(|&e| e), "{r:?}");
    assert!(
        r.outcomes
            .values()
            .all(|(_, o)| matches!(o, Outcome::Completed { retransmits: 0, .. })),
        "{r:?}"
    );
}

#[test]
fn lossy_duplicating_reordering_network_still_delivers() {
    let (mut retransmitted, mut duplicate_acks, mut foreign, mut duplicate_requests) = (0, 0, 0, 0);
    for seed in 0..20 {
        let clients = vec![
            Client::new(0, "a", &[("blksize", "512"), ("windowsize", "8")]),
            Client::new(1, "b", &[]),
            Client::new(
                2,
                "c",
                &[("blksize", "128"), ("windowsize", "3"), ("tsize", "0")],
            ),
        ];
        let r = simulate(
            limits(),
            net(50, 50, 10),
            clients,
            &[30_000, 5_000, 12_800],
            seed,
        );
        check(&r);
        assert!(r.exact.iter().all(|&e| e), "seed {seed}: {r:?}");
        retransmitted += r.stats.retransmitted_packets;
        duplicate_acks += r.stats.duplicate_acks;
        foreign += r.stats.foreign_tid_packets;
        duplicate_requests += r.stats.duplicate_requests;
    }
    // The network really was hostile: every repair path ran.
    assert!(
        retransmitted > 0 && duplicate_acks > 0 && duplicate_requests > 0,
        "{retransmitted} {duplicate_acks} {duplicate_requests}"
    );
    eprintln!(
        "retransmitted {retransmitted}, duplicate ACKs {duplicate_acks}, foreign {foreign}, duplicate requests {duplicate_requests}"
    );
}

#[test]
fn dead_network_ends_with_nothing_started() {
    let clients = vec![
        Client::new(0, "a", &[]),
        Client::new(1, "b", &[("windowsize", "4")]),
    ];
    let r = simulate(limits(), net(1000, 0, 0), clients, &[5000, 5000], 3);
    assert!(r.outcomes.is_empty());
    assert_eq!(r.stats.requests, 0);
}

#[test]
fn heavy_loss_fails_by_timeout_and_still_ends() {
    // At 70 % loss each way some runs get a transfer going and then lose it: find them.
    let mut timeouts = 0;
    for seed in 0..40 {
        let clients = vec![Client::new(0, "a", &[("tsize", "0"), ("windowsize", "4")])];
        let r = simulate(limits(), net(700, 0, 0), clients, &[20_000], seed);
        check(&r);
        timeouts += r
            .outcomes
            .values()
            .filter(|(_, o)| {
                *o == Outcome::Failed {
                    reason: FailReason::Timeout,
                }
            })
            .count();
    }
    assert!(timeouts > 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the loss, duplication and reordering: every transfer ends, a completed one
    /// delivered the exact file, a failed one failed by timeout (or was a stale duplicate the
    /// client refused with ERROR 5); the simulation ends in bounded steps.
    #[test]
    fn every_transfer_completes_exactly_or_times_out(
        seed in any::<u64>(),
        loss in 0u32..400,
        dup in 0u32..300,
        jitter in 0u64..30,
        sizes in proptest::collection::vec(0usize..6000, 1..4),
        blksize in prop_oneof![Just(8u16), Just(64), Just(512), Just(1024)],
        windowsize in 1u16..6,
        max_transfers in 1usize..3,
    ) {
        let clients = (0..sizes.len())
            .map(|n| {
                let b = blksize.to_string();
                let w = windowsize.to_string();
                if n % 2 == 0 {
                    Client::new(n as u16, "f", &[("blksize", &b), ("windowsize", &w), ("tsize", "0")])
                } else {
                    Client::new(n as u16, "f", &[])
                }
            })
            .collect();
        let l = TftpLimits { max_transfers, max_queue: 4, ..limits() };
        let r = simulate(l, net(loss, dup, jitter), clients, &sizes, seed);
        check(&r);
        prop_assert!(r.steps < 2_000_000);
        if loss == 0 && dup == 0 {
            prop_assert!(r.exact.iter().all(|&e| e), "{:?}", r);
        }
    }
}
