//! The DHCP driver: sockets ⇄ [`Server`] ⇄ lease store, with group commit.
//!
//! One tokio task runs the loop:
//! 1. wait until a socket is readable, the core's timer is due, or shutdown is signalled;
//! 2. read the clock once, then read up to `max_batch` packets across all sockets without
//!    blocking (round robin), feeding each to the core (`handle_frame` / `handle_datagram`), or
//!    call `handle_timeout`;
//! 3. drain `poll_command` into one `Batch`: `Persist`/`Remove`/`Discovered` become
//!    [`StoreOp`]s, `Send` becomes a pending reply;
//! 4. hand the batch to the committer thread, publish the core's counters, loop.
//!
//! **Persist before you promise.** The committer thread owns the store. It takes every batch
//! waiting in its channel, applies all their operations in ONE commit (one fsync shared by all
//! the clients of a burst), and only when that commit has returned sends the batches' replies,
//! in order. A reply may skip the queue and go out straight from the loop only when nothing it
//! could depend on is still pending: no lease write (`Persist`/`Remove`) before it in its batch,
//! no reply before it held back, and either it promises nothing durable (OFFER, NAK) or no commit
//! is in flight. (A `Discovered` record is committed with the rest but holds nothing back: an
//! OFFER promises nothing about it.)
//!
//! When a commit fails the error is logged and counted, and the replies that depended on it are
//! dropped: those that make a durable promise (ACK) and came after a lease write in their batch.
//! The client retries, and no ACK is ever sent for a lease that is not on disk. Replies that were
//! only held back to keep their order (OFFERs, NAKs) are still sent.
//!
//! On shutdown the loop stops reading, the committer finishes what it was given (commits and
//! sends) and exits; [`DhcpDriver::run`] returns after it has.
//!
//! The sockets are shared by the loop and the committer through `Arc` (sending is `&self`).
//!
//! # With a control plane
//!
//! - [`DhcpDriver::with_lease_events`]: the committer adds a lease event (granted, renewed,
//!   released, expired) to the event log in the same transaction as each lease write (see
//!   `lease_events`), so the outbox holds an event exactly for each committed lease.
//! - [`DhcpDriver::with_config_updates`]: a new [`DhcpConfig`] on the channel (machines, boot
//!   profiles, subnets from a snapshot) is swapped into the core between two inputs
//!   ([`Server::replace_config`]); leases are kept, interfaces stay as they were.
//! - [`DhcpDriver::with_health`]: lease commit failures are reported as a DHCP service error,
//!   and the next successful commit as recovery.
//!
//! [`DhcpDriver::with_readiness`] reports DHCP ready (for `/readyz`) once every socket is
//! registered with the runtime and the committer runs, just before the loop first waits.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ims_proto::MacAddr;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

#[cfg(test)]
use self::committer::committer;
use self::committer::{CommitHooks, commit_loop};
use self::lease_events::{LeaseEvents, SharedSubnets};
use super::raw_socket::{self, PacketType, RawSocket, wait_writable};
use super::udp::{self, RelaySocket};
use crate::config::DhcpConfig;
use crate::dhcp::frame::UdpFrame;
use crate::dhcp::{Command, Destination, InterfaceId, MessageType, Reply, Server, UnixTime};
use crate::metrics;
use crate::readiness::Readiness;
use crate::store::{LeaseStore, StoreOp};
use crate::uplink::ServiceHealth;

mod committer;
mod lease_events;

/// Largest frame or datagram read; longer ones are truncated (and then rejected by the core).
const RECV_BUFFER_BYTES: usize = 9216;
/// Longest the loop sleeps without re-reading the wall clock (guards against clock jumps).
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// How long a sender waits for room in a full socket send buffer, per attempt.
const SEND_WAIT: Duration = Duration::from_millis(20);
/// Attempts to send one reply when the send buffer is full.
const SEND_ATTEMPTS: u32 = 3;
/// Pool and lease gauges are refreshed at most this often (they walk the lease table).
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);
/// Repeated warnings of one kind (send or receive errors) are logged at most this often.
const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// UDP ports of DHCP (RFC 2131 §4.1).
const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;

/// The driver failed to start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A socket could not be opened (the message names the interface or address).
    #[error(transparent)]
    Socket(#[from] io::Error),
    /// A configured interface has no socket.
    #[error(
        "interface {name} is configured in [[interface]] but has no raw socket; check that it \
         exists (`ip link`) and that netbootd has CAP_NET_RAW"
    )]
    MissingInterface {
        /// The configured interface name.
        name: String,
    },
    /// The lease committer thread could not start or died.
    #[error("lease committer thread: {0}")]
    Committer(String),
}

/// A served interface: its raw socket and our address there.
#[derive(Debug)]
pub struct Link {
    /// The configured interface name.
    pub name: String,
    /// Our IPv4 address on it (source address of replies).
    pub address: Ipv4Addr,
    /// The socket (receiving UDP port 67).
    pub socket: RawSocket,
}

/// Every socket the driver uses: one [`Link`] per configured interface, in config order, and the
/// relay socket if any.
#[derive(Debug)]
pub struct Sockets {
    links: Vec<Link>,
    relay: Option<RelaySocket>,
}

impl Sockets {
    /// Open one raw socket per `[[interface]]`, and the relay socket on `relay_addr` when at
    /// least one subnet is configured (relayed requests can only be for subnets) or when
    /// `subnets_may_arrive` (a control plane may push subnets at run time).
    ///
    /// # Errors
    /// The first socket that cannot be opened, with a message naming the interface (or the relay
    /// address) and what to do.
    pub fn open(
        config: &DhcpConfig,
        relay_addr: SocketAddrV4,
        subnets_may_arrive: bool,
    ) -> Result<Self, DriverError> {
        let mut links = Vec::with_capacity(config.interfaces.len());
        for interface in &config.interfaces {
            let socket = RawSocket::open(&interface.name)?;
            links.push(Link {
                name: interface.name.clone(),
                address: interface.address,
                socket,
            });
        }
        let relay = if config.subnets.is_empty() && !subnets_may_arrive {
            None
        } else {
            Some(RelaySocket::bind(relay_addr)?)
        };
        Ok(Self { links, relay })
    }

    /// Sockets opened by the caller (tests, tools).
    pub fn new(links: Vec<Link>, relay: Option<RelaySocket>) -> Self {
        Self { links, relay }
    }

    /// The served links, in order.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The relay socket, if open.
    pub fn relay(&self) -> Option<&RelaySocket> {
        self.relay.as_ref()
    }
}

/// One loop iteration's side effects, in the core's order.
#[derive(Debug, Default)]
struct Batch {
    /// Store operations, committed together.
    ops: Vec<StoreOp>,
    /// Replies to send after the commit; `true` when the reply depends on the commit (a durable
    /// promise after a lease write in its batch) and must be dropped if the commit fails.
    replies: Vec<(Reply, bool)>,
    /// A lease write (`Persist`/`Remove`) has been routed into this batch.
    lease_written: bool,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.replies.is_empty()
    }
}

/// Whether a reply makes no promise that needs a durable lease behind it.
fn promises_nothing(message_type: MessageType) -> bool {
    matches!(message_type, MessageType::Offer | MessageType::Nak)
}

/// The wall clock: read here and nowhere else in the driver.
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The monotonic clock, for measuring (commit latency, log rate limits), never for leases.
#[allow(clippy::disallowed_methods)]
fn monotonic() -> Instant {
    Instant::now()
}

/// At most one warning per [`WARN_INTERVAL`]; the rest go to `debug`.
#[derive(Debug)]
struct WarnLimiter {
    origin: Instant,
    /// Milliseconds since `origin` of the last warning, plus one (0: never).
    last: AtomicU64,
}

impl WarnLimiter {
    fn new() -> Self {
        Self {
            origin: monotonic(),
            last: AtomicU64::new(0),
        }
    }

    fn should_warn(&self) -> bool {
        let now = u64::try_from(self.origin.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        let interval = u64::try_from(WARN_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        (last == 0 || now.saturating_sub(last) >= interval)
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// A served interface as the senders see it.
#[derive(Debug)]
struct LinkTx {
    name: String,
    mac: MacAddr,
    address: Ipv4Addr,
    socket: Arc<RawSocket>,
}

/// Sends replies; shared by the loop and the committer.
#[derive(Debug)]
struct Transmitter {
    links: Vec<LinkTx>,
    relay: Option<Arc<RelaySocket>>,
    warn: WarnLimiter,
}

impl Transmitter {
    /// Send one reply, retrying briefly while the socket's send buffer is full. Failures are
    /// logged and counted, never returned: the client retransmits.
    fn send(&self, reply: &Reply, scratch: &mut Vec<u8>) {
        let (label, result) = match reply.destination {
            Destination::Link { interface, mac, ip } => {
                let Some(link) = self.links.get(interface.0) else {
                    error!(
                        interface = interface.0,
                        "reply for an interface without a socket"
                    );
                    metrics::record_send_error("unknown");
                    return;
                };
                scratch.clear();
                UdpFrame {
                    src_mac: link.mac,
                    dst_mac: mac,
                    src_ip: link.address,
                    dst_ip: ip,
                    src_port: SERVER_PORT,
                    dst_port: CLIENT_PORT,
                    payload: &reply.payload,
                }
                .emit(scratch);
                let socket = &link.socket;
                let result = with_retry(
                    || socket.send(scratch),
                    || wait_writable(std::os::fd::AsFd::as_fd(&**socket), SEND_WAIT),
                );
                (link.name.as_str(), result)
            }
            Destination::Relay(to) | Destination::Unicast(to) => {
                let Some(relay) = &self.relay else {
                    error!(%to, "reply for a relay but no relay socket is open");
                    metrics::record_send_error("relay");
                    return;
                };
                let result = with_retry(
                    || relay.send_to(&reply.payload, to),
                    || wait_writable(std::os::fd::AsFd::as_fd(&**relay), SEND_WAIT),
                );
                ("relay", result)
            }
        };
        if let Err(e) = result {
            metrics::record_send_error(label);
            let kind = reply.message_type.as_str();
            if self.warn.should_warn() {
                warn!(interface = label, reply = kind, error = %e, "sending a DHCP reply failed");
            } else {
                debug!(interface = label, reply = kind, error = %e, "sending a DHCP reply failed");
            }
        }
    }
}

/// Run `send`; while it reports a full buffer, wait for room and try again, a few times.
fn with_retry(
    mut send: impl FnMut() -> io::Result<()>,
    mut wait: impl FnMut() -> io::Result<bool>,
) -> io::Result<()> {
    let mut attempt = 1;
    loop {
        match send() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && attempt < SEND_ATTEMPTS => {
                attempt += 1;
                wait()?;
            }
            other => return other,
        }
    }
}

/// A receive source: a link (by index) or the relay socket.
#[derive(Debug, Clone, Copy)]
enum Source {
    Link(usize),
    Relay,
}

/// The DHCP driver. Build it with [`DhcpDriver::new`], then [`DhcpDriver::run`] it.
#[derive(Debug)]
pub struct DhcpDriver<S> {
    server: Server,
    store: S,
    sockets: Sockets,
    max_batch: usize,
    config_updates: Option<watch::Receiver<Arc<DhcpConfig>>>,
    lease_events: bool,
    health: Option<ServiceHealth>,
    readiness: Option<Readiness>,
}

impl<S: LeaseStore + 'static> DhcpDriver<S> {
    /// Check that every interface the server serves has a socket (matched by name; `sockets` may
    /// list them in any order) and assemble the driver.
    ///
    /// # Errors
    /// [`DriverError::MissingInterface`] naming the first interface without a socket.
    pub fn new(
        server: Server,
        store: S,
        mut sockets: Sockets,
        max_batch: usize,
    ) -> Result<Self, DriverError> {
        let mut ordered = Vec::with_capacity(sockets.links.len());
        let mut id = 0;
        while let Some(name) = server.interface_name(InterfaceId(id)) {
            let Some(pos) = sockets.links.iter().position(|l| l.name == name) else {
                return Err(DriverError::MissingInterface {
                    name: name.to_owned(),
                });
            };
            ordered.push(sockets.links.swap_remove(pos));
            id += 1;
        }
        for extra in &sockets.links {
            warn!(interface = %extra.name, "socket for an interface that is not configured: closed");
        }
        sockets.links = ordered;
        Ok(Self {
            server,
            store,
            sockets,
            max_batch: max_batch.max(1),
            config_updates: None,
            lease_events: false,
            health: None,
            readiness: None,
        })
    }

    /// Serve each configuration sent on `updates` from then on (see the module docs); the
    /// value already in the channel is taken as seen.
    #[must_use]
    pub fn with_config_updates(mut self, mut updates: watch::Receiver<Arc<DhcpConfig>>) -> Self {
        updates.mark_unchanged();
        self.config_updates = Some(updates);
        self
    }

    /// Append a lease event to the event log with every lease write (see the module docs). The
    /// store must accept [`StoreOp::AppendEvent`].
    #[must_use]
    pub fn with_lease_events(mut self) -> Self {
        self.lease_events = true;
        self
    }

    /// Report lease commit failures (and recoveries) to `health`.
    #[must_use]
    pub fn with_health(mut self, health: ServiceHealth) -> Self {
        self.health = Some(health);
        self
    }

    /// Report DHCP ready to `readiness` once the loop is about to serve (see the module docs).
    #[must_use]
    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = Some(readiness);
        self
    }

    /// Run until `shutdown` becomes `true` (or its sender is dropped). Returns once the
    /// committer has committed and sent everything it was given.
    ///
    /// # Errors
    /// When a socket cannot be registered with the runtime, or the committer thread dies.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), DriverError> {
        let Self {
            mut server,
            store,
            sockets,
            max_batch,
            mut config_updates,
            lease_events,
            health,
            readiness,
        } = self;
        let subnets: SharedSubnets = Arc::new(RwLock::new(subnet_nets(server.config())));
        let hooks = CommitHooks {
            events: lease_events.then(|| LeaseEvents::new(server.leases(), Arc::clone(&subnets))),
            health,
        };

        let mut links = Vec::with_capacity(sockets.links.len());
        let mut link_fds = Vec::with_capacity(sockets.links.len());
        for link in sockets.links {
            let socket = Arc::new(link.socket);
            let mac = socket.mac();
            link_fds.push(raw_socket::register_readable(Arc::clone(&socket))?);
            links.push(LinkTx {
                name: link.name,
                mac,
                address: link.address,
                socket,
            });
        }
        let relay = sockets.relay.map(Arc::new);
        let relay_fd = match &relay {
            Some(r) => Some(udp::register_readable(Arc::clone(r))?),
            None => None,
        };
        let transmitter = Arc::new(Transmitter {
            links,
            relay,
            warn: WarnLimiter::new(),
        });

        let (to_committer, from_loop) = mpsc::channel::<Batch>();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let committer_thread = {
            let transmitter = Arc::clone(&transmitter);
            let in_flight = Arc::clone(&in_flight);
            thread::Builder::new()
                .name("lease-commit".into())
                .spawn(move || {
                    commit_loop(
                        store,
                        &from_loop,
                        &transmitter,
                        &in_flight,
                        max_batch,
                        hooks,
                    )
                })
                .map_err(|e| DriverError::Committer(e.to_string()))?
        };

        let mut reader = Reader {
            link_fds,
            relay_fd,
            buf: vec![0u8; RECV_BUFFER_BYTES],
            warn: WarnLimiter::new(),
        };
        let mut scratch = Vec::with_capacity(1600);
        // Gauges walk the lease table: refreshed at most once per GAUGE_INTERVAL, and once more
        // after the last change even if nothing else happens.
        let started = UnixTime(wall_clock().as_secs());
        metrics::publish_dhcp_stats(server.stats());
        metrics::publish_dhcp_gauges(server.active_leases(started), &server.pool_usage(started));
        let mut last_gauges = monotonic();
        let mut gauges_stale = false;
        info!(
            interfaces = transmitter.links.len(),
            relay = transmitter.relay.is_some(),
            max_batch,
            "DHCP driver running"
        );
        // Every socket is open and registered: what arrives from now on is read and answered.
        if let Some(readiness) = &readiness {
            readiness.ready(ims_proto::SERVICE_DHCP);
        }

        let result = loop {
            let deadline = server.poll_timeout();
            let sleep_for = deadline.map(|d| {
                Duration::from_secs(d.0)
                    .saturating_sub(wall_clock())
                    .min(MAX_SLEEP)
            });
            let wake = tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => break Ok(()),
                () = tokio::time::sleep(sleep_for.unwrap_or(MAX_SLEEP)), if sleep_for.is_some() => {
                    Wake::Timer
                }
                () = reader.readable() => Wake::Readable,
                () = tokio::time::sleep(GAUGE_INTERVAL.saturating_sub(last_gauges.elapsed())),
                    if gauges_stale => Wake::Gauges,
                config = config_changed(&mut config_updates) => Wake::Config(config),
            };
            let now = UnixTime(wall_clock().as_secs());
            let mut batch = Batch::default();
            let mut drain = |server: &mut Server, batch: &mut Batch| {
                while let Some(command) = server.poll_command() {
                    route(command, batch, &transmitter, &in_flight, &mut scratch);
                }
            };
            match &wake {
                Wake::Gauges => {}
                Wake::Config(config) => {
                    server.replace_config((**config).clone(), now);
                    *subnets.write().unwrap_or_else(PoisonError::into_inner) =
                        subnet_nets(server.config());
                    info!(
                        machines = config.machines.len(),
                        boot_profiles = config.boot_profiles.len(),
                        subnets = config.subnets.len(),
                        "DHCP now serves the updated machines and boot profiles"
                    );
                    gauges_stale = true;
                }
                Wake::Timer => {
                    if deadline.is_some_and(|d| d <= now) {
                        server.handle_timeout(now);
                        drain(&mut server, &mut batch);
                    }
                }
                Wake::Readable => {
                    reader.read_batch(max_batch, |packet| {
                        match packet {
                            Packet::Frame(i, frame) => {
                                server.handle_frame(now, InterfaceId(i), frame);
                            }
                            Packet::Datagram {
                                local,
                                peer,
                                payload,
                            } => {
                                server.handle_datagram(now, local, peer, payload);
                            }
                        }
                        drain(&mut server, &mut batch);
                    });
                }
            }
            if !batch.is_empty() {
                in_flight.fetch_add(1, Ordering::AcqRel);
                if to_committer.send(batch).is_err() {
                    in_flight.fetch_sub(1, Ordering::AcqRel);
                    break Err(DriverError::Committer(
                        "stopped unexpectedly; see the log above".into(),
                    ));
                }
            }
            metrics::publish_dhcp_stats(server.stats());
            gauges_stale |= !matches!(wake, Wake::Gauges);
            if gauges_stale && last_gauges.elapsed() >= GAUGE_INTERVAL {
                metrics::publish_dhcp_gauges(server.active_leases(now), &server.pool_usage(now));
                last_gauges = monotonic();
                gauges_stale = false;
            }
        };

        info!("DHCP driver stopping: finishing pending lease commits");
        drop(to_committer);
        let joined = tokio::task::spawn_blocking(move || committer_thread.join())
            .await
            .map_err(|e| DriverError::Committer(e.to_string()))?;
        if joined.is_err() {
            return Err(DriverError::Committer("panicked".into()));
        }
        info!("DHCP driver stopped");
        result
    }
}

/// Route one core command into the batch, or send it at once when nothing it could depend on
/// is pending (see the module docs).
fn route(
    command: Command,
    batch: &mut Batch,
    transmitter: &Transmitter,
    in_flight: &AtomicUsize,
    scratch: &mut Vec<u8>,
) {
    match command {
        Command::Persist(lease) => {
            batch.ops.push(StoreOp::PutLease(lease));
            batch.lease_written = true;
        }
        Command::Remove(ip) => {
            batch.ops.push(StoreOp::RemoveLease(ip));
            batch.lease_written = true;
        }
        Command::Discovered(machine) => batch.ops.push(StoreOp::PutDiscovered(machine)),
        Command::Send(reply) => {
            let harmless = promises_nothing(reply.message_type);
            let immediate = !batch.lease_written
                && batch.replies.is_empty()
                && (harmless || in_flight.load(Ordering::Acquire) == 0);
            if immediate {
                transmitter.send(&reply, scratch);
            } else {
                let depends = batch.lease_written && !harmless;
                batch.replies.push((reply, depends));
            }
        }
    }
}

/// The subnets of `config`, for lease events.
fn subnet_nets(config: &DhcpConfig) -> Vec<ipnet::Ipv4Net> {
    config.subnets.iter().map(|s| s.cidr).collect()
}

/// The next configuration sent on `updates`; never resolves without a channel (or once its
/// sender is gone).
async fn config_changed(updates: &mut Option<watch::Receiver<Arc<DhcpConfig>>>) -> Arc<DhcpConfig> {
    let Some(rx) = updates.as_mut() else {
        return std::future::pending().await;
    };
    match rx.changed().await {
        Ok(()) => Arc::clone(&rx.borrow_and_update()),
        Err(_) => {
            *updates = None;
            std::future::pending().await
        }
    }
}

/// Why the loop woke up.
#[derive(Debug, Clone)]
enum Wake {
    /// The core's timer is due (or the capped sleep ended).
    Timer,
    /// A socket has something to read.
    Readable,
    /// The lease and pool gauges are due for a refresh.
    Gauges,
    /// A new configuration to serve.
    Config(Arc<DhcpConfig>),
}

/// A received packet, borrowed from the reader's buffer.
enum Packet<'a> {
    /// A frame from link `usize`.
    Frame(usize, &'a [u8]),
    /// A datagram from a relay.
    Datagram {
        local: Ipv4Addr,
        peer: SocketAddrV4,
        payload: &'a [u8],
    },
}

/// The receive side: readiness of every socket, and non-blocking reads.
struct Reader {
    link_fds: Vec<AsyncFd<Arc<RawSocket>>>,
    relay_fd: Option<AsyncFd<Arc<RelaySocket>>>,
    buf: Vec<u8>,
    warn: WarnLimiter,
}

impl Reader {
    /// Resolves when at least one socket is readable. Never resolves with no sockets.
    async fn readable(&self) {
        std::future::poll_fn(|cx| {
            let mut ready = false;
            for fd in &self.link_fds {
                ready |= fd.poll_read_ready(cx).is_ready();
            }
            if let Some(fd) = &self.relay_fd {
                ready |= fd.poll_read_ready(cx).is_ready();
            }
            if ready {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
    }

    /// Read up to `max` packets, one per socket in turn, until every socket would block; hand
    /// each to `handle`. Our own outgoing frames are skipped.
    fn read_batch(&mut self, max: usize, mut handle: impl FnMut(Packet<'_>)) {
        let sources: Vec<Source> = (0..self.link_fds.len())
            .map(Source::Link)
            .chain(self.relay_fd.as_ref().map(|_| Source::Relay))
            .collect();
        let mut live = vec![true; sources.len()];
        let mut read = 0;
        while read < max && live.iter().any(|l| *l) {
            for (slot, source) in sources.iter().enumerate() {
                if !live[slot] || read >= max {
                    continue;
                }
                let buf = &mut self.buf;
                let outcome = match *source {
                    Source::Link(i) => self.link_fds[i]
                        .try_io(Interest::READABLE, |s| s.recv_frame(buf))
                        .map(|(len, kind)| Received::Frame(i, len, kind)),
                    Source::Relay => match &self.relay_fd {
                        Some(fd) => fd
                            .try_io(Interest::READABLE, |s| s.recv_datagram(buf))
                            .map(|(len, peer, local)| Received::Datagram(len, peer, local)),
                        None => Err(io::ErrorKind::WouldBlock.into()),
                    },
                };
                match outcome {
                    Ok(Received::Frame(_, _, PacketType::Outgoing)) => {}
                    Ok(Received::Frame(i, len, _)) => {
                        read += 1;
                        handle(Packet::Frame(i, &self.buf[..len]));
                    }
                    Ok(Received::Datagram(len, peer, local)) => {
                        read += 1;
                        let payload = &self.buf[..len];
                        handle(Packet::Datagram {
                            local,
                            peer,
                            payload,
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => live[slot] = false,
                    Err(e) => {
                        // E.g. ENETDOWN when an interface goes down: reported once, then the
                        // socket waits for the link to come back.
                        live[slot] = false;
                        if self.warn.should_warn() {
                            warn!(source = ?source, error = %e, "receiving DHCP traffic failed");
                        } else {
                            debug!(source = ?source, error = %e, "receiving DHCP traffic failed");
                        }
                    }
                }
            }
        }
    }
}

/// What one non-blocking read produced (lengths into the reader's buffer).
enum Received {
    Frame(usize, usize, PacketType),
    Datagram(usize, SocketAddrV4, Ipv4Addr),
}

#[cfg(test)]
mod tests;
