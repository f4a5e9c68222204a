//! Tests of the committer (group commit, persist before send, failure handling) and of the
//! routing of commands between "send now" and "send after the commit". Replies travel over real
//! loopback UDP through a [`RelaySocket`], so what a client would receive is what is checked.

use std::net::UdpSocket;

use ims_proto::MacAddr;

use super::*;
use crate::dhcp::{Lease, LeaseState};
use crate::store::StoreError;
use crate::store::memory::MemoryStore;

/// A loopback "relay agent" receiving the replies, and a transmitter sending to it.
fn loopback() -> (UdpSocket, Arc<Transmitter>) {
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("receiver");
    receiver
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let relay = RelaySocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("relay");
    let transmitter = Arc::new(Transmitter {
        links: Vec::new(),
        relay: Some(Arc::new(relay)),
        warn: WarnLimiter::new(),
    });
    (receiver, transmitter)
}

fn to(receiver: &UdpSocket) -> SocketAddrV4 {
    match receiver.local_addr().expect("addr") {
        std::net::SocketAddr::V4(a) => a,
        std::net::SocketAddr::V6(_) => unreachable!("bound to IPv4"),
    }
}

fn reply(receiver: &UdpSocket, message_type: MessageType, tag: &str) -> Reply {
    Reply {
        destination: Destination::Relay(to(receiver)),
        message_type,
        payload: tag.as_bytes().to_vec(),
    }
}

fn lease(last: u8) -> Lease {
    Lease {
        ip: Ipv4Addr::new(10, 0, 0, last),
        mac: MacAddr([0x52, 0x54, 0, 0, 0, last]),
        state: LeaseState::Bound,
        starts: UnixTime(1_000),
        ends: UnixTime(4_600),
        hostname: None,
        client_id: None,
        uuid: None,
        arch: None,
        boot_file: None,
        next_server: None,
    }
}

/// Every datagram that arrives within the read timeout, as strings.
fn received(receiver: &UdpSocket) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    while let Ok(n) = receiver.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

/// Run the committer over `batches` (all queued before it starts, as in a burst) and return the
/// store.
fn commit_all<S: LeaseStore + 'static>(
    store: S,
    transmitter: &Arc<Transmitter>,
    batches: Vec<Batch>,
) -> S {
    commit_all_capped(store, transmitter, batches, 1024)
}

/// [`commit_all`] with at most `max_ops` store operations per commit.
fn commit_all_capped<S: LeaseStore + 'static>(
    store: S,
    transmitter: &Arc<Transmitter>,
    batches: Vec<Batch>,
    max_ops: usize,
) -> S {
    let (tx, rx) = mpsc::channel();
    let in_flight = Arc::new(AtomicUsize::new(0));
    for b in batches {
        in_flight.fetch_add(1, Ordering::AcqRel);
        tx.send(b).expect("queue");
    }
    drop(tx);
    let t = Arc::clone(transmitter);
    let counter = Arc::clone(&in_flight);
    let store = thread::spawn(move || committer(store, &rx, &t, &counter, max_ops))
        .join()
        .expect("committer");
    assert_eq!(
        in_flight.load(Ordering::Acquire),
        0,
        "every batch accounted for"
    );
    store
}

#[test]
fn waiting_batches_share_one_commit_and_replies_keep_their_order() {
    let (receiver, transmitter) = loopback();
    let batches = (1..=3)
        .map(|i| Batch {
            ops: vec![StoreOp::PutLease(lease(i))],
            lease_written: true,
            replies: vec![(reply(&receiver, MessageType::Ack, &format!("ack{i}")), true)],
        })
        .collect();
    let store = commit_all(MemoryStore::new(), &transmitter, batches);
    assert_eq!(store.commit_count(), 1, "three batches, one fsync");
    assert_eq!(store.lease_count(), 3);
    assert_eq!(received(&receiver), ["ack1", "ack2", "ack3"]);
}

#[test]
fn a_commit_holds_at_most_max_batch_operations() {
    let (receiver, transmitter) = loopback();
    let batches = (1..=5)
        .map(|i| Batch {
            ops: vec![
                StoreOp::PutLease(lease(2 * i)),
                StoreOp::PutLease(lease(2 * i + 1)),
            ],
            lease_written: true,
            replies: vec![(reply(&receiver, MessageType::Ack, &format!("ack{i}")), true)],
        })
        .collect();
    // Two operations per batch, at most five per commit: batches 1+2, 3+4, 5.
    let store = commit_all_capped(MemoryStore::new(), &transmitter, batches, 5);
    assert_eq!(store.commit_count(), 3);
    assert_eq!(store.lease_count(), 10);
    assert_eq!(
        received(&receiver),
        ["ack1", "ack2", "ack3", "ack4", "ack5"]
    );
}

#[test]
fn every_configured_interface_needs_a_socket() {
    let config = DhcpConfig {
        interfaces: vec![crate::config::Interface {
            name: "eth9".into(),
            address: Ipv4Addr::new(10, 0, 0, 1),
        }],
        ..DhcpConfig::default()
    };
    let server = Server::new(config, Vec::new(), UnixTime(1_000));
    let err = DhcpDriver::new(
        server,
        MemoryStore::new(),
        Sockets::new(Vec::new(), None),
        64,
    )
    .expect_err("no socket for eth9");
    assert!(matches!(&err, DriverError::MissingInterface { name } if name == "eth9"));
    assert!(err.to_string().contains("eth9"), "{err}");
}

/// A store that checks, at commit time, that no reply has reached the client yet.
struct NothingSentBeforeCommit {
    inner: MemoryStore,
    probe: UdpSocket,
    commits_checked: u32,
}

impl LeaseStore for NothingSentBeforeCommit {
    fn load_leases(&self) -> Result<Vec<Lease>, StoreError> {
        self.inner.load_leases()
    }

    fn load_discovered(&self) -> Result<Vec<crate::dhcp::DiscoveredMachine>, StoreError> {
        self.inner.load_discovered()
    }

    fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        self.probe.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 64];
        // Loopback delivery happens inside `sendto`, so a reply sent earlier would be queued.
        let early = self.probe.peek(&mut buf).ok();
        assert_eq!(
            early, None,
            "a reply reached the client before its lease was committed"
        );
        self.commits_checked += 1;
        self.inner.commit(ops)
    }
}

#[test]
fn replies_go_out_only_after_the_commit_returns() {
    let (receiver, transmitter) = loopback();
    let store = NothingSentBeforeCommit {
        inner: MemoryStore::new(),
        probe: receiver.try_clone().expect("clone"),
        commits_checked: 0,
    };
    let batches = vec![Batch {
        ops: vec![StoreOp::PutLease(lease(7))],
        lease_written: true,
        replies: vec![(reply(&receiver, MessageType::Ack, "ack7"), true)],
    }];
    let store = commit_all(store, &transmitter, batches);
    assert_eq!(store.commits_checked, 1);
    receiver.set_nonblocking(false).expect("blocking");
    assert_eq!(received(&receiver), ["ack7"]);
}

#[test]
fn a_failed_commit_drops_exactly_the_replies_that_depended_on_it() {
    // `depends` is computed by `route` (see the routing test); here the committer honours it.
    let (receiver, transmitter) = loopback();
    let mut store = MemoryStore::new();
    store.set_fail_commits(true);
    let batches = vec![
        Batch {
            ops: vec![StoreOp::PutLease(lease(1))],
            lease_written: true,
            replies: vec![
                // Held back only to keep the order: does not depend on the commit.
                (reply(&receiver, MessageType::Offer, "offer-before"), false),
                (reply(&receiver, MessageType::Ack, "ack1"), true),
            ],
        },
        Batch {
            ops: vec![StoreOp::PutLease(lease(2))],
            lease_written: true,
            replies: vec![(reply(&receiver, MessageType::Ack, "ack2"), true)],
        },
    ];
    let mut store = commit_all(store, &transmitter, batches);
    assert_eq!(store.commit_count(), 0);
    assert_eq!(store.lease_count(), 0);
    assert_eq!(
        received(&receiver),
        ["offer-before"],
        "no ACK for a lease not on disk"
    );

    // The store recovers: the next batch commits and its ACK is sent.
    store.set_fail_commits(false);
    let batches = vec![Batch {
        ops: vec![StoreOp::PutLease(lease(3))],
        lease_written: true,
        replies: vec![(reply(&receiver, MessageType::Ack, "ack3"), true)],
    }];
    let store = commit_all(store, &transmitter, batches);
    assert_eq!(store.commit_count(), 1);
    assert_eq!(received(&receiver), ["ack3"]);
}

#[test]
fn reply_only_batches_need_no_commit() {
    let (receiver, transmitter) = loopback();
    let batches = vec![Batch {
        ops: Vec::new(),
        lease_written: false,
        replies: vec![(reply(&receiver, MessageType::Ack, "inform-ack"), false)],
    }];
    let store = commit_all(MemoryStore::new(), &transmitter, batches);
    assert_eq!(store.commit_count(), 0);
    assert_eq!(received(&receiver), ["inform-ack"]);
}

#[test]
fn routing_sends_now_only_what_depends_on_nothing_pending() {
    let (receiver, transmitter) = loopback();
    let in_flight = AtomicUsize::new(0);
    let mut scratch = Vec::new();
    let mut batch = Batch::default();
    let mut run = |batch: &mut Batch, command: Command| {
        route(command, batch, &transmitter, &in_flight, &mut scratch);
    };

    // Nothing pending: an OFFER and even an ACK (e.g. INFORM) go out at once.
    run(
        &mut batch,
        Command::Send(reply(&receiver, MessageType::Offer, "o1")),
    );
    run(
        &mut batch,
        Command::Send(reply(&receiver, MessageType::Ack, "a1")),
    );
    assert!(batch.is_empty());
    assert_eq!(received(&receiver), ["o1", "a1"]);

    // A commit in flight: an OFFER still goes at once; an ACK waits (it may re-confirm a lease
    // that is not on disk yet), and so does everything after it, to keep the order.
    in_flight.store(1, Ordering::Release);
    run(
        &mut batch,
        Command::Send(reply(&receiver, MessageType::Offer, "o2")),
    );
    run(
        &mut batch,
        Command::Send(reply(&receiver, MessageType::Ack, "a2")),
    );
    run(
        &mut batch,
        Command::Send(reply(&receiver, MessageType::Nak, "n2")),
    );
    assert_eq!(received(&receiver), ["o2"]);
    // A discovery record holds nothing back by itself...
    in_flight.store(0, Ordering::Release);
    let mut discovery = Batch::default();
    run(
        &mut discovery,
        Command::Discovered(crate::dhcp::DiscoveredMachine {
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            ip: Ipv4Addr::new(10, 0, 0, 1),
            first_seen: UnixTime(1),
            last_seen: UnixTime(1),
            arch: None,
            vendor_class: None,
            uuid: None,
            hostname: None,
        }),
    );
    run(
        &mut discovery,
        Command::Send(reply(&receiver, MessageType::Offer, "o3")),
    );
    assert!(discovery.replies.is_empty());
    assert_eq!(discovery.ops.len(), 1);
    assert_eq!(received(&receiver), ["o3"]);

    // ...but after a lease write every reply waits for the commit, and an ACK depends on it.
    in_flight.store(1, Ordering::Release);
    run(&mut batch, Command::Persist(lease(9)));
    run(
        &mut batch,
        Command::Send(reply(&receiver, MessageType::Ack, "a3")),
    );
    run(
        &mut batch,
        Command::Send(reply(&receiver, MessageType::Offer, "o4")),
    );
    run(&mut batch, Command::Remove(Ipv4Addr::new(10, 0, 0, 8)));
    let tags: Vec<(String, bool)> = batch
        .replies
        .iter()
        .map(|(r, depends)| (String::from_utf8_lossy(&r.payload).into_owned(), *depends))
        .collect();
    assert_eq!(
        tags,
        [
            ("a2".into(), false),
            ("n2".into(), false),
            ("a3".into(), true),
            ("o4".into(), false)
        ]
    );
    assert_eq!(
        batch.ops,
        [
            StoreOp::PutLease(lease(9)),
            StoreOp::RemoveLease(Ipv4Addr::new(10, 0, 0, 8))
        ]
    );

    // With nothing in flight, a batch starting with a lease write still holds its replies.
    in_flight.store(0, Ordering::Release);
    let mut fresh = Batch::default();
    run(&mut fresh, Command::Persist(lease(5)));
    run(
        &mut fresh,
        Command::Send(reply(&receiver, MessageType::Ack, "a5")),
    );
    assert_eq!(fresh.replies.len(), 1);
    assert!(fresh.replies[0].1);
    assert!(received(&receiver).is_empty());
}

#[test]
fn send_retries_while_the_buffer_is_full() {
    let mut attempts = 0;
    let mut waits = 0;
    let result = with_retry(
        || {
            attempts += 1;
            if attempts < 3 {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        },
        || {
            waits += 1;
            Ok(true)
        },
    );
    assert!(result.is_ok());
    assert_eq!((attempts, waits), (3, 2));

    let mut attempts = 0;
    let result = with_retry(
        || {
            attempts += 1;
            Err(io::ErrorKind::WouldBlock.into())
        },
        || Ok(false),
    );
    assert_eq!(result.map_err(|e| e.kind()), Err(io::ErrorKind::WouldBlock));
    assert_eq!(attempts, SEND_ATTEMPTS);
}

#[test]
fn warnings_are_rate_limited() {
    let limiter = WarnLimiter::new();
    assert!(limiter.should_warn());
    assert!(!limiter.should_warn());
    assert!(!limiter.should_warn());
}

/// A memory store whose commits number `fail` (0-based) fail.
struct FailingAt {
    inner: MemoryStore,
    fail: Vec<usize>,
    attempts: usize,
}

impl LeaseStore for FailingAt {
    fn load_leases(&self) -> Result<Vec<Lease>, StoreError> {
        self.inner.load_leases()
    }

    fn load_discovered(&self) -> Result<Vec<crate::dhcp::DiscoveredMachine>, StoreError> {
        self.inner.load_discovered()
    }

    fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let attempt = self.attempts;
        self.attempts += 1;
        if self.fail.contains(&attempt) {
            return Err(StoreError::Io {
                path: "test".into(),
                source: io::Error::other("injected: disk full"),
            });
        }
        self.inner.commit(ops)
    }
}

/// Run the committer with lease events and `health` over `batches`, one commit per batch.
fn commit_with_events<S: LeaseStore + 'static>(
    store: S,
    existing: &[Lease],
    health: &ServiceHealth,
    batches: Vec<Batch>,
) -> S {
    let (_receiver, transmitter) = loopback();
    let (tx, rx) = mpsc::channel();
    let in_flight = Arc::new(AtomicUsize::new(0));
    for b in batches {
        in_flight.fetch_add(1, Ordering::AcqRel);
        tx.send(b).expect("queue");
    }
    drop(tx);
    let subnets: SharedSubnets = Arc::new(RwLock::new(vec!["10.0.0.0/24".parse().expect("net")]));
    let hooks = CommitHooks {
        events: Some(LeaseEvents::new(existing, subnets)),
        health: Some(health.clone()),
    };
    thread::spawn(move || commit_loop(store, &rx, &transmitter, &in_flight, 1, hooks))
        .join()
        .expect("committer")
}

fn put(lease: Lease) -> Batch {
    Batch {
        ops: vec![StoreOp::PutLease(lease)],
        lease_written: true,
        replies: vec![],
    }
}

#[test]
fn the_committer_appends_a_lease_event_exactly_for_each_committed_lease() {
    use crate::store::events::EventKind;
    let existing = lease(9); // bound before the daemon started
    let mut released = lease(1);
    released.state = LeaseState::Released;
    let mut expired = existing.clone();
    expired.state = LeaseState::Expired;
    let store = FailingAt {
        inner: MemoryStore::new(),
        fail: vec![2],
        attempts: 0,
    };
    let health = ServiceHealth::new();
    health.set_state(ims_proto::SERVICE_DHCP, ims_proto::ServiceState::Running);
    let store = commit_with_events(
        store,
        std::slice::from_ref(&existing),
        &health,
        vec![
            put(lease(1)), // granted
            put(lease(1)), // renewed (same MAC, same start)
            put(lease(2)), // commit fails: no lease, no event
            put(lease(2)), // the client retries: granted
            put(released), // released
            put(expired),  // the lease from before the start ran out
        ],
    );
    let events: Vec<(&str, Ipv4Addr)> = store
        .inner
        .events()
        .iter()
        .map(|(_, kind)| match kind {
            EventKind::LeaseGranted(r)
            | EventKind::LeaseRenewed(r)
            | EventKind::LeaseReleased(r)
            | EventKind::LeaseExpired(r) => (kind.name(), r.ip),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let ip = |last| Ipv4Addr::new(10, 0, 0, last);
    assert_eq!(
        events,
        vec![
            ("LeaseGranted", ip(1)),
            ("LeaseRenewed", ip(1)),
            ("LeaseGranted", ip(2)),
            ("LeaseReleased", ip(1)),
            ("LeaseExpired", ip(9)),
        ]
    );
    assert_eq!(store.inner.lease_count(), 3);
    // The failure was reported once, and the next commit recovered the service.
    let errors = health.take_new_errors();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.contains("disk full"), "{errors:?}");
    let dhcp = &health.statuses()[ims_proto::SERVICE_DHCP];
    assert_eq!(dhcp.state, ims_proto::ServiceState::Running);
    assert!(dhcp.last_error.is_some());
}

#[test]
fn lease_events_land_in_the_lmdb_event_log_with_their_lease() {
    use crate::store::events::EventKind;
    use crate::store::lmdb::LmdbStore;
    use crate::store::lmdb::tests::TempDir;
    let dir = TempDir::new("driver-lease-events");
    let store = LmdbStore::open(dir.path()).expect("open");
    let log = store.event_log().expect("log");
    let health = ServiceHealth::new();
    let store = commit_with_events(store, &[], &health, vec![put(lease(4)), put(lease(4))]);
    assert_eq!(store.lease_count().expect("count"), 1);
    let listed = log.list(0, usize::MAX).expect("list");
    let names: Vec<&str> = listed.iter().map(|e| e.kind.name()).collect();
    assert_eq!(names, ["LeaseGranted", "LeaseRenewed"]);
    match &listed[0].kind {
        EventKind::LeaseGranted(r) => {
            assert_eq!(r.mac, lease(4).mac);
            assert_eq!(r.ends, lease(4).ends);
            assert_eq!(r.subnet, Some("10.0.0.0/24".parse().expect("net")));
        }
        other => panic!("{other:?}"),
    }
    assert!(health.take_new_errors().is_empty());
}
