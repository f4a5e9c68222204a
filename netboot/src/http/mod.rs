//! The HTTP boot server: boot files for UEFI HTTP boot and iPXE, per-machine iPXE scripts, and
//! the phone-home endpoint of installed machines.
//!
//! # Routes
//!
//! | request | answer |
//! | --- | --- |
//! | `GET`/`HEAD /{path}` | the file `path` under the root (the `[tftp] root`), streamed |
//! | `GET /boot.ipxe?mac=M`, `GET /boot.ipxe/{M}` | the machine's iPXE script ([`ipxe`]) |
//! | `POST /phone-home/{M}` | records [`EventKind::PhoneHome`] durably, `204` |
//! | `GET /healthz` | `ok` |
//!
//! `M` is a MAC address in any common form (`${net0/mac}` expands to lower-case
//! colon-separated). A file called `boot.ipxe`, `healthz` or under `phone-home/` in the root is
//! shadowed by these routes.
//!
//! # Files
//!
//! The request path is percent-decoded, stripped of leading `/` and normalised with the TFTP
//! rules ([`crate::tftp::path::normalize`]): `..` is refused with `403`, NUL and other control
//! characters and invalid UTF-8 with `400`. The file is then opened with
//! [`crate::io::root::open_confined`], so nothing outside the root is ever read (symlinks leading
//! out, devices and FIFOs are `403`). Responses carry `Content-Length`, `Content-Type`
//! (`text/plain` for `.ipxe`, `.txt`, `.cfg`; otherwise `application/octet-stream`),
//! `Last-Modified`, a strong `ETag` (size and mtime) and `Accept-Ranges: bytes`; a single
//! `Range` gets `206` with `Content-Range`, an unsatisfiable one `416`, several ranges the whole
//! file (RFC 9110 allows ignoring `Range`). `If-None-Match`/`If-Modified-Since` give `304`,
//! `If-Range` is honoured.
//!
//! Bodies are streamed in [`CHUNK`]-byte reads on the blocking pool (`pread`), never buffered
//! whole: memory per download is bounded by one chunk plus socket buffers. At most
//! `max_downloads` file bodies (`GET`, not `HEAD`) are in flight; further requests wait up to the
//! queue timeout ([`DEFAULT_QUEUE_TIMEOUT`]) for a slot, then get `503` with `Retry-After`.
//!
//! # Events and logs
//!
//! With an [`EventLog`], the server records (through a batching writer task, one LMDB commit
//! per burst):
//!
//! * [`EventKind::HttpStarted`] for every file body it starts sending (a `GET` answered `200`
//!   or `206`, after the path was confined and the file opened; refused requests, `304`, `416`
//!   and `HEAD` are not transfers: they are only counted in the metrics);
//! * [`EventKind::HttpCompleted`] for every download that delivered the file's last byte (a
//!   whole-file `200`, or a `206` finishing a resumed download; a range ending before the file
//!   does is neither completed nor failed);
//! * [`EventKind::HttpFailed`] for every body that stopped early, with the bytes sent, the
//!   duration and a reason: `client_closed` (the connection went away), `read_error` or
//!   `file_truncated` (reading the file failed, or it shrank), `server_shutdown` (still
//!   running when the shutdown grace period ran out);
//! * [`EventKind::IpxeScript`] for every script served to a registered machine, and
//!   [`EventKind::PhoneHome`].
//!
//! A download's events are queued in order (started before completed or failed). A phone-home
//! is answered only after its event is durable. Completed and failed downloads and phone-homes
//! are logged at info level.
//!
//! Phone-home from an unregistered MAC is answered `404` and **not** recorded: the endpoint is
//! unauthenticated, and the log is the outbox of registered machines' timelines, so recording
//! anything would let any host on the provisioning network fill the outbox. The request is
//! counted (`netbootd_http_requests_total{route="phone_home",status="404"}`) and logged at debug.
//!
//! # Runtime updates
//!
//! Machines and boot profiles are read from a [`BootCatalog`] held behind a lock in
//! [`HttpState`]; [`HttpState::set_catalog`] swaps it while the server runs (the uplink pushes
//! them from the control plane).
//!
//! # Metrics
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `netbootd_http_requests_total` | counter | `route` (`file`, `ipxe`, `phone_home`, `other`), `status` |
//! | `netbootd_http_bytes_sent_total` | counter | |
//! | `netbootd_http_active_downloads` | gauge | |
//! | `netbootd_http_request_duration_seconds` | histogram | `route` (file downloads: until the last byte) |
//! | `netbootd_http_events_dropped_total` | counter | |
//!
//! The Prometheus recorder renders histograms as summaries unless buckets are registered:
//! register [`REQUEST_DURATION_BUCKETS`] for [`REQUEST_DURATION`] where the recorder is built.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, histogram};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::config::{DhcpConfig, HttpConfig};
use crate::dhcp::UnixTime;
use crate::store::events::{EventKind, EventLog};

mod files;
pub mod ipxe;
mod phone_home;
mod recorder;

#[cfg(test)]
mod tests;

pub use ipxe::BootCatalog;

/// Requests answered, by route and status.
pub const REQUESTS: &str = "netbootd_http_requests_total";
/// File body bytes sent.
pub const BYTES_SENT: &str = "netbootd_http_bytes_sent_total";
/// File bodies being sent now.
pub const ACTIVE_DOWNLOADS: &str = "netbootd_http_active_downloads";
/// Time to answer a request; for file downloads, until the last body byte.
pub const REQUEST_DURATION: &str = "netbootd_http_request_duration_seconds";
/// Events not recorded because the writer's queue was full (or the writer stopped).
pub const EVENTS_DROPPED: &str = "netbootd_http_events_dropped_total";

/// Buckets for [`REQUEST_DURATION`]: 1 ms (a script) to 10 minutes (an installer image on a
/// congested link).
pub const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// How long a download waits for a slot before `503` (see [`HttpState::with_queue_timeout`]).
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes read from a file per blocking `pread`, and the most buffered per download.
pub const CHUNK: usize = 128 * 1024;

/// After shutdown is requested, how long running downloads may continue.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// `Retry-After` (seconds) sent with `503`.
const RETRY_AFTER_SECS: &str = "5";

/// Why the HTTP server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The listen address could not be bound.
    #[error(
        "HTTP boot server {addr}: {source}; change [http] listen in the config (or free the port)"
    )]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// Bind the HTTP boot server's listening socket. Binding before [`serve`] reports a busy port at
/// startup.
///
/// # Errors
/// [`HttpError::Bind`] naming `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Everything the server needs; cheap to clone (shared parts are behind `Arc`s).
#[derive(Clone)]
pub struct HttpState {
    root: Arc<Path>,
    /// Without a trailing `/`.
    public_url: Arc<str>,
    downloads: Arc<Semaphore>,
    queue_timeout: Duration,
    catalog: Arc<RwLock<Arc<BootCatalog>>>,
    events: Option<EventLog>,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState")
            .field("root", &self.root)
            .field("public_url", &self.public_url)
            .field("queue_timeout", &self.queue_timeout)
            .field("events", &self.events.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpState {
    /// State for `http`, serving the machines and boot profiles of `dhcp`, recording into
    /// `events` (without one, phone-home answers `503` and nothing is recorded).
    pub fn new(http: &HttpConfig, dhcp: &DhcpConfig, events: Option<EventLog>) -> Self {
        let permits = http.max_downloads.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            root: http.root.as_path().into(),
            public_url: http.public_url.trim_end_matches('/').into(),
            downloads: Arc::new(Semaphore::new(permits)),
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            catalog: Arc::new(RwLock::new(Arc::new(BootCatalog::from(dhcp)))),
            events,
        }
    }

    /// How long a download waits for a free slot before `503` (default
    /// [`DEFAULT_QUEUE_TIMEOUT`]).
    #[must_use]
    pub fn with_queue_timeout(mut self, timeout: Duration) -> Self {
        self.queue_timeout = timeout;
        self
    }

    /// Replace the machines and boot profiles; requests after this see the new catalog.
    pub fn set_catalog(&self, catalog: BootCatalog) {
        *self.catalog.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(catalog);
    }

    /// The current machines and boot profiles.
    pub fn catalog(&self) -> Arc<BootCatalog> {
        self.catalog
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Per-server state handed to handlers.
#[derive(Clone)]
struct App {
    state: HttpState,
    recorder: Option<recorder::Recorder>,
    /// `true` once shutdown was requested (a download cut then failed because of it).
    stopping: watch::Receiver<bool>,
}

/// Serve HTTP on `listener` until `shutdown` becomes `true` (or its sender is dropped). Running
/// downloads get 10 s to finish; queued events are then flushed to the log.
///
/// # Errors
/// When accepting connections fails fatally.
pub async fn serve(
    state: HttpState,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    describe_metrics();
    let (recorder, writer) = match &state.events {
        Some(log) => {
            let (recorder, writer) = recorder::spawn(log.clone());
            (Some(recorder), Some(writer))
        }
        None => (None, None),
    };
    let app = App {
        state,
        recorder,
        stopping: shutdown.clone(),
    };
    let router = Router::new().fallback(dispatch).with_state(app);

    let mut stop = shutdown.clone();
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    let mut stop = shutdown;
    let result = tokio::select! {
        result = server => result,
        () = async move {
            let _ = stop.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!(
                "HTTP downloads still running {} s after shutdown was requested: stopping anyway",
                SHUTDOWN_GRACE.as_secs()
            );
            Ok(())
        }
    };
    if let Some(writer) = writer {
        writer.finish().await;
    }
    result
}

/// Help texts for the HTTP metrics (no-op without a recorder).
fn describe_metrics() {
    describe_counter!(REQUESTS, "HTTP requests answered, by route and status");
    describe_counter!(BYTES_SENT, Unit::Bytes, "HTTP file body bytes sent");
    describe_gauge!(ACTIVE_DOWNLOADS, "HTTP file bodies being sent now");
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request; for file downloads, until the last byte"
    );
    describe_counter!(
        EVENTS_DROPPED,
        "Events not recorded because the event writer was overloaded"
    );
}

/// Which handler a path goes to; also the `route` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    File,
    Ipxe,
    PhoneHome,
    Other,
}

impl Route {
    fn of(path: &str) -> Self {
        if path == "/boot.ipxe" || path.starts_with("/boot.ipxe/") {
            Self::Ipxe
        } else if path.starts_with("/phone-home/") {
            Self::PhoneHome
        } else if path == "/healthz" {
            Self::Other
        } else {
            Self::File
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Ipxe => "ipxe",
            Self::PhoneHome => "phone_home",
            Self::Other => "other",
        }
    }
}

/// A handler's answer.
struct Handled {
    response: Response,
    /// The body is a download that records [`REQUEST_DURATION`] itself when it ends.
    timed_by_body: bool,
}

impl From<Response> for Handled {
    fn from(response: Response) -> Self {
        Self {
            response,
            timed_by_body: false,
        }
    }
}

async fn dispatch(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let started = monotonic_now();
    // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d.
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let mut route = Route::of(req.uri().path());
    let method = req.method().clone();
    let handled: Handled = match (route, &method) {
        (Route::File, &Method::GET | &Method::HEAD) => files::handle(&app, peer, req).await,
        (Route::Ipxe, &Method::GET | &Method::HEAD) => ipxe::handle(&app, peer, &req).into(),
        (Route::PhoneHome, &Method::POST) => phone_home::handle(&app, peer, req).await.into(),
        (Route::Other, &Method::GET | &Method::HEAD) => text(StatusCode::OK, "ok\n").into(),
        (Route::PhoneHome, _) => {
            route = Route::Other;
            method_not_allowed("POST").into()
        }
        _ => {
            route = Route::Other;
            method_not_allowed("GET, HEAD").into()
        }
    };
    let status = handled.response.status().as_u16().to_string();
    counter!(REQUESTS, "route" => route.as_str(), "status" => status).increment(1);
    if !handled.timed_by_body {
        histogram!(REQUEST_DURATION, "route" => route.as_str())
            .record(started.elapsed().as_secs_f64());
    }
    handled.response
}

/// A `text/plain` response.
fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed: use {allow}\n"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// `503` with `Retry-After`.
fn unavailable(body: impl Into<String>) -> Response {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, body);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    response
}

fn empty(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}

/// Decode `%XX` escapes; `None` for a malformed escape.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Wall-clock now, for event timestamps (this module is a driver: it may read the clock).
#[allow(clippy::disallowed_methods)]
fn unix_now() -> UnixTime {
    UnixTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
    )
}

/// Monotonic now, for durations.
#[allow(clippy::disallowed_methods)]
fn monotonic_now() -> Instant {
    Instant::now()
}

/// Record `kind` without waiting (downloads, scripts); dropped with a metric if the writer is
/// overloaded.
fn record(app: &App, kind: EventKind) {
    if let Some(recorder) = &app.recorder {
        recorder.record(unix_now(), kind);
    }
}
