//! The TFTP driver loop, shared by both drivers: only the socket operations differ
//! ([`Backend`]).
//!
//! One single-threaded runtime runs it:
//! 1. The backend watches the sockets (the listener and each transfer's own) and hands the
//!    loop every datagram ready at once, in one reused [`Batch`] (no allocation, no message per
//!    datagram); blocking file jobs post [`Inbound`] messages to a bounded inbox.
//! 2. The loop waits for datagrams, the inbox, the core's deadline ([`Server::poll_timeout`])
//!    or shutdown; reads the clock once; feeds everything waiting to the core
//!    (`handle_request`, `handle_datagram`, `handle_file_opened`, `handle_file_error`) or calls
//!    `handle_timeout`.
//! 3. It drains [`Server::poll_command`] and executes each command in order: `Open` creates the
//!    transfer's socket and starts a file job; `Send` hands packets to the backend (consecutive
//!    DATA packets of a transfer become one run, sent with GSO: see `gso`; a DATA packet is a
//!    header plus a slice of the shared file [`Bytes`]); `Close` drops the socket and the file
//!    handle; `Event` is logged, counted and appended to the event log.
//!
//! File jobs run on tokio's blocking pool: `open_confined` + `fstat`, then (on a cache miss)
//! reading the whole file once, however many transfers wait for it.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::{File, Metadata};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::events::EventSink;
use super::files::{self, CacheKey, FileCache, FileIdentity};
use super::gso::{Coalescer, DataRun, PendingRun};
use super::receive::{Batch, Received};
use crate::io::root::open_confined;
use crate::metrics;
use crate::tftp::{
    Command, FileError, Mode, Outcome, Packet, Server, Source, TransferEvent, TransferId,
};

/// Receive buffer of the listening socket: the largest UDP payload.
pub(crate) const LISTENER_BUFFER: usize = 65_536;
/// Receive buffer of a transfer socket: ACKs are 4 bytes, ERRORs short; longer datagrams are
/// cut (and then ignored by the core).
pub(crate) const TRANSFER_BUFFER: usize = 2048;
/// File-job messages waiting for the loop.
const INBOX_CAPACITY: usize = 1024;
/// Most inbox messages handled before the commands are drained.
const MAX_MESSAGES: usize = 256;
/// Gauges and counters are published at most this often (and whenever a transfer ends).
const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);
/// Repeated I/O warnings are logged at most this often (the rest go to `debug`).
const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// Pause of a receiver after a receive error, so a persistent error cannot spin.
pub(crate) const RECEIVE_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Which socket a datagram arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The listening socket.
    Listener,
    /// A transfer's own socket.
    Transfer(TransferId),
}

/// What the loop is told by its file jobs.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A file job opened (or failed to open) a transfer's file.
    Opened {
        id: TransferId,
        key: CacheKey,
        result: Result<(File, Metadata), FileError>,
    },
    /// A file job read a file; `stable` says whether it kept its identity meanwhile.
    Loaded {
        key: CacheKey,
        identity: FileIdentity,
        result: io::Result<(Bytes, bool)>,
    },
}

/// Where file jobs post.
type Inbox = mpsc::Sender<Inbound>;

/// What the backend sends.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// DATA packets: consecutive blocks, each a header plus a slice of the shared file, sent
    /// with GSO where the socket allows it (see `gso`).
    Data(DataRun),
    /// Any other packet, encoded by the core.
    Encoded(Vec<u8>),
}

/// The socket operations a driver provides. Sends are fire-and-forget: the backend reports
/// failures through [`IoErrors`].
pub(crate) trait Backend: 'static {
    /// A UDP socket of this backend.
    type Socket: 'static;
    /// What [`Backend::watch`] returns for a socket, handed back to [`Backend::retire`].
    type Watch: 'static;

    /// Take over a bound std socket.
    fn adopt(&self, socket: UdpSocket) -> io::Result<Rc<Self::Socket>>;

    /// Start receiving from `socket` (datagrams of at most `buffer` bytes; longer ones are
    /// cut): its datagrams come out of [`Backend::receive`] as `origin`'s.
    fn watch(
        &self,
        socket: &Rc<Self::Socket>,
        origin: Origin,
        buffer: usize,
    ) -> io::Result<Self::Watch>;

    /// Wait until datagrams are ready, then put them (at most `MAX_BATCH`) into `batch`,
    /// which is empty. Returns with at least one entry.
    fn receive(&self, batch: &mut Batch) -> impl Future<Output = ()>;

    /// Send `packet` from `socket` to `peer`, in order after what was sent before.
    fn send(&self, socket: &Rc<Self::Socket>, peer: SocketAddr, packet: Outgoing);

    /// A transfer socket is done: stop receiving from it and close it once what was sent has
    /// left; `local` is its address.
    fn retire(&self, socket: Rc<Self::Socket>, watch: Option<Self::Watch>, local: SocketAddr);
}

/// Rate-limited reporting of socket errors, shared by the loop and its backend.
#[derive(Debug, Default)]
pub(crate) struct IoErrors {
    last_warning: Cell<Option<Instant>>,
}

impl IoErrors {
    /// A datagram to `peer` could not be sent.
    pub(crate) fn send_failed(&self, peer: SocketAddr, error: &io::Error) {
        metrics::record_tftp_send_error();
        if self.may_warn() {
            warn!(%peer, "TFTP send failed: {error}");
        } else {
            debug!(%peer, "TFTP send failed: {error}");
        }
    }

    pub(crate) fn receive_failed(&self, origin: Origin, error: &io::Error) {
        if self.may_warn() {
            warn!(?origin, "TFTP receive failed: {error}");
        } else {
            debug!(?origin, "TFTP receive failed: {error}");
        }
    }

    fn may_warn(&self) -> bool {
        let now = monotonic();
        let due = self
            .last_warning
            .get()
            .is_none_or(|last| now.duration_since(last) >= WARN_INTERVAL);
        if due {
            self.last_warning.set(Some(now));
        }
        due
    }
}

/// The monotonic clock: the core's `now`.
#[allow(clippy::disallowed_methods)]
pub(crate) fn monotonic() -> Instant {
    Instant::now()
}

/// A running transfer, as the driver sees it.
#[derive(Debug)]
struct Transfer<S, W> {
    /// Its own socket (`None` when it could not be opened: its ERROR leaves from the listener).
    socket: Option<(Rc<S>, SocketAddr)>,
    /// The backend's receive registration of the socket.
    watch: Option<W>,
    /// The served file, once opened: shared with every other transfer of the same version.
    file: Option<Bytes>,
}

/// Everything the loop needs besides the backend.
#[derive(Debug)]
pub(crate) struct LoopSetup {
    /// The core.
    pub(crate) core: Server,
    /// The bound listening socket.
    pub(crate) listener: UdpSocket,
    /// Served root.
    pub(crate) root: Arc<Path>,
    /// Capacity of the file cache, in bytes.
    pub(crate) cache_capacity: u64,
    /// Where transfer events are made durable, if anywhere.
    pub(crate) events: Option<EventSink>,
}

struct State<B: Backend> {
    backend: B,
    errors: Rc<IoErrors>,
    core: Server,
    root: Arc<Path>,
    listen_ip: IpAddr,
    listener: Rc<B::Socket>,
    inbox: Inbox,
    transfers: BTreeMap<TransferId, Transfer<B::Socket, B::Watch>>,
    cache: FileCache,
    /// Reads in progress, with the transfers waiting for each.
    loading: BTreeMap<(CacheKey, FileIdentity), Vec<TransferId>>,
    events: Option<EventSink>,
    /// DATA `Send`s gathered into runs while draining the core's commands.
    coalescer: Coalescer,
    last_publish: Option<Instant>,
    dirty: bool,
    /// A transfer ended since the last publish: publish now, not at the next interval.
    publish_on_end: bool,
}

/// Run the loop until `stop` turns true (or its sender is dropped).
///
/// # Errors
/// When the listening socket cannot be taken over by the backend.
pub(crate) async fn run<B: Backend>(
    backend: B,
    errors: Rc<IoErrors>,
    setup: LoopSetup,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let listen_addr = setup.listener.local_addr()?;
    let listen_ip = listen_addr.ip();
    let listener = backend.adopt(setup.listener)?;
    let listener_watch = backend.watch(&listener, Origin::Listener, LISTENER_BUFFER)?;
    let (inbox, mut messages) = mpsc::channel(INBOX_CAPACITY);
    let mut state = State {
        backend,
        errors,
        core: setup.core,
        root: setup.root,
        listen_ip,
        listener,
        inbox,
        transfers: BTreeMap::new(),
        cache: FileCache::new(setup.cache_capacity),
        loading: BTreeMap::new(),
        events: setup.events,
        coalescer: Coalescer::default(),
        last_publish: None,
        dirty: true,
        publish_on_end: false,
    };
    let mut batch = Batch::default();
    // One timer, moved only when the deadline changes (not a new one per turn). `armed` is the
    // deadline it is set to; `None` after it fired (it must be set again).
    let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
    let sleep = tokio::time::sleep_until(far());
    tokio::pin!(sleep);
    let mut armed: Option<Option<Instant>> = None;
    loop {
        state.execute_commands();
        let now = monotonic();
        state.publish(now, false);
        let deadline = state.next_deadline();
        if armed != Some(deadline) {
            sleep
                .as_mut()
                .reset(deadline.map_or_else(far, tokio::time::Instant::from));
            armed = Some(deadline);
        }
        tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            () = state.backend.receive(&mut batch) => {
                let now = monotonic();
                state.handle_batch(now, &batch);
                batch.clear();
                state.handle_messages(now, &mut messages);
            }
            message = messages.recv() => {
                let Some(message) = message else { break };
                let now = monotonic();
                state.handle(now, message);
                state.handle_messages(now, &mut messages);
            }
            () = &mut sleep => armed = None,
        }
        let now = monotonic();
        if state.core.poll_timeout().is_some_and(|at| at <= now) {
            state.core.handle_timeout(now);
        }
    }
    let interrupted = state.transfers.len();
    for id in state.transfers.keys().copied().collect::<Vec<_>>() {
        state.close(id);
    }
    state
        .backend
        .retire(state.listener.clone(), Some(listener_watch), listen_addr);
    state.publish(monotonic(), true);
    info!(interrupted, "TFTP server stopped");
    Ok(())
}

impl<B: Backend> State<B> {
    /// The core's deadline, or the next publish when counters changed since the last one.
    fn next_deadline(&self) -> Option<Instant> {
        let publish = self
            .dirty
            .then(|| self.last_publish.map(|t| t + PUBLISH_INTERVAL))
            .flatten();
        match (self.core.poll_timeout(), publish) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn publish(&mut self, now: Instant, force: bool) {
        let due = self
            .last_publish
            .is_none_or(|last| now.duration_since(last) >= PUBLISH_INTERVAL);
        if !(force || self.publish_on_end || (self.dirty && due)) {
            return;
        }
        self.publish_on_end = false;
        metrics::publish_tftp_stats(
            self.core.stats(),
            self.core.active_transfers(),
            self.core.queued_requests(),
            self.cache.held_bytes(),
        );
        self.last_publish = Some(now);
        self.dirty = false;
    }

    /// Feed a batch of received datagrams to the core.
    fn handle_batch(&mut self, now: Instant, batch: &Batch) {
        self.dirty = true;
        for entry in batch.entries() {
            match entry {
                Received::Datagram {
                    origin: Origin::Listener,
                    peer,
                    range,
                } => self.core.handle_request(now, *peer, batch.bytes(range)),
                Received::Datagram {
                    origin: Origin::Transfer(id),
                    peer,
                    range,
                } => {
                    if self.transfers.contains_key(id) {
                        self.core
                            .handle_datagram(now, *id, *peer, batch.bytes(range));
                    }
                }
                Received::Failed { origin, error } => self.errors.receive_failed(*origin, error),
            }
        }
    }

    /// Handle the file-job messages waiting now (at most [`MAX_MESSAGES`]).
    fn handle_messages(&mut self, now: Instant, messages: &mut mpsc::Receiver<Inbound>) {
        for _ in 0..MAX_MESSAGES {
            match messages.try_recv() {
                Ok(message) => self.handle(now, message),
                Err(_) => break,
            }
        }
    }

    fn handle(&mut self, now: Instant, message: Inbound) {
        self.dirty = true;
        match message {
            Inbound::Opened { id, key, result } => self.opened(now, id, key, result),
            Inbound::Loaded {
                key,
                identity,
                result,
            } => self.loaded(now, key, identity, result),
        }
    }

    /// Perform the core's commands in order. Consecutive DATA packets of one transfer are
    /// gathered into one run (one GSO send); a run is sent before any other command.
    fn execute_commands(&mut self) {
        while let Some(command) = self.core.poll_command() {
            self.dirty = true;
            if let Command::Send {
                source,
                peer,
                packet: Packet::Data { block, offset, len },
            } = command
            {
                if let Some(run) = self.coalescer.push(source, peer, block, offset, len) {
                    self.send_run(run);
                }
                continue;
            }
            if let Some(run) = self.coalescer.take() {
                self.send_run(run);
            }
            match command {
                Command::Open {
                    id,
                    peer,
                    path,
                    mode,
                } => self.open(id, peer, path, mode),
                Command::Send {
                    source,
                    peer,
                    packet,
                } => self.send(source, peer, packet),
                Command::Close { id } => self.close(id),
                Command::Event(event) => self.event(event),
            }
        }
        if let Some(run) = self.coalescer.take() {
            self.send_run(run);
        }
    }

    /// Give the transfer its own socket (its TID) and start opening the file.
    fn open(&mut self, id: TransferId, peer: SocketAddr, path: String, mode: Mode) {
        let socket = bind_transfer_socket(self.listen_ip).and_then(|std| {
            let local = std.local_addr()?;
            Ok((self.backend.adopt(std)?, local))
        });
        let socket = socket.and_then(|(socket, local)| {
            match self
                .backend
                .watch(&socket, Origin::Transfer(id), TRANSFER_BUFFER)
            {
                Ok(watch) => Ok((socket, local, watch)),
                Err(e) => {
                    self.backend.retire(socket, None, local);
                    Err(e)
                }
            }
        });
        let (socket, watch) = match socket {
            Ok((socket, local, watch)) => (Some((socket, local)), Some(watch)),
            Err(e) => {
                warn!(%peer, %path, "cannot open a UDP socket for a TFTP transfer: {e}");
                (None, None)
            }
        };
        let failed = socket.is_none();
        self.transfers.insert(
            id,
            Transfer {
                socket,
                watch,
                file: None,
            },
        );
        if failed {
            self.core.handle_file_error(monotonic(), id, FileError::Io);
            return;
        }
        let root = self.root.clone();
        let inbox = self.inbox.clone();
        let key = CacheKey::new(&path, mode);
        tokio::task::spawn_blocking(move || {
            let result = open_confined(&root, &key.path);
            let _ = inbox.blocking_send(Inbound::Opened { id, key, result });
        });
    }

    fn opened(
        &mut self,
        now: Instant,
        id: TransferId,
        key: CacheKey,
        result: Result<(File, Metadata), FileError>,
    ) {
        if !self.transfers.contains_key(&id) {
            return;
        }
        let (file, meta) = match result {
            Ok(opened) => opened,
            Err(error) => {
                self.core.handle_file_error(now, id, error);
                return;
            }
        };
        let identity = FileIdentity::of(&meta);
        if let Some(bytes) = self.cache.lookup(&key, identity) {
            self.give_file(now, id, bytes);
            return;
        }
        let waiting = self.loading.entry((key.clone(), identity)).or_default();
        waiting.push(id);
        if waiting.len() > 1 {
            return;
        }
        let mode = if key.netascii {
            Mode::Netascii
        } else {
            Mode::Octet
        };
        let octet = self.cache.octet_source(&key.path, identity);
        let inbox = self.inbox.clone();
        debug!(path = %key.path, size = identity.size(), ?mode, "TFTP reading file into the cache");
        tokio::task::spawn_blocking(move || {
            let result = files::load(file, identity, mode, octet);
            let _ = inbox.blocking_send(Inbound::Loaded {
                key,
                identity,
                result,
            });
        });
    }

    fn loaded(
        &mut self,
        now: Instant,
        key: CacheKey,
        identity: FileIdentity,
        result: io::Result<(Bytes, bool)>,
    ) {
        let waiting = self
            .loading
            .remove(&(key.clone(), identity))
            .unwrap_or_default();
        match result {
            Ok((bytes, stable)) => {
                if stable {
                    self.cache.insert(key, identity, bytes.clone());
                } else {
                    debug!(path = %key.path, "TFTP file changed while read: served, not cached");
                }
                for id in waiting {
                    self.give_file(now, id, bytes.clone());
                }
            }
            Err(e) => {
                warn!(path = %key.path, "TFTP cannot read file: {e}");
                for id in waiting {
                    if self.transfers.contains_key(&id) {
                        self.core.handle_file_error(now, id, FileError::Io);
                    }
                }
            }
        }
    }

    fn give_file(&mut self, now: Instant, id: TransferId, bytes: Bytes) {
        let Some(transfer) = self.transfers.get_mut(&id) else {
            return;
        };
        let size = bytes.len() as u64;
        transfer.file = Some(bytes);
        self.core.handle_file_opened(now, id, size);
    }

    /// The transfer `source` names (none for the listener).
    fn transfer_of(&self, source: Source) -> Option<&Transfer<B::Socket, B::Watch>> {
        match source {
            Source::Listener => None,
            Source::Transfer(id) => self.transfers.get(&id),
        }
    }

    /// Send an encoded packet (DATA goes through [`State::send_run`]).
    fn send(&mut self, source: Source, peer: SocketAddr, packet: Packet) {
        let transfer = self.transfer_of(source);
        let socket = transfer
            .and_then(|t| t.socket.as_ref())
            .map_or(&self.listener, |(socket, _)| socket);
        match packet {
            Packet::Encoded(bytes) => self.backend.send(socket, peer, Outgoing::Encoded(bytes)),
            Packet::Data { block, offset, len } => {
                let run = PendingRun {
                    source,
                    peer,
                    first: block,
                    count: 1,
                    blksize: len,
                    offset,
                    len: len as u64,
                };
                self.send_run(run);
            }
        }
    }

    /// Send a run of DATA blocks: one slice of the transfer's file.
    fn send_run(&mut self, run: PendingRun) {
        let transfer = self.transfer_of(run.source);
        let socket = transfer
            .and_then(|t| t.socket.as_ref())
            .map_or(&self.listener, |(socket, _)| socket);
        let payload = transfer.and_then(|t| t.file.as_ref()).and_then(|file| {
            let start = usize::try_from(run.offset).ok()?;
            let end = start.checked_add(usize::try_from(run.len).ok()?)?;
            (end <= file.len()).then(|| file.slice(start..end))
        });
        let Some(payload) = payload else {
            warn!(
                source = ?run.source,
                block = run.first,
                blocks = run.count,
                offset = run.offset,
                len = run.len,
                "TFTP DATA outside its file: not sent"
            );
            return;
        };
        let data = DataRun {
            first: run.first,
            count: run.count,
            blksize: run.blksize,
            payload,
        };
        self.backend.send(socket, run.peer, Outgoing::Data(data));
    }

    fn close(&mut self, id: TransferId) {
        let Some(transfer) = self.transfers.remove(&id) else {
            return;
        };
        if let Some((socket, local)) = transfer.socket {
            self.backend.retire(socket, transfer.watch, local);
        }
    }

    fn event(&mut self, event: TransferEvent) {
        match &event {
            TransferEvent::Started {
                peer,
                path,
                blksize,
                windowsize,
                tsize,
                ..
            } => {
                metrics::record_tftp_started(*blksize, *windowsize);
                info!(%peer, %path, blksize, windowsize, tsize, "TFTP transfer started");
            }
            TransferEvent::Ended {
                peer,
                path,
                outcome,
                ..
            } => {
                self.publish_on_end = true;
                match outcome {
                    Outcome::Completed {
                        bytes,
                        retransmits,
                        duration,
                        ..
                    } => {
                        metrics::record_tftp_completed(*duration);
                        let secs = duration.as_secs_f64();
                        let mbit_s = if secs > 0.0 {
                            (*bytes as f64 * 8.0 / secs / 1e6 * 10.0).round() / 10.0
                        } else {
                            0.0
                        };
                        info!(
                            %peer, %path, bytes, retransmits,
                            duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                            mbit_s,
                            "TFTP transfer completed"
                        );
                    }
                    Outcome::Failed { reason } => {
                        info!(%peer, %path, reason = reason.as_str(), "TFTP transfer failed");
                    }
                    Outcome::SizeQueried => {
                        metrics::record_tftp_size_query();
                        debug!(%peer, %path, "TFTP size query answered (the client ended it after the OACK)");
                    }
                }
            }
            TransferEvent::Refused { peer, reason } => {
                debug!(%peer, reason = reason.as_str(), "TFTP request refused");
            }
        }
        if let Some(events) = &mut self.events {
            events.record(&event);
        }
    }
}

/// A fresh UDP socket on an ephemeral port of the listen address: a transfer's TID.
fn bind_transfer_socket(ip: IpAddr) -> io::Result<UdpSocket> {
    UdpSocket::bind(SocketAddr::new(ip, 0))
}
