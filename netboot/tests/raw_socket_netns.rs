//! The raw socket against the real kernel: in a network namespace of its own, with a veth pair,
//! frames sent from one end reach a [`RawSocket`] on the other only when they are unfragmented
//! IPv4/UDP to its port; its MAC and index are the interface's; it sends whole frames.
//!
//! Needs root (network namespaces). Every namespace is removed on drop, even when a test fails.

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ims_netboot::dhcp::frame::UdpFrame;
use ims_netboot::io::raw_socket::{PacketType, RawSocket};
use ims_proto::MacAddr;
use nix::sched::{CloneFlags, setns};

const SERVER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test creates a network namespace: run it as root \
         (`sudo -E cargo test -p ims-netboot --test raw_socket_netns`)"
    );
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with a veth pair `va` (client side) / `vb` (server side), both up.
/// Deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "nbraw-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        let n = ns.name.as_str();
        ip(&[
            "-n", n, "link", "add", "va", "type", "veth", "peer", "name", "vb",
        ]);
        ip(&[
            "-n",
            n,
            "link",
            "set",
            "va",
            "address",
            &CLIENT_MAC.to_string(),
        ]);
        ip(&[
            "-n",
            n,
            "link",
            "set",
            "vb",
            "address",
            &SERVER_MAC.to_string(),
        ]);
        for dev in ["lo", "va", "vb"] {
            ip(&["-n", n, "link", "set", dev, "up"]);
        }
        ns.wait_until_up(&["va", "vb"]);
        ns
    }

    /// Wait (bounded) until every one of `devs` is operationally UP.
    ///
    /// A veth end transmits only once the kernel's link watcher has seen its carrier come on
    /// (when both ends are up) and switched its transmit queues from the `noop` qdisc, which
    /// drops every frame without a word. That runs later, from a workqueue, under the RTNL lock:
    /// on a loaded machine, or while other tests create and delete namespaces, it lags well
    /// behind `ip link set up`, and frames sent meanwhile vanish (seen as a test receiving no
    /// frame at all). The operational state turns UP in that same step.
    #[allow(clippy::disallowed_methods)]
    fn wait_until_up(&self, devs: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for dev in devs {
            loop {
                let out = Command::new("ip")
                    .args(["-n", &self.name, "-o", "link", "show", "dev", dev])
                    .output()
                    .expect("run ip");
                let shown = String::from_utf8_lossy(&out.stdout).into_owned();
                if shown.contains(" state UP ") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{dev} in {} is not operationally UP 10 s after `ip link set up`: {shown}",
                    self.name
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Run `f` on a thread that has entered the namespace (sockets made there stay in it).
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        let joined = std::thread::spawn(move || {
            let fd = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            setns(&fd, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
        .join();
        match joined {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A UDP frame from the client to `dst_port`, with `marker` as its payload.
fn udp_frame(dst_port: u16, marker: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    UdpFrame {
        src_mac: CLIENT_MAC,
        dst_mac: MacAddr::BROADCAST,
        src_ip: Ipv4Addr::UNSPECIFIED,
        dst_ip: Ipv4Addr::BROADCAST,
        src_port: 68,
        dst_port,
        payload: marker,
    }
    .emit(&mut out);
    out
}

/// The same datagram with a 4-byte IPv4 option (NOP NOP NOP EOL): the UDP header moves by 4.
fn with_ip_option(frame: &[u8]) -> Vec<u8> {
    let mut out = frame[..34].to_vec();
    out[14] = 0x46;
    let total = u16::from_be_bytes([out[16], out[17]]) + 4;
    out[16..18].copy_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&[1, 1, 1, 0]);
    out.extend_from_slice(&frame[34..]);
    out
}

/// Every frame `sock` receives until it has seen a frame holding each of `awaited` (bounded by
/// `limit`), then whatever else is already queued.
///
/// The kernel delivers a frame to every packet socket of the interface in the same pass, and
/// frames sent one after another from one thread reach the socket in that order; so once the
/// frames sent last have arrived, any frame sent before them that the filter wrongly admitted
/// is in the queue too. A fixed listening time instead fails on a loaded machine, where the
/// receiving softirq or this thread may not run for longer than that.
#[allow(clippy::disallowed_methods)]
fn collect_until(
    sock: &RawSocket,
    awaited: &[&[u8]],
    limit: Duration,
) -> Vec<(Vec<u8>, PacketType)> {
    let deadline = Instant::now() + limit;
    let mut got: Vec<(Vec<u8>, PacketType)> = Vec::new();
    let mut buf = [0u8; 2048];
    let seen_all = |got: &[(Vec<u8>, PacketType)]| {
        awaited
            .iter()
            .all(|m| got.iter().any(|(f, _)| has_marker(f, m)))
    };
    loop {
        match sock.recv(&mut buf).expect("recv") {
            Some((n, kind)) => got.push((buf[..n].to_vec(), kind)),
            None if seen_all(&got) || Instant::now() >= deadline => return got,
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Nothing more than `got` arrives within `quiet` (frames the filter must have dropped may
/// only show up after the awaited ones if the kernel reordered them; this catches the rest).
#[allow(clippy::disallowed_methods)]
fn settle(sock: &RawSocket, got: &mut Vec<(Vec<u8>, PacketType)>, quiet: Duration) {
    let deadline = Instant::now() + quiet;
    let mut buf = [0u8; 2048];
    loop {
        match sock.recv(&mut buf).expect("recv") {
            Some((n, kind)) => got.push((buf[..n].to_vec(), kind)),
            None if Instant::now() >= deadline => return,
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// How long a test waits for the frames it expects (a loaded CI machine may not run the
/// receive path for a while; frames on a veth are not lost).
const ARRIVAL_LIMIT: Duration = Duration::from_secs(10);

fn has_marker(frame: &[u8], marker: &[u8]) -> bool {
    frame.windows(marker.len()).any(|w| w == marker)
}

#[test]
fn filter_admits_only_unfragmented_udp_to_the_port() {
    require_root();
    let ns = Netns::new();
    let received = ns.run(|| {
        let server = RawSocket::open("vb").expect("open server socket");
        let client = RawSocket::open_with_port("va", 68).expect("open client socket");
        assert_eq!(server.mac(), SERVER_MAC);
        assert_eq!(client.mac(), CLIENT_MAC);
        assert_ne!(server.ifindex(), client.ifindex());
        assert_eq!(server.ifname(), "vb");

        let to_67 = udp_frame(67, b"MARK-dhcp-server");
        let to_80 = udp_frame(80, b"MARK-port-80");
        let to_68 = udp_frame(68, b"MARK-port-68");
        let mut tcp = udp_frame(67, b"MARK-tcp");
        tcp[23] = 6;
        let mut fragment = udp_frame(67, b"MARK-fragment");
        fragment[20] = 0x20; // More Fragments
        let mut later_fragment = udp_frame(67, b"MARK-later-fragment");
        later_fragment[21] = 0x10; // offset 16 * 8 bytes
        let options = with_ip_option(&udp_frame(67, b"MARK-ip-options"));
        let mut not_ipv4 = udp_frame(67, b"MARK-ipv6-ethertype");
        not_ipv4[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        // Our own transmissions are never reported as received traffic.
        server
            .send(&udp_frame(67, b"MARK-own-outgoing"))
            .expect("server send");
        // The frames the filter must drop first, the two it admits last: once those two have
        // arrived, any other frame it wrongly admitted is queued too.
        for frame in [
            &to_80,
            &to_68,
            &tcp,
            &fragment,
            &later_fragment,
            &not_ipv4,
            &to_67,
            &options,
        ] {
            client.send(frame).expect("send");
        }
        let mut got = collect_until(
            &server,
            &[b"MARK-dhcp-server", b"MARK-ip-options"],
            ARRIVAL_LIMIT,
        );
        settle(&server, &mut got, Duration::from_millis(100));
        got
    });

    let markers: Vec<&str> = [
        "MARK-dhcp-server",
        "MARK-ip-options",
        "MARK-port-80",
        "MARK-port-68",
        "MARK-tcp",
        "MARK-fragment",
        "MARK-later-fragment",
        "MARK-ipv6-ethertype",
        "MARK-own-outgoing",
    ]
    .into_iter()
    .filter(|m| {
        received
            .iter()
            .any(|(f, kind)| has_marker(f, m.as_bytes()) && *kind != PacketType::Outgoing)
    })
    .collect();
    assert_eq!(markers, ["MARK-dhcp-server", "MARK-ip-options"]);
    for (frame, kind) in &received {
        if has_marker(frame, b"MARK-dhcp-server") {
            assert_eq!(*kind, PacketType::Broadcast);
            assert_eq!(
                frame,
                &udp_frame(67, b"MARK-dhcp-server"),
                "whole frame delivered"
            );
        }
    }
}

#[test]
fn client_side_socket_receives_what_the_server_sends() {
    require_root();
    let ns = Netns::new();
    let received = ns.run(|| {
        let server = RawSocket::open("vb").expect("open server socket");
        let client = RawSocket::open_with_port("va", 68).expect("open client socket");
        let mut reply = Vec::new();
        UdpFrame {
            src_mac: server.mac(),
            dst_mac: CLIENT_MAC,
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 0, 0, 50),
            src_port: 67,
            dst_port: 68,
            payload: b"MARK-offer",
        }
        .emit(&mut reply);
        // The frame the client socket must drop first, the one it admits last.
        server
            .send(&udp_frame(67, b"MARK-not-for-client"))
            .expect("send");
        server.send(&reply).expect("send");
        let mut got = collect_until(&client, &[b"MARK-offer"], ARRIVAL_LIMIT);
        settle(&client, &mut got, Duration::from_millis(100));
        got
    });
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(has_marker(&received[0].0, b"MARK-offer"));
    assert_eq!(received[0].1, PacketType::Host);
    let frame = UdpFrame::parse(&received[0].0).expect("a valid frame");
    assert_eq!(frame.src_mac, SERVER_MAC);
    assert_eq!(frame.payload, b"MARK-offer");
}

#[test]
fn datagrams_from_local_udp_sockets_parse_despite_checksum_offload() {
    // A UDP socket on this host leaves the UDP checksum to be completed by offload; over a veth
    // the frame reaches the packet socket with only a partial sum in the field. The socket must
    // present it so that a verifying parser accepts it, as the kernel's own stack does.
    require_root();
    let ns = Netns::new();
    let received = ns.run(|| {
        let server = RawSocket::open("vb").expect("open server socket");
        let sock = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .expect("udp socket");
        sock.set_broadcast(true).expect("broadcast");
        sock.bind_device(Some(b"va")).expect("bind to va");
        sock.bind(&std::net::SocketAddr::from((Ipv4Addr::UNSPECIFIED, 68)).into())
            .expect("bind :68");
        let to = std::net::SocketAddr::from((Ipv4Addr::BROADCAST, 67));
        sock.send_to(b"MARK-from-udp-socket", &to.into())
            .expect("send");
        let mut got = collect_until(&server, &[b"MARK-from-udp-socket"], ARRIVAL_LIMIT);
        settle(&server, &mut got, Duration::from_millis(100));
        got
    });
    let frames: Vec<&Vec<u8>> = received
        .iter()
        .filter(|(f, _)| has_marker(f, b"MARK-from-udp-socket"))
        .map(|(f, _)| f)
        .collect();
    assert_eq!(frames.len(), 1, "{received:?}");
    let frame = UdpFrame::parse(frames[0]).expect("frame accepted by the verifying parser");
    assert_eq!(frame.payload, b"MARK-from-udp-socket");
    assert_eq!(frame.dst_port, 67);
}

// ---------------------------------------------------------------------------------------------
// The DHCP driver over these sockets: the real core, the real LMDB store (behind a wrapper that
// can be made slow or failing, as a disk can be), real frames on a veth, a relay agent on UDP.
// ---------------------------------------------------------------------------------------------

mod driver {
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::{Arc, Mutex};

    use ims_netboot::config::Config;
    use ims_netboot::dhcp::wire::{Message, Options, code};
    use ims_netboot::dhcp::{DiscoveredMachine, Lease, LeaseState, MessageType, Server, UnixTime};
    use ims_netboot::io::dhcp_driver::{DhcpDriver, Link, Sockets};
    use ims_netboot::io::udp::RelaySocket;
    use ims_netboot::store::lmdb::LmdbStore;
    use ims_netboot::store::{LeaseStore, StoreError, StoreOp};
    use socket2::{Domain, Protocol, Socket, Type};
    use tokio::sync::watch;

    use super::*;

    const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const RELAY_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);

    /// A directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "nbraw-store-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).expect("temp dir");
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// What the wrapper saw, shared with the test.
    #[derive(Default)]
    struct Journal {
        commits: AtomicUsize,
        /// Addresses of leases whose commit had returned.
        durable: Mutex<BTreeSet<Ipv4Addr>>,
        /// Make commits fail (a full disk).
        fail: AtomicBool,
    }

    /// The LMDB store behind a slow disk (`delay` per commit) that can be made to fail.
    struct Disk {
        inner: LmdbStore,
        delay: Duration,
        journal: Arc<Journal>,
    }

    impl LeaseStore for Disk {
        fn load_leases(&self) -> Result<Vec<Lease>, StoreError> {
            self.inner.load_leases()
        }

        fn load_discovered(&self) -> Result<Vec<DiscoveredMachine>, StoreError> {
            self.inner.load_discovered()
        }

        fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
            std::thread::sleep(self.delay);
            if self.journal.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Io {
                    path: "test disk".into(),
                    source: std::io::Error::other("injected: disk full"),
                });
            }
            self.inner.commit(ops)?;
            self.journal.commits.fetch_add(1, Ordering::SeqCst);
            let mut durable = self.journal.durable.lock().expect("lock");
            for op in ops {
                if let StoreOp::PutLease(l) = op {
                    durable.insert(l.ip);
                }
            }
            Ok(())
        }
    }

    fn config(dir: &TempDir) -> Config {
        Config::from_toml_str(&format!(
            r#"
            data_dir = "{}"
            metrics_listen = "off"
            [dhcp]
            max_batch = 1024
            [[interface]]
            name = "vb"
            address = "{SERVER_IP}"
            [[subnet]]
            cidr = "10.77.0.0/24"
            range = ["10.77.0.10", "10.77.0.250"]
            allow_unknown = true
            [[subnet]]
            cidr = "10.77.1.0/24"
            range = ["10.77.1.50", "10.77.1.99"]
            allow_unknown = true
            "#,
            dir.0.display()
        ))
        .expect("valid config")
    }

    fn mac(i: u16) -> MacAddr {
        let [hi, lo] = i.to_be_bytes();
        MacAddr([0x02, 0x77, 0, 0, hi, lo])
    }

    /// A client request (broadcast flag set, so replies come back broadcast).
    fn request_msg(
        mac: MacAddr,
        xid: u32,
        kind: MessageType,
        requested: Option<(Ipv4Addr, Ipv4Addr)>,
        giaddr: Ipv4Addr,
    ) -> Vec<u8> {
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&mac.octets());
        let mut options = Options::default();
        options.set_message_type(kind);
        if let Some((ip, server)) = requested {
            options.set_ipv4(code::REQUESTED_IP, ip);
            options.set_ipv4(code::SERVER_ID, server);
        }
        let msg = Message {
            op: 1,
            htype: 1,
            hlen: 6,
            hops: u8::from(!giaddr.is_unspecified()),
            xid,
            secs: 0,
            flags: Message::BROADCAST_FLAG,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr,
            chaddr,
            sname: Vec::new(),
            file: Vec::new(),
            options,
        };
        let mut out = Vec::new();
        msg.emit(&mut out);
        out
    }

    fn client_frame(mac: MacAddr, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        UdpFrame {
            src_mac: mac,
            dst_mac: MacAddr::BROADCAST,
            src_ip: Ipv4Addr::UNSPECIFIED,
            dst_ip: Ipv4Addr::BROADCAST,
            src_port: 68,
            dst_port: 67,
            payload,
        }
        .emit(&mut out);
        out
    }

    /// A reply: (xid, type, yiaddr, server identifier).
    type Answer = (u32, MessageType, Ipv4Addr, Option<Ipv4Addr>);

    fn answer(payload: &[u8]) -> Option<Answer> {
        let msg = Message::parse(payload).ok()?;
        Some((
            msg.xid,
            msg.message_type()?,
            msg.yiaddr,
            msg.options.server_id(),
        ))
    }

    /// Replies arriving on the client's raw socket within `wait` (or until `want` arrived), by
    /// xid, checking each ACK against the journal at the moment it arrives.
    #[allow(clippy::disallowed_methods)]
    fn answers(
        client: &RawSocket,
        want: usize,
        wait: Duration,
        journal: &Journal,
    ) -> BTreeMap<u32, Answer> {
        let deadline = Instant::now() + wait;
        let mut got = BTreeMap::new();
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline && got.len() < want {
            let Some((n, _)) = client.recv(&mut buf).expect("recv") else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            let Ok(frame) = UdpFrame::parse(&buf[..n]) else {
                continue;
            };
            if let Some(a) = answer(frame.payload) {
                if a.1 == MessageType::Ack {
                    assert!(
                        journal.durable.lock().expect("lock").contains(&a.2),
                        "ACK for {} reached the client before its lease was committed",
                        a.2
                    );
                }
                got.insert(a.0, a);
            }
        }
        got
    }

    /// Everything a driver test needs; the driver runs on its own runtime until `stop`.
    struct Running {
        ns: Netns,
        _dir: TempDir,
        dir_path: PathBuf,
        client: RawSocket,
        agent: UdpSocket,
        journal: Arc<Journal>,
        stop: watch::Sender<bool>,
        runtime: tokio::runtime::Runtime,
        task: tokio::task::JoinHandle<Result<(), ims_netboot::io::dhcp_driver::DriverError>>,
    }

    #[allow(clippy::disallowed_methods)]
    fn start(commit_delay: Duration) -> Running {
        require_root();
        let ns = Netns::new();
        let n = ns.name.clone();
        ip(&["-n", &n, "addr", "add", "10.77.0.1/24", "dev", "vb"]);
        ip(&["-n", &n, "addr", "add", "10.77.1.1/32", "dev", "lo"]);
        let dir = TempDir::new();
        let config = config(&dir);
        let (server_sock, relay, client, agent) = ns.run(|| {
            let server = RawSocket::open("vb").expect("server socket");
            let relay = RelaySocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67))
                .expect("relay socket");
            let client = RawSocket::open_with_port("va", 68).expect("client socket");
            // The relay agent listens on giaddr:67 next to the server's 0.0.0.0:67.
            let agent = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("agent");
            agent.set_reuse_address(true).expect("reuse");
            agent
                .bind(&SocketAddr::from((RELAY_IP, 67)).into())
                .expect("bind agent");
            let agent: UdpSocket = agent.into();
            agent
                .set_read_timeout(Some(Duration::from_secs(3)))
                .expect("timeout");
            (server, relay, client, agent)
        });

        let journal = Arc::new(Journal::default());
        let store = Disk {
            inner: LmdbStore::open(&dir.0).expect("open store"),
            delay: commit_delay,
            journal: Arc::clone(&journal),
        };
        let now = UnixTime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs(),
        );
        let server = Server::new(config.dhcp.clone(), store.load_leases().expect("load"), now);
        let sockets = Sockets::new(
            vec![Link {
                name: "vb".into(),
                address: SERVER_IP,
                socket: server_sock,
            }],
            Some(relay),
        );
        let driver =
            DhcpDriver::new(server, store, sockets, config.dhcp_driver.max_batch).expect("driver");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (stop, stop_rx) = watch::channel(false);
        let task = runtime.spawn(driver.run(stop_rx));
        Running {
            ns,
            dir_path: dir.0.clone(),
            _dir: dir,
            client,
            agent,
            journal,
            stop,
            runtime,
            task,
        }
    }

    impl Running {
        /// Stop the driver; it must return cleanly within 5 s.
        fn stop(self) -> (Netns, TempDir, PathBuf) {
            let _ = self.stop.send(true);
            let task = self.task;
            let result = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await })
                .expect("driver stops within 5 s")
                .expect("driver task");
            assert!(result.is_ok(), "driver failed: {result:?}");
            (self.ns, self._dir, self.dir_path)
        }
    }

    /// DISCOVER from `count` clients at once, then REQUEST what was offered, at once.
    fn dora(run: &Running, first: u16, count: u16) -> BTreeMap<u32, Answer> {
        for i in first..first + count {
            let p = request_msg(
                mac(i),
                u32::from(i),
                MessageType::Discover,
                None,
                Ipv4Addr::UNSPECIFIED,
            );
            run.client
                .send(&client_frame(mac(i), &p))
                .expect("send DISCOVER");
        }
        let offers = answers(
            &run.client,
            usize::from(count),
            Duration::from_secs(5),
            &run.journal,
        );
        assert_eq!(
            offers.len(),
            usize::from(count),
            "every client got an OFFER"
        );
        for (xid, (_, kind, yiaddr, server_id)) in &offers {
            assert_eq!(*kind, MessageType::Offer);
            assert_eq!(*server_id, Some(SERVER_IP));
            let i = u16::try_from(*xid).expect("our xid");
            let p = request_msg(
                mac(i),
                *xid,
                MessageType::Request,
                Some((*yiaddr, SERVER_IP)),
                Ipv4Addr::UNSPECIFIED,
            );
            run.client
                .send(&client_frame(mac(i), &p))
                .expect("send REQUEST");
        }
        offers
    }

    #[test]
    fn a_burst_of_clients_shares_few_commits_and_every_ack_is_durable_first() {
        // A slow disk (20 ms per commit) makes requests pile up while a commit runs, as in a
        // real storm: they must then share commits instead of queueing one fsync each.
        let run = start(Duration::from_millis(20));
        let handle = ims_netboot::metrics::install().expect("metrics");
        let clients: u16 = 120;
        let offers = dora(&run, 1, clients);
        let acks = answers(
            &run.client,
            usize::from(clients),
            Duration::from_secs(10),
            &run.journal,
        );
        assert_eq!(acks.len(), usize::from(clients), "every client got an ACK");
        for (xid, (_, kind, yiaddr, _)) in &acks {
            assert_eq!(*kind, MessageType::Ack);
            assert_eq!(
                Some(yiaddr),
                offers.get(xid).map(|o| &o.2),
                "ACK for the offered address"
            );
        }
        let commits = run.journal.commits.load(Ordering::SeqCst);
        assert!(
            (1..=15).contains(&commits),
            "{clients} leases took {commits} commits: expected group commit"
        );

        // A relayed DISCOVER is answered to the relay agent, from the address it was sent to.
        let p = request_msg(mac(999), 999, MessageType::Discover, None, RELAY_IP);
        run.agent
            .send_to(&p, SocketAddr::from((SERVER_IP, 67)))
            .expect("relay DISCOVER");
        let mut buf = [0u8; 1500];
        let (n, from) = run.agent.recv_from(&mut buf).expect("OFFER via the relay");
        assert_eq!(from.port(), 67);
        let (xid, kind, yiaddr, server_id) = answer(&buf[..n]).expect("a DHCP reply");
        assert_eq!((xid, kind), (999, MessageType::Offer));
        assert!(
            (50..=99).contains(&yiaddr.octets()[3]) && yiaddr.octets()[..3] == [10, 77, 1],
            "{yiaddr} from the relay's subnet"
        );
        assert_eq!(server_id, Some(SERVER_IP));

        let (_ns, _dir, path) = run.stop();
        let leases = LmdbStore::open_read_only(&path)
            .expect("store readable after stop")
            .load_leases()
            .expect("leases");
        let bound: BTreeSet<Ipv4Addr> = leases
            .iter()
            .filter(|l| l.state == LeaseState::Bound)
            .map(|l| l.ip)
            .collect();
        let acked: BTreeSet<Ipv4Addr> = acks.values().map(|a| a.2).collect();
        assert_eq!(bound, acked, "every ACKed lease is on disk");

        let page = handle.render();
        let value = |needle: &str| -> f64 {
            page.lines()
                .find_map(|l| l.strip_prefix(needle).and_then(|v| v.trim().parse().ok()))
                .unwrap_or_else(|| panic!("no {needle} in\n{page}"))
        };
        assert_eq!(
            value("netbootd_dhcp_received_total{interface=\"vb\",type=\"request\"}"),
            f64::from(clients)
        );
        assert_eq!(
            value("netbootd_dhcp_received_total{interface=\"relay\",type=\"discover\"}"),
            1.0
        );
        assert_eq!(
            value("netbootd_dhcp_replies_total{type=\"ack\"}"),
            f64::from(clients)
        );
        assert!(value("netbootd_dhcp_lease_commit_seconds_count") >= 1.0);
        assert!(value("netbootd_dhcp_commit_batch_size_sum") >= f64::from(clients));
    }

    #[test]
    fn no_ack_while_the_disk_fails_and_the_retry_succeeds() {
        let run = start(Duration::ZERO);
        run.journal.fail.store(true, Ordering::SeqCst);
        let offers = dora(&run, 500, 3);
        let acks = answers(&run.client, 3, Duration::from_millis(1500), &run.journal);
        assert!(
            acks.is_empty(),
            "ACKs sent for leases that failed to commit: {acks:?}"
        );

        // The disk recovers; the clients retransmit their REQUESTs and are ACKed.
        run.journal.fail.store(false, Ordering::SeqCst);
        for (xid, (_, _, yiaddr, _)) in &offers {
            let i = u16::try_from(*xid).expect("our xid");
            let p = request_msg(
                mac(i),
                *xid,
                MessageType::Request,
                Some((*yiaddr, SERVER_IP)),
                Ipv4Addr::UNSPECIFIED,
            );
            run.client
                .send(&client_frame(mac(i), &p))
                .expect("resend REQUEST");
        }
        let acks = answers(&run.client, 3, Duration::from_secs(5), &run.journal);
        assert_eq!(acks.len(), 3, "ACKed once the commit succeeds");
        assert!(acks.values().all(|a| a.1 == MessageType::Ack));
        run.stop();
    }
}
