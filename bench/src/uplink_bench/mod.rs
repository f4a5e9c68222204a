//! `uplink-bench`: many simulated edges against one `ims-control` uplink (QUIC, mutual TLS).
//!
//! Each edge is one task ([`edge`]) on the caller's Tokio runtime. It makes an ECDSA P-256 key
//! and a CSR, enrols with its own one-time join token (ALPN `ims-enroll/1`, the server verified
//! against the CA whose fingerprint the token carries), connects the uplink with the issued
//! certificate (ALPN `ims-uplink/1`), sends Hello, reads Welcome and the Snapshot, answers
//! SnapshotAck, and then sends a Heartbeat every interval the Welcome announced. The first
//! heartbeat comes at a uniformly random point of the first interval, so the edges spread
//! out. Each HeartbeatAck is timed against its Heartbeat.
//!
//! [`run`]:
//! 1. starts every edge; at most [`Options::concurrency`] enrol or set up at once, the others
//!    wait for a slot (edges already up heartbeat meanwhile);
//! 2. when every set-up has ended (or after [`Options::setup_limit`]) the *steady window*
//!    starts: only heartbeats, for [`Options::duration`];
//! 3. then the edges stop sending, wait up to [`Options::drain`] for outstanding acks, and close
//!    their connections.
//!
//! The [`Report`] counts edges enrolled and connected, times enrolment and uplink set-up, and
//! gives heartbeat round-trip percentiles over the steady window (and over the whole run), and
//! the failures by kind. The control plane's CPU and memory are measured from outside, by
//! `bench/uplink-bench.sh`, which lines its samples up with the window's UNIX timestamps in the
//! report.
//!
//! Round trips are measured in the generator: with thousands of edges on two worker threads
//! they include the generator's own scheduling delay.

pub mod edge;
pub mod report;
pub mod tls;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quinn::{Endpoint, VarInt};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

pub use edge::{EdgeOutcome, Failure};
pub use report::{Frame, Heartbeats, Report};

/// Most edges one run simulates.
pub const MAX_EDGES: usize = 10_000;
/// Longest steady window.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Longest set-up phase.
pub const MAX_SETUP: Duration = Duration::from_secs(600);
/// Most concurrent set-ups.
pub const MAX_CONCURRENCY: usize = 1_024;
/// Most client endpoints (UDP sockets).
pub const MAX_ENDPOINTS: usize = 64;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The control plane's QUIC address.
    pub control: SocketAddr,
    /// One join token per edge (`IMS1.<secret>.<fingerprint>`); the number of edges.
    pub tokens: Vec<String>,
    /// Length of the steady window.
    pub duration: Duration,
    /// Bound of the set-up phase (enrolments and uplink set-ups).
    pub setup_limit: Duration,
    /// Enrolments and set-ups in progress at once.
    pub concurrency: usize,
    /// Client endpoints (UDP sockets) the edges are spread over.
    pub endpoints: usize,
    /// Bound of each handshake and each awaited message during set-up.
    pub step_timeout: Duration,
    /// How long edges wait for outstanding acks after the stop.
    pub drain: Duration,
    /// Host names are this prefix and a 5-digit index (worker ids `<site>-<prefix>00042`).
    pub hostname_prefix: String,
    /// Seed of the first-heartbeat jitter.
    pub seed: u64,
}

impl Options {
    /// Options for `tokens` against `control` with the defaults: 60 s steady window, 300 s
    /// set-up bound, 64 set-ups at once, 4 endpoints, 10 s steps, 2 s drain.
    #[must_use]
    pub fn new(control: SocketAddr, tokens: Vec<String>) -> Self {
        Self {
            control,
            tokens,
            duration: Duration::from_secs(60),
            setup_limit: Duration::from_secs(300),
            concurrency: 64,
            endpoints: 4,
            step_timeout: Duration::from_secs(10),
            drain: Duration::from_secs(2),
            hostname_prefix: "edge-".to_owned(),
            seed: 1,
        }
    }

    /// Checks the bounds.
    ///
    /// # Errors
    /// [`BenchError::Options`] saying which value is out of range.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: String| Err(BenchError::Options(m));
        if self.tokens.is_empty() || self.tokens.len() > MAX_EDGES {
            return bad(format!(
                "{} join tokens given: one per edge, 1 to {MAX_EDGES} (make them with \
                 `ims-control join-token --site NAME --count N`)",
                self.tokens.len()
            ));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return bad(format!(
                "the run lasts {:?}: give 1 to {} seconds",
                self.duration,
                MAX_DURATION.as_secs()
            ));
        }
        if self.setup_limit.is_zero() || self.setup_limit > MAX_SETUP {
            return bad(format!(
                "the set-up bound is {:?}: give 1 to {} seconds",
                self.setup_limit,
                MAX_SETUP.as_secs()
            ));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return bad(format!(
                "concurrency {}: give 1 to {MAX_CONCURRENCY}",
                self.concurrency
            ));
        }
        if !(1..=MAX_ENDPOINTS).contains(&self.endpoints) {
            return bad(format!(
                "{} endpoints: give 1 to {MAX_ENDPOINTS}",
                self.endpoints
            ));
        }
        if self.step_timeout.is_zero() || self.step_timeout > Duration::from_secs(120) {
            return bad(format!(
                "step timeout {:?}: give 1 ms to 120 s",
                self.step_timeout
            ));
        }
        if self.drain > Duration::from_secs(60) {
            return bad(format!("drain {:?}: give at most 60 s", self.drain));
        }
        Ok(())
    }
}

/// Why the run could not proceed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An option is out of range.
    #[error("{0}")]
    Options(String),
    /// A client endpoint could not be bound.
    #[error("cannot bind a UDP socket on {addr} for the simulated edges: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

#[allow(clippy::disallowed_methods)] // the window's wall-clock ends, for the server samples
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Where the edges' sockets bind: the control's loopback address when it is on loopback, else
/// any address of its family.
fn bind_addr(control: SocketAddr) -> SocketAddr {
    let ip = match control.ip() {
        ip if ip.is_loopback() => ip,
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// Runs the edges (call inside a Tokio runtime; the generator's CPU time is the caller's to
/// add).
///
/// # Errors
/// Options out of range, or no UDP socket.
pub async fn run(o: &Options) -> Result<Report, BenchError> {
    o.validate()?;
    let bind = bind_addr(o.control);
    let endpoints = (0..o.endpoints)
        .map(|_| Endpoint::client(bind).map_err(|source| BenchError::Bind { addr: bind, source }))
        .collect::<Result<Vec<_>, _>>()?;
    let ctx = Arc::new(edge::Ctx {
        control: o.control,
        setup_slots: Semaphore::new(o.concurrency),
        step_timeout: o.step_timeout,
        drain: o.drain,
        hostname_prefix: o.hostname_prefix.clone(),
        seed: o.seed,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(o.tokens.len());
    for (i, token) in o.tokens.iter().enumerate() {
        let endpoint = endpoints[i % endpoints.len()].clone();
        tasks.push(tokio::spawn(edge::run(
            ctx.clone(),
            i,
            token.clone(),
            endpoint,
            ready_tx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(ready_tx);

    let setup_deadline = started + o.setup_limit;
    let mut ready = 0;
    while ready < tasks.len() {
        match tokio::time::timeout_at(setup_deadline, ready_rx.recv()).await {
            Ok(Some(())) => ready += 1,
            Ok(None) | Err(_) => break,
        }
    }
    let steady_from = Instant::now();
    let steady_from_unix_ms = unix_ms();
    tokio::time::sleep(o.duration).await;
    let steady_to = Instant::now();
    let steady_to_unix_ms = unix_ms();
    let _ = stop_tx.send(true);

    // Every edge ends within the drain (or a step timeout); the bound covers a stuck one.
    let collect_until = Instant::now() + o.drain + o.step_timeout + Duration::from_secs(5);
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        let abort = task.abort_handle();
        match tokio::time::timeout_at(collect_until, task).await {
            Ok(Ok(outcome)) => outcomes.push(outcome),
            Ok(Err(e)) => outcomes.push(EdgeOutcome {
                failure: Some(Failure {
                    kind: "internal".into(),
                    message: e.to_string(),
                }),
                ..EdgeOutcome::default()
            }),
            Err(_) => {
                abort.abort();
                outcomes.push(EdgeOutcome {
                    failure: Some(Failure {
                        kind: "stuck_at_stop".into(),
                        message: "the edge did not finish after the stop".into(),
                    }),
                    ..EdgeOutcome::default()
                });
            }
        }
    }
    for endpoint in &endpoints {
        endpoint.close(VarInt::from_u32(0), b"bench done");
    }
    for endpoint in &endpoints {
        let _ = tokio::time::timeout(Duration::from_secs(3), endpoint.wait_idle()).await;
    }
    let frame = Frame {
        started,
        steady_from,
        steady_to,
        steady_from_unix_ms,
        steady_to_unix_ms,
        finished: Instant::now(),
    };
    Ok(Report::from_outcomes(&outcomes, &frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_bounded() {
        let addr: SocketAddr = "127.0.0.1:7443".parse().unwrap();
        let o = Options::new(addr, vec!["t".into(); 3]);
        assert!(o.validate().is_ok());
        assert!(Options::new(addr, vec![]).validate().is_err());
        assert!(
            Options::new(addr, vec!["t".into(); MAX_EDGES + 1])
                .validate()
                .is_err()
        );
        let mut long = o.clone();
        long.duration = MAX_DURATION + Duration::from_secs(1);
        assert!(long.validate().is_err());
        let mut wide = o;
        wide.concurrency = 0;
        assert!(wide.validate().is_err());
        assert_eq!(bind_addr(addr), "127.0.0.1:0".parse().unwrap());
        assert_eq!(
            bind_addr("192.0.2.1:7443".parse().unwrap()),
            "0.0.0.0:0".parse().unwrap()
        );
    }
}
