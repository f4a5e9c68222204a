//! The uplink driver: runs the [`Session`] core against a real QUIC connection, the store and
//! the services.
//!
//! One tokio task ([`Uplink::run`]) owns the session and loops: execute the session's
//! commands and send its messages, then wait for the session's timer, an input (a connection
//! opened or failed, a message, a finished store operation) or the maintenance tick. Blocking
//! work (LMDB writes with fsync, outbox reads) runs on the blocking pool and reports back as an
//! input, so the loop never blocks.
//!
//! - **Connections** (`conn`): resolve `[control] endpoint`, connect with mutual TLS
//!   ([`tls::uplink_client_config`]: the enrolment certificate, trusting only the enrolment
//!   CA), open the stream; a reader and a writer task move frames. Every attempt has an id, so
//!   results of abandoned attempts are discarded.
//! - **Snapshots**: stored durably in the `sync` database ([`SyncStore::save_snapshot`]), then
//!   served: the DHCP driver gets the new configuration ([`effective_dhcp`]) on its channel and
//!   the HTTP server a new catalog; only then is the generation acknowledged. Snapshots apply
//!   one at a time, in order.
//! - **Outbox**: events are read from the event log after the last sent id, mapped to wire
//!   events (the machine of a transfer found from the lease of its address), limited to
//!   [`BATCH_BYTES`] per batch, and deleted once acknowledged. Every committed append (through
//!   the event log, or a lease event in the DHCP committer's transaction) wakes
//!   [`EventLog::appended`] and is reported to the session ([`Session::handle_recorded`]),
//!   which reads within milliseconds; its poll stays as the fallback.
//! - **Heartbeats**: the session numbers them; the driver fills in the service states
//!   ([`ServiceHealth`]) and metrics (leases and TFTP transfers from
//!   [`metrics::live_gauges`], CPU and memory from `/proc/self`, the outbox depth).
//! - **Maintenance** (every [`MAINTENANCE_INTERVAL`]): refresh the outbox depth (metric
//!   `netbootd_uplink_outbox_depth`), trim the outbox to `[control] max_outbox`
//!   ([`EventLog::trim`]), and record new service errors as `ServiceError` events.
//!
//! State changes are logged once: "connected" when a session is established, "unreachable"
//! once per outage; failed retries are logged at debug level.

pub(crate) mod conn;
pub mod enroll;
pub mod host;
pub mod identity;
pub mod tls;

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ims_proto::{
    EdgeEvent, EdgeMessage, Heartbeat, Hello, MAX_EDGE_FRAME, MacAddr, Metrics, ProtocolVersion,
    SERVICE_UPLINK, ServiceState, Snapshot, encode_frame_with_max,
};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use self::conn::{Opened, Received};
use self::host::CpuMeter;
use self::identity::{Identity, IdentityInfo};
use self::tls::TlsError;
use crate::config::{ControlConfig, DhcpConfig};
use crate::dhcp::UnixTime;
use crate::http::{BootCatalog, HttpState};
use crate::metrics;
use crate::store::events::{EventKind, EventLog, Trimmed};
use crate::store::sync::SyncStore;
use crate::uplink::outbox::to_edge_event;
use crate::uplink::{Command, Effective, ServiceHealth, Session, SessionConfig, effective_dhcp};

/// How often the outbox is measured and trimmed, and service errors recorded.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(5);
/// Most encoded event bytes in one batch (the control plane accepts 1 MiB frames).
pub const BATCH_BYTES: usize = 512 * 1024;
/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// QUIC application close codes.
const CLOSE_NORMAL: u32 = 0;
const CLOSE_ERROR: u32 = 1;
/// Longest the shutdown waits for the connection to close cleanly.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Everything the uplink needs, assembled by `main`.
#[derive(Debug)]
pub struct UplinkParts {
    /// `[control]`.
    pub control: ControlConfig,
    /// The enrolment identity ([`identity::load`]).
    pub identity: Identity,
    /// The configuration file's DHCP settings (what a snapshot is applied to).
    pub base: DhcpConfig,
    /// The snapshot store.
    pub sync: SyncStore,
    /// The event log (the outbox).
    pub events: EventLog,
    /// Where new DHCP configurations go, when DHCP runs.
    pub dhcp_updates: Option<watch::Sender<Arc<DhcpConfig>>>,
    /// The HTTP server's state, when it runs (its catalog is replaced).
    pub http: Option<HttpState>,
    /// Service states for heartbeats.
    pub health: ServiceHealth,
    /// The snapshot loaded from the store at start, if any.
    pub snapshot: Option<Snapshot>,
    /// When the daemon started (for `uptime_s`).
    pub started: Instant,
}

/// The uplink, ready to run. See the module docs.
#[derive(Debug)]
pub struct Uplink {
    parts: UplinkParts,
    info: IdentityInfo,
    client_config: quinn::ClientConfig,
}

impl Uplink {
    /// Check the identity and build the TLS configuration (so a bad key fails the start, not
    /// the first connection).
    ///
    /// # Errors
    /// When the stored certificate or key is unusable.
    pub fn new(parts: UplinkParts) -> Result<Self, TlsError> {
        let identity = &parts.identity;
        let client_config = tls::uplink_client_config(
            &identity.ca_der,
            &identity.cert_der,
            identity.key.clone_key(),
        )?;
        Ok(Self {
            info: identity.info.clone(),
            client_config,
            parts,
        })
    }

    /// Run until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut driver = Driver::new(self, tx);
        let mut maintenance = tokio::time::interval(MAINTENANCE_INTERVAL);
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        metrics::set_uplink_connected(false);
        // Export the counters from 0, so alert rules and dashboards see them before the first
        // event is sent or dropped.
        metrics::record_uplink_events_sent(0);
        metrics::record_outbox_dropped(0);
        info!(
            endpoint = %driver.control.endpoint,
            worker_id = %driver.info.worker_id,
            site = %driver.info.site,
            snapshot = ?driver.session.stored_generation(),
            "uplink to the control plane starting"
        );
        // Appends to the outbox (a phone-home, a finished transfer, a lease) are read at once
        // rather than at the session's next poll.
        let log = driver.events.clone();
        loop {
            driver.pump();
            let sleep_for = driver
                .session
                .poll_timeout()
                .map(|due| due.saturating_sub(driver.now()));
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = tokio::time::sleep(sleep_for.unwrap_or(Duration::from_secs(3600))) => {
                    let now = driver.now();
                    driver.session.handle_timeout(now);
                }
                Some(input) = rx.recv() => driver.handle(input),
                () = log.appended() => {
                    let now = driver.now();
                    driver.session.handle_recorded(now);
                }
                _ = maintenance.tick() => driver.maintain(),
            }
        }
        driver.shutdown().await;
    }
}

/// What the helpers report to the loop.
enum Input {
    Connected {
        id: u64,
        opened: Opened,
    },
    ConnectFailed {
        id: u64,
        reason: String,
    },
    Received {
        id: u64,
        received: Received,
    },
    Outbox(OutboxRead),
    Applied {
        generation: u64,
        effective: Box<Effective>,
    },
    ApplyFailed {
        reason: String,
    },
    Maintained {
        depth: u64,
        trimmed: Trimmed,
    },
}

/// The result of an outbox read.
struct OutboxRead {
    after: u64,
    events: Vec<EdgeEvent>,
    scanned_through: u64,
    more: bool,
    error: Option<String>,
}

/// The open connection.
struct Link {
    id: u64,
    connection: quinn::Connection,
    endpoint: quinn::Endpoint,
    frames: mpsc::UnboundedSender<Vec<u8>>,
}

/// The loop's state.
struct Driver {
    control: ControlConfig,
    info: IdentityInfo,
    client_config: quinn::ClientConfig,
    base: DhcpConfig,
    sync: SyncStore,
    events: EventLog,
    dhcp_updates: Option<watch::Sender<Arc<DhcpConfig>>>,
    http: Option<HttpState>,
    health: ServiceHealth,
    started: Instant,
    session: Session,
    origin: Instant,
    tx: mpsc::UnboundedSender<Input>,
    link: Option<Link>,
    /// Id of the newest connection attempt.
    attempt: u64,
    applying: bool,
    apply_queue: VecDeque<Snapshot>,
    maintaining: bool,
    outbox_depth: u64,
    cpu: CpuMeter,
    last_outbox_error: Option<String>,
    subnets_warned: bool,
}

impl Driver {
    #[allow(clippy::disallowed_methods)]
    fn new(uplink: Uplink, tx: mpsc::UnboundedSender<Input>) -> Self {
        let Uplink {
            parts,
            info,
            client_config,
        } = uplink;
        let origin = Instant::now();
        let config = SessionConfig {
            connect_timeout: CONNECT_TIMEOUT,
            ..SessionConfig::default()
        };
        let session = Session::new(config, jitter_seed(), parts.snapshot, Duration::ZERO);
        Self {
            control: parts.control,
            info,
            client_config,
            base: parts.base,
            sync: parts.sync,
            events: parts.events,
            dhcp_updates: parts.dhcp_updates,
            http: parts.http,
            health: parts.health,
            started: parts.started,
            session,
            origin,
            tx,
            link: None,
            attempt: 0,
            applying: false,
            apply_queue: VecDeque::new(),
            maintaining: false,
            outbox_depth: 0,
            cpu: CpuMeter::new(),
            last_outbox_error: None,
            subnets_warned: false,
        }
    }

    /// Virtual time of the session: since the driver started.
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Send what the session wants sent, do what it asks, until it has nothing more.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(message) = self.session.poll_transmit() {
                progressed = true;
                self.transmit(message);
            }
            while let Some(command) = self.session.poll_command() {
                progressed = true;
                self.execute(command);
            }
            if !progressed {
                break;
            }
        }
    }

    fn transmit(&mut self, message: EdgeMessage) {
        let message = match message {
            EdgeMessage::Heartbeat(mut heartbeat) => {
                self.fill_heartbeat(&mut heartbeat);
                EdgeMessage::Heartbeat(heartbeat)
            }
            other => other,
        };
        let Some(link) = &self.link else {
            debug!(kind = message.kind(), "no connection: message dropped");
            return;
        };
        if let EdgeMessage::Events(batch) = &message {
            metrics::record_uplink_events_sent(batch.batch.len() as u64);
        }
        match encode_frame_with_max(&message, MAX_EDGE_FRAME) {
            Ok(frame) => {
                let _ = link.frames.send(frame.to_vec());
            }
            Err(e) => {
                error!(kind = message.kind(), error = %e, "cannot encode a message for the control plane")
            }
        }
    }

    fn fill_heartbeat(&mut self, heartbeat: &mut Heartbeat) {
        let mut services = self.health.statuses();
        services.entry(SERVICE_UPLINK.to_owned()).or_default().state = ServiceState::Running;
        heartbeat.services = services;
        let gauges = metrics::live_gauges();
        heartbeat.metrics = Metrics {
            active_leases: gauges.active_leases,
            active_transfers: gauges.tftp_active,
            queued_transfers: gauges.tftp_queued,
            cpu_percent: self.cpu.sample(self.started.elapsed()),
            memory_bytes: host::rss_bytes(),
            outbox_depth: self.outbox_depth,
            uptime_s: self.started.elapsed().as_secs(),
        };
    }

    fn execute(&mut self, command: Command) {
        match command {
            Command::Connect => self.connect(),
            Command::Close { reply, reason } => {
                self.attempt += 1; // abandons an attempt under way
                if let Some(link) = self.link.take() {
                    let (code, text) = match &reply {
                        Some(reply) => (CLOSE_ERROR, reply.message.as_str()),
                        None => (CLOSE_NORMAL, reason.as_str()),
                    };
                    let text: String = text.chars().take(200).collect();
                    link.connection.close(code.into(), text.as_bytes());
                }
            }
            Command::Apply(snapshot) => {
                self.apply_queue.push_back(*snapshot);
                self.next_apply();
            }
            Command::ReadOutbox { after, limit } => self.read_outbox(after, limit),
            Command::RemoveOutbox { through } => {
                let events = self.events.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = events.remove_through(through) {
                        error!(through, error = %e, "removing acknowledged events from the outbox failed");
                    }
                });
            }
            Command::Up {
                worker_id,
                site,
                heartbeat_interval,
            } => {
                info!(
                    endpoint = %self.control.endpoint,
                    %worker_id,
                    %site,
                    heartbeat_interval_ms = millis(heartbeat_interval),
                    "connected to the control plane"
                );
                metrics::set_uplink_connected(true);
                self.health.set_state(SERVICE_UPLINK, ServiceState::Running);
            }
            Command::Down { reason, retry_in } => {
                warn!(
                    endpoint = %self.control.endpoint,
                    retry_in_ms = millis(retry_in),
                    "control plane unreachable: {reason}; serving from the stored configuration \
                     and keeping events until it is back"
                );
                metrics::set_uplink_connected(false);
            }
            Command::Retry { reason, retry_in } => {
                debug!(
                    retry_in_ms = millis(retry_in),
                    "uplink attempt failed: {reason}"
                );
            }
            Command::Warn(text) => warn!("uplink: {text}"),
        }
    }

    fn connect(&mut self) {
        self.attempt += 1;
        let id = self.attempt;
        self.session.set_hello(self.hello());
        let endpoint = self.control.endpoint.clone();
        let server_name = self.control.server_name.clone();
        let config = self.client_config.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let input = match conn::connect(&endpoint, &server_name, config, CONNECT_TIMEOUT).await
            {
                Ok(opened) => Input::Connected { id, opened },
                Err(reason) => Input::ConnectFailed { id, reason },
            };
            let _ = tx.send(input);
        });
    }

    fn hello(&self) -> Hello {
        let names: Vec<String> = self
            .base
            .interfaces
            .iter()
            .map(|i| i.name.clone())
            .collect();
        let (addresses, interfaces) = host::addresses_and_interfaces(&names);
        Hello {
            version: ProtocolVersion::CURRENT,
            worker_id: Some(self.info.worker_id.clone()),
            site: Some(self.info.site.clone()),
            software_version: env!("CARGO_PKG_VERSION").to_owned(),
            hostname: host::hostname(),
            addresses,
            interfaces,
            capabilities: Vec::new(),
            snapshot_generation: None,
        }
    }

    fn handle(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Connected { id, opened } => {
                if id != self.attempt {
                    opened.connection.close(CLOSE_NORMAL.into(), b"superseded");
                    return;
                }
                let Opened {
                    endpoint,
                    connection,
                    send,
                    recv,
                } = opened;
                let tx = self.tx.clone();
                tokio::spawn(conn::read_loop(recv, move |received| {
                    tx.send(Input::Received { id, received }).is_ok()
                }));
                let (frames, queue) = mpsc::unbounded_channel();
                let tx = self.tx.clone();
                tokio::spawn(conn::write_loop(send, queue, move |reason| {
                    let _ = tx.send(Input::Received {
                        id,
                        received: Received::Closed(reason),
                    });
                }));
                self.link = Some(Link {
                    id,
                    connection,
                    endpoint,
                    frames,
                });
                self.session.handle_connected(now);
            }
            Input::ConnectFailed { id, reason } => {
                if id == self.attempt {
                    self.session.handle_connect_failed(now, reason);
                }
            }
            Input::Received { id, received } => {
                if self.link.as_ref().is_none_or(|l| l.id != id) {
                    return;
                }
                match received {
                    Received::Message(message) => self.session.handle_message(now, message),
                    Received::Closed(reason) => {
                        if let Some(link) = self.link.take() {
                            link.connection.close(CLOSE_NORMAL.into(), b"");
                        }
                        self.session.handle_closed(now, reason);
                    }
                }
            }
            Input::Outbox(read) => {
                if let Some(e) = read.error {
                    if self.last_outbox_error.as_ref() != Some(&e) {
                        error!("reading the outbox failed: {e}");
                        self.last_outbox_error = Some(e);
                    }
                } else {
                    self.last_outbox_error = None;
                }
                self.session.handle_outbox(
                    now,
                    read.after,
                    read.events,
                    read.scanned_through,
                    read.more,
                );
            }
            Input::Applied {
                generation,
                effective,
            } => {
                self.applying = false;
                self.serve(generation, *effective);
                self.session.handle_applied(now, generation);
                self.next_apply();
            }
            Input::ApplyFailed { reason } => {
                error!(
                    "storing the control plane's snapshot failed: {reason}; still serving the previous one"
                );
                self.applying = false;
                self.apply_queue.clear();
                self.session.handle_apply_failed(now, reason);
            }
            Input::Maintained { depth, trimmed } => {
                self.maintaining = false;
                self.outbox_depth = depth;
                metrics::set_outbox_depth(depth);
                if trimmed.total() > 0 {
                    metrics::record_outbox_dropped(trimmed.total());
                    warn!(
                        renewals = trimmed.renewals,
                        others = trimmed.others,
                        max_outbox = self.control.max_outbox,
                        "outbox full while the control plane is unreachable: dropped the oldest \
                         events (lease renewals first, never a phone-home)"
                    );
                }
            }
        }
    }

    /// Store and serve the next queued snapshot, one at a time.
    fn next_apply(&mut self) {
        if self.applying {
            return;
        }
        let Some(snapshot) = self.apply_queue.pop_front() else {
            return;
        };
        self.applying = true;
        let sync = self.sync.clone();
        let base = self.base.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let input = match sync.save_snapshot(&snapshot) {
                Ok(()) => Input::Applied {
                    generation: snapshot.generation,
                    effective: Box::new(effective_dhcp(&base, &snapshot)),
                },
                Err(e) => Input::ApplyFailed {
                    reason: e.to_string(),
                },
            };
            let _ = tx.send(input);
        });
    }

    /// Serve a stored snapshot: DHCP and HTTP from now on.
    fn serve(&mut self, generation: u64, effective: Effective) {
        let shown = 20;
        for warning in effective.warnings.iter().take(shown) {
            warn!(generation, "snapshot: {warning}");
        }
        if effective.warnings.len() > shown {
            warn!(
                generation,
                "snapshot: {} more problems not shown",
                effective.warnings.len() - shown
            );
        }
        let dhcp = Arc::new(effective.dhcp);
        match &self.dhcp_updates {
            Some(updates) => {
                updates.send_replace(Arc::clone(&dhcp));
            }
            None if !dhcp.subnets.is_empty() && !self.subnets_warned => {
                self.subnets_warned = true;
                warn!(
                    "the control plane's snapshot has subnets, but DHCP is not running (the \
                     file has no [[interface]] or [[subnet]]): restart netbootd to serve them"
                );
            }
            None => {}
        }
        if let Some(http) = &self.http {
            http.set_catalog(BootCatalog::from(&*dhcp));
        }
        info!(
            generation,
            machines = dhcp.machines.len(),
            boot_profiles = dhcp.boot_profiles.len(),
            subnets = dhcp.subnets.len(),
            "serving the control plane's snapshot"
        );
    }

    fn read_outbox(&self, after: u64, limit: usize) {
        let events = self.events.clone();
        let sync = self.sync.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let read = match events.list(after, limit) {
                Ok(list) => batch(after, limit, &list, &sync),
                Err(e) => OutboxRead {
                    after,
                    events: Vec::new(),
                    scanned_through: after,
                    more: false,
                    error: Some(e.to_string()),
                },
            };
            let _ = tx.send(Input::Outbox(read));
        });
    }

    /// Measure and trim the outbox; record new service errors (at most one run at a time).
    fn maintain(&mut self) {
        if self.maintaining {
            return;
        }
        self.maintaining = true;
        let events = self.events.clone();
        let health = self.health.clone();
        let max = self.control.max_outbox;
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let errors: Vec<(UnixTime, EventKind)> = health
                .take_new_errors()
                .into_iter()
                .map(|e| {
                    (
                        UnixTime(u64::try_from(e.at_ms / 1000).unwrap_or(0)),
                        EventKind::ServiceError {
                            service: e.service,
                            message: e.message,
                        },
                    )
                })
                .collect();
            if !errors.is_empty() {
                if let Err(e) = events.append_many(errors) {
                    debug!(error = %e, "cannot record service errors in the outbox");
                }
            }
            let trimmed = events.trim(max).unwrap_or_else(|e| {
                error!(error = %e, "trimming the outbox failed");
                Trimmed::default()
            });
            let depth = events.len().unwrap_or(0);
            let _ = tx.send(Input::Maintained { depth, trimmed });
        });
    }

    async fn shutdown(&mut self) {
        if let Some(link) = self.link.take() {
            link.connection
                .close(CLOSE_NORMAL.into(), b"netbootd stopping");
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, link.endpoint.wait_idle()).await;
        }
        metrics::set_uplink_connected(false);
        info!("uplink stopped");
    }
}

/// Map stored events to a batch: unknown kinds skipped, at most [`BATCH_BYTES`] encoded.
fn batch(
    after: u64,
    limit: usize,
    list: &[crate::store::events::Event],
    sync: &SyncStore,
) -> OutboxRead {
    let mut macs: BTreeMap<IpAddr, Option<MacAddr>> = BTreeMap::new();
    let mut mac_of = |ip: IpAddr| -> Option<MacAddr> {
        *macs.entry(ip).or_insert_with(|| match ip {
            IpAddr::V4(v4) => sync.lease(v4).ok().flatten().map(|l| l.mac),
            IpAddr::V6(_) => None,
        })
    };
    let mut events = Vec::new();
    let mut bytes = 0;
    let mut scanned_through = after;
    let mut truncated = false;
    for stored in list {
        if let Some(event) = to_edge_event(stored, &mut mac_of) {
            let mut encoded = Vec::new();
            let len = match ciborium::into_writer(&event, &mut encoded) {
                Ok(()) => encoded.len(),
                Err(_) => 0,
            };
            if !events.is_empty() && bytes + len > BATCH_BYTES {
                truncated = true;
                break;
            }
            bytes += len;
            events.push(event);
        }
        scanned_through = stored.seq;
    }
    OutboxRead {
        after,
        events,
        scanned_through,
        more: truncated || list.len() >= limit,
        error: None,
    }
}

/// Whole milliseconds, for logs.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A seed for the backoff jitter that differs between edges and restarts.
#[allow(clippy::disallowed_methods)]
fn jitter_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}
