//! The Prometheus exporter: `GET /metrics` (text exposition format), `GET /healthz` and
//! `GET /readyz`.
//!
//! `/healthz` is a liveness check: 200 `ok` as long as the process answers. `/readyz` is the
//! readiness check: 200 `ready` only once every service the configuration enables (DHCP on all
//! its interfaces, TFTP, HTTP) has opened its sockets and is serving, and 503 with a plain-text
//! line naming what is not ready yet (`not ready: dhcp (opening raw sockets on eth1)`) before
//! that and once shutdown began. The state is a [`Readiness`] the drivers and `main` update.
//!
//! Cores keep plain counters ([`crate::dhcp::Stats`]); drivers copy them here with
//! [`publish_dhcp_stats`] (absolute values, once per loop iteration) and record what only a
//! driver sees (commit latency, batch sizes, failures, send errors) directly. Everything goes
//! through the `metrics` facade into one process-wide Prometheus recorder installed by
//! [`install`]; when no recorder is installed (no `metrics_listen`), recording is a no-op.
//!
//! Metric names are a public interface (dashboards and tests rely on them):
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `netbootd_dhcp_received_total` | counter | `interface` (name or `relay`), `type` |
//! | `netbootd_dhcp_replies_total` | counter | `type` |
//! | `netbootd_dhcp_dropped_total` | counter | `reason` (every reason, from 0) |
//! | `netbootd_dhcp_rate_limited_total` | counter | |
//! | `netbootd_dhcp_active_leases` | gauge | |
//! | `netbootd_dhcp_pool_size` | gauge | `subnet` |
//! | `netbootd_dhcp_pool_used` | gauge | `subnet` |
//! | `netbootd_dhcp_pool_utilisation_ratio` | gauge | `subnet` |
//! | `netbootd_dhcp_lease_commit_seconds` | histogram | |
//! | `netbootd_dhcp_commit_batch_size` | histogram | |
//! | `netbootd_dhcp_commit_failures_total` | counter | |
//! | `netbootd_dhcp_send_errors_total` | counter | `interface` |
//! | `netbootd_build_info` | gauge (1) | `version` |
//! | `netbootd_ready` | gauge (0/1) | |
//! | `netbootd_tftp_active_transfers` | gauge | |
//! | `netbootd_tftp_queued_requests` | gauge | |
//! | `netbootd_tftp_bytes_sent_total` | counter | |
//! | `netbootd_tftp_data_packets_total` | counter | |
//! | `netbootd_tftp_retransmits_total` | counter | |
//! | `netbootd_tftp_transfers_completed_total` | counter | |
//! | `netbootd_tftp_transfers_failed_total` | counter | `reason` (every reason, from 0) |
//! | `netbootd_tftp_requests_refused_total` | counter | `reason` (every reason, from 0) |
//! | `netbootd_tftp_rate_limited_total` | counter | |
//! | `netbootd_tftp_negotiated_blksize` | histogram | |
//! | `netbootd_tftp_negotiated_windowsize` | histogram | |
//! | `netbootd_tftp_transfer_duration_seconds` | histogram | |
//! | `netbootd_tftp_driver` | gauge (1) | `driver` (`uring` or `tokio`) |
//! | `netbootd_tftp_cache_bytes` | gauge | |
//! | `netbootd_tftp_send_errors_total` | counter | |
//! | `netbootd_tftp_events_dropped_total` | counter | |
//! | `netbootd_uplink_connected` | gauge (0/1) | |
//! | `netbootd_uplink_outbox_depth` | gauge | |
//! | `netbootd_uplink_events_sent_total` | counter | |
//! | `netbootd_uplink_outbox_dropped_total` | counter | |
//!
//! The uplink's heartbeats report some of these gauges too; [`live_gauges`] reads the values
//! last published, whether or not a recorder is installed.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::dhcp::server::PoolUsage;
use crate::dhcp::{DropReason, IngressLabel, Stats};
use crate::readiness::Readiness;

/// Requests received, by interface and message type.
pub const RECEIVED: &str = "netbootd_dhcp_received_total";
/// Replies sent (queued by the core), by message type.
pub const REPLIES: &str = "netbootd_dhcp_replies_total";
/// Requests dropped, by reason.
pub const DROPPED: &str = "netbootd_dhcp_dropped_total";
/// Messages dropped because their client MAC was over its rate limit.
pub const RATE_LIMITED: &str = "netbootd_dhcp_rate_limited_total";
/// Leases bound now.
pub const ACTIVE_LEASES: &str = "netbootd_dhcp_active_leases";
/// Dynamic addresses per subnet.
pub const POOL_SIZE: &str = "netbootd_dhcp_pool_size";
/// Dynamic addresses in use per subnet.
pub const POOL_USED: &str = "netbootd_dhcp_pool_used";
/// `used / size` per subnet.
pub const POOL_UTILISATION: &str = "netbootd_dhcp_pool_utilisation_ratio";
/// Time to commit one group of lease writes durably.
pub const COMMIT_SECONDS: &str = "netbootd_dhcp_lease_commit_seconds";
/// Store operations per commit.
pub const COMMIT_BATCH_SIZE: &str = "netbootd_dhcp_commit_batch_size";
/// Commits that failed (their replies were not sent).
pub const COMMIT_FAILURES: &str = "netbootd_dhcp_commit_failures_total";
/// Replies that could not be transmitted, by interface.
pub const SEND_ERRORS: &str = "netbootd_dhcp_send_errors_total";
/// Always 1; the `version` label carries the build.
pub const BUILD_INFO: &str = "netbootd_build_info";
/// 1 while `/readyz` answers 200 (every enabled service serving), else 0.
pub const READY: &str = "netbootd_ready";

/// TFTP requests dropped because their client address was over its rate limit.
pub const TFTP_RATE_LIMITED: &str = "netbootd_tftp_rate_limited_total";
/// TFTP transfers running.
pub const TFTP_ACTIVE: &str = "netbootd_tftp_active_transfers";
/// TFTP requests waiting for a transfer slot.
pub const TFTP_QUEUED: &str = "netbootd_tftp_queued_requests";
/// DATA payload bytes sent (retransmissions included).
pub const TFTP_BYTES_SENT: &str = "netbootd_tftp_bytes_sent_total";
/// DATA packets sent (retransmissions included).
pub const TFTP_DATA_PACKETS: &str = "netbootd_tftp_data_packets_total";
/// DATA packets sent again.
pub const TFTP_RETRANSMITS: &str = "netbootd_tftp_retransmits_total";
/// Transfers that delivered the whole file.
pub const TFTP_COMPLETED: &str = "netbootd_tftp_transfers_completed_total";
/// Transfers that ended without delivering the file, by reason.
pub const TFTP_FAILED: &str = "netbootd_tftp_transfers_failed_total";
/// Requests refused before a transfer started, by reason.
pub const TFTP_REFUSED: &str = "netbootd_tftp_requests_refused_total";
/// Block size of each started transfer.
pub const TFTP_BLKSIZE: &str = "netbootd_tftp_negotiated_blksize";
/// Window size of each started transfer.
pub const TFTP_WINDOWSIZE: &str = "netbootd_tftp_negotiated_windowsize";
/// Duration of each completed transfer.
pub const TFTP_DURATION: &str = "netbootd_tftp_transfer_duration_seconds";
/// Always 1; the `driver` label says which TFTP driver runs.
pub const TFTP_DRIVER: &str = "netbootd_tftp_driver";
/// Bytes of boot files held in the TFTP file cache.
pub const TFTP_CACHE_BYTES: &str = "netbootd_tftp_cache_bytes";
/// TFTP datagrams that could not be sent.
pub const TFTP_SEND_ERRORS: &str = "netbootd_tftp_send_errors_total";
/// TFTP size queries: the client ended the transfer after an OACK answering `tsize` (UEFI).
pub const TFTP_SIZE_QUERIES: &str = "netbootd_tftp_size_queries_total";
/// TFTP events not written to the event log because its queue was full.
pub const TFTP_EVENTS_DROPPED: &str = "netbootd_tftp_events_dropped_total";

/// 1 while the uplink session with the control plane is established, else 0.
pub const UPLINK_CONNECTED: &str = "netbootd_uplink_connected";
/// Events waiting in the outbox (the event log) for the control plane.
pub const UPLINK_OUTBOX_DEPTH: &str = "netbootd_uplink_outbox_depth";
/// Events sent to the control plane (resends included).
pub const UPLINK_EVENTS_SENT: &str = "netbootd_uplink_events_sent_total";
/// Events dropped from a full outbox (oldest lease renewals first, never a phone-home).
pub const UPLINK_OUTBOX_DROPPED: &str = "netbootd_uplink_outbox_dropped_total";

/// Buckets of [`TFTP_BLKSIZE`]: the sizes firmware and clients commonly ask for, and the MTU
/// fits (1428/1432 with tunnels, 1468 Ethernet, 8968 jumbo frames).
const TFTP_BLKSIZE_BUCKETS: &[f64] = &[
    512.0, 1024.0, 1408.0, 1428.0, 1432.0, 1456.0, 1468.0, 2048.0, 4096.0, 8192.0, 8968.0, 16384.0,
    32768.0, 65464.0,
];
/// Buckets of [`TFTP_WINDOWSIZE`]: powers of two.
const TFTP_WINDOWSIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
/// Buckets of [`TFTP_DURATION`]: from a small script (10 ms) to a large image on a slow link.
const TFTP_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Buckets of [`COMMIT_SECONDS`]: from 100 µs (page cache, no fsync) to 2.5 s (a stalled disk).
const COMMIT_SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Buckets of [`COMMIT_BATCH_SIZE`]: powers of two up to a storm's worth.
const COMMIT_BATCH_SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// How often histograms are drained into their buckets when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The recorder could not be built.
    #[error("building the Prometheus recorder: {0}")]
    Build(#[from] metrics_exporter_prometheus::BuildError),
    /// Another metrics recorder is already installed in this process.
    #[error("another metrics recorder is already installed in this process")]
    RecorderTaken,
    /// The listen address could not be bound.
    #[error(
        "metrics listener {addr}: {source}; change metrics_listen in the config (or free the port)"
    )]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The HTTP server failed while running.
    #[error("metrics listener {addr}: {source}")]
    Serve {
        /// The configured address.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Install the process-wide Prometheus recorder (once; later calls return the same handle),
/// describe every metric, export every drop reason at 0 and set `netbootd_build_info`.
///
/// # Errors
/// When another recorder was installed first, or the recorder cannot be built.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    let mut slot = HANDLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = slot.as_ref() {
        return Ok(handle.clone());
    }
    let recorder = builder()?.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| MetricsError::RecorderTaken)?;
    describe();
    *slot = Some(handle.clone());
    Ok(handle)
}

/// The recorder's configuration: histogram buckets per metric.
pub(crate) fn builder() -> Result<PrometheusBuilder, MetricsError> {
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(COMMIT_SECONDS.into()), COMMIT_SECONDS_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(COMMIT_BATCH_SIZE.into()),
            COMMIT_BATCH_SIZE_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(TFTP_BLKSIZE.into()), TFTP_BLKSIZE_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(TFTP_WINDOWSIZE.into()),
            TFTP_WINDOWSIZE_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(TFTP_DURATION.into()), TFTP_DURATION_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(crate::http::REQUEST_DURATION.into()),
            crate::http::REQUEST_DURATION_BUCKETS,
        )?)
}

/// Help texts, and the series that must exist from the start.
fn describe() {
    describe_counter!(
        RECEIVED,
        "DHCP messages received, by interface (or relay) and type"
    );
    describe_counter!(REPLIES, "DHCP replies sent, by type");
    describe_counter!(DROPPED, "DHCP packets dropped without a reply, by reason");
    describe_counter!(
        RATE_LIMITED,
        "DHCP messages dropped because their client MAC was over its rate limit"
    );
    describe_counter!(
        TFTP_RATE_LIMITED,
        "TFTP requests dropped because their client address was over its rate limit"
    );
    describe_gauge!(ACTIVE_LEASES, "Leases currently bound");
    describe_gauge!(POOL_SIZE, "Dynamic addresses in the subnet's range");
    describe_gauge!(
        POOL_USED,
        "Dynamic addresses in use (bound, offered or declined)"
    );
    describe_gauge!(
        POOL_UTILISATION,
        "Used / size of the subnet's dynamic range"
    );
    describe_histogram!(
        COMMIT_SECONDS,
        Unit::Seconds,
        "Time to commit one group of lease writes durably (one fsync)"
    );
    describe_histogram!(COMMIT_BATCH_SIZE, "Store operations per lease commit");
    describe_counter!(
        COMMIT_FAILURES,
        "Lease commits that failed; their ACKs were not sent"
    );
    describe_counter!(
        SEND_ERRORS,
        "Replies that could not be transmitted, by interface"
    );
    describe_gauge!(BUILD_INFO, "Build information; always 1");
    describe_gauge!(
        READY,
        "1 while every enabled service (DHCP, TFTP, HTTP) is serving (/readyz answers 200)"
    );
    describe_gauge!(TFTP_ACTIVE, "TFTP transfers running");
    describe_gauge!(TFTP_QUEUED, "TFTP requests waiting for a transfer slot");
    describe_counter!(
        TFTP_BYTES_SENT,
        Unit::Bytes,
        "TFTP DATA payload bytes sent, retransmissions included"
    );
    describe_counter!(
        TFTP_DATA_PACKETS,
        "TFTP DATA packets sent, retransmissions included"
    );
    describe_counter!(TFTP_RETRANSMITS, "TFTP DATA packets sent again");
    describe_counter!(
        TFTP_COMPLETED,
        "TFTP transfers that delivered the whole file"
    );
    describe_counter!(
        TFTP_FAILED,
        "TFTP transfers that ended without delivering the file, by reason"
    );
    describe_counter!(
        TFTP_REFUSED,
        "TFTP requests refused before a transfer started, by reason"
    );
    describe_histogram!(
        TFTP_BLKSIZE,
        Unit::Bytes,
        "Block size of each TFTP transfer"
    );
    describe_histogram!(TFTP_WINDOWSIZE, "Window size of each TFTP transfer");
    describe_histogram!(
        TFTP_DURATION,
        Unit::Seconds,
        "Duration of each completed TFTP transfer, from request to final ACK"
    );
    describe_gauge!(
        TFTP_DRIVER,
        "The TFTP driver running (label driver); always 1"
    );
    describe_gauge!(
        TFTP_CACHE_BYTES,
        Unit::Bytes,
        "Bytes of boot files held in the TFTP file cache"
    );
    describe_counter!(TFTP_SEND_ERRORS, "TFTP datagrams that could not be sent");
    describe_counter!(
        TFTP_SIZE_QUERIES,
        "TFTP size queries: transfers the client ended after an OACK answering tsize"
    );
    describe_counter!(
        TFTP_EVENTS_DROPPED,
        "TFTP events not written to the event log because its queue was full"
    );
    describe_gauge!(
        UPLINK_CONNECTED,
        "1 while the uplink session with the control plane is established"
    );
    describe_gauge!(
        UPLINK_OUTBOX_DEPTH,
        "Events waiting in the outbox for the control plane"
    );
    describe_counter!(
        UPLINK_EVENTS_SENT,
        "Events sent to the control plane, resends included"
    );
    describe_counter!(
        UPLINK_OUTBOX_DROPPED,
        "Events dropped from a full outbox (oldest lease renewals first, never a phone-home)"
    );
    for reason in DropReason::ALL {
        counter!(DROPPED, "reason" => reason.as_str()).absolute(0);
    }
    counter!(COMMIT_FAILURES).absolute(0);
    counter!(RATE_LIMITED).absolute(0);
    counter!(TFTP_RATE_LIMITED).absolute(0);
    gauge!(ACTIVE_LEASES).set(0.0);
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Copy the DHCP core's counters (absolute values; cheap enough once per loop iteration).
pub fn publish_dhcp_stats(stats: &Stats) {
    for ((ingress, message_type), n) in &stats.received {
        let interface = match ingress {
            IngressLabel::Interface(name) => name.clone(),
            IngressLabel::Relay => "relay".to_owned(),
        };
        counter!(RECEIVED, "interface" => interface, "type" => message_type.as_str()).absolute(*n);
    }
    for (message_type, n) in &stats.replies {
        counter!(REPLIES, "type" => message_type.as_str()).absolute(*n);
    }
    for (reason, n) in &stats.drops {
        counter!(DROPPED, "reason" => reason.as_str()).absolute(*n);
    }
    counter!(RATE_LIMITED).absolute(stats.rate_limited);
}

/// The gauges last published, for the uplink's heartbeats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveGauges {
    /// Leases bound ([`ACTIVE_LEASES`]).
    pub active_leases: u64,
    /// TFTP transfers running ([`TFTP_ACTIVE`]).
    pub tftp_active: u64,
    /// TFTP requests waiting for a slot ([`TFTP_QUEUED`]).
    pub tftp_queued: u64,
}

static LIVE_ACTIVE_LEASES: AtomicU64 = AtomicU64::new(0);
static LIVE_TFTP_ACTIVE: AtomicU64 = AtomicU64::new(0);
static LIVE_TFTP_QUEUED: AtomicU64 = AtomicU64::new(0);

/// The values last given to [`publish_dhcp_gauges`] and [`publish_tftp_stats`] (0 before).
pub fn live_gauges() -> LiveGauges {
    LiveGauges {
        active_leases: LIVE_ACTIVE_LEASES.load(Ordering::Relaxed),
        tftp_active: LIVE_TFTP_ACTIVE.load(Ordering::Relaxed),
        tftp_queued: LIVE_TFTP_QUEUED.load(Ordering::Relaxed),
    }
}

/// Set the lease and pool gauges.
pub fn publish_dhcp_gauges(active_leases: usize, pools: &[PoolUsage]) {
    LIVE_ACTIVE_LEASES.store(active_leases as u64, Ordering::Relaxed);
    gauge!(ACTIVE_LEASES).set(active_leases as f64);
    for pool in pools {
        let subnet = pool.subnet.to_string();
        let ratio = if pool.size == 0 {
            0.0
        } else {
            pool.used as f64 / pool.size as f64
        };
        gauge!(POOL_SIZE, "subnet" => subnet.clone()).set(pool.size as f64);
        gauge!(POOL_USED, "subnet" => subnet.clone()).set(pool.used as f64);
        gauge!(POOL_UTILISATION, "subnet" => subnet).set(ratio);
    }
}

/// Record one successful lease commit of `ops` store operations that took `elapsed`.
pub fn record_commit(elapsed: Duration, ops: usize) {
    histogram!(COMMIT_SECONDS).record(elapsed.as_secs_f64());
    histogram!(COMMIT_BATCH_SIZE).record(ops as f64);
}

/// Record a failed lease commit.
pub fn record_commit_failure() {
    counter!(COMMIT_FAILURES).increment(1);
}

/// Record a reply that could not be sent on `interface` (a name, or `relay`).
pub fn record_send_error(interface: &str) {
    counter!(SEND_ERRORS, "interface" => interface.to_owned()).increment(1);
}

/// Mark the TFTP server as running on `driver` (`uring` or `tokio`) and export every failure
/// and refusal reason at 0, so dashboards see the series before the first failure.
pub fn tftp_started(driver: &'static str) {
    gauge!(TFTP_DRIVER, "driver" => driver).set(1.0);
    for reason in crate::tftp::FailReason::ALL {
        counter!(TFTP_FAILED, "reason" => reason.as_str()).absolute(0);
        counter!(TFTP_REFUSED, "reason" => reason.as_str()).absolute(0);
    }
    counter!(TFTP_SEND_ERRORS).absolute(0);
    counter!(TFTP_SIZE_QUERIES).absolute(0);
}

/// Copy the TFTP core's counters and gauges (absolute values), and the cache size.
pub fn publish_tftp_stats(
    stats: &crate::tftp::Stats,
    active_transfers: usize,
    queued_requests: usize,
    cache_bytes: u64,
) {
    LIVE_TFTP_ACTIVE.store(active_transfers as u64, Ordering::Relaxed);
    LIVE_TFTP_QUEUED.store(queued_requests as u64, Ordering::Relaxed);
    gauge!(TFTP_ACTIVE).set(active_transfers as f64);
    gauge!(TFTP_QUEUED).set(queued_requests as f64);
    gauge!(TFTP_CACHE_BYTES).set(cache_bytes as f64);
    counter!(TFTP_BYTES_SENT).absolute(stats.bytes_sent);
    counter!(TFTP_DATA_PACKETS).absolute(stats.data_packets_sent);
    counter!(TFTP_RETRANSMITS).absolute(stats.retransmitted_packets);
    counter!(TFTP_COMPLETED).absolute(stats.completed);
    counter!(TFTP_RATE_LIMITED).absolute(stats.rate_limited);
    for (reason, n) in &stats.failed {
        counter!(TFTP_FAILED, "reason" => reason.as_str()).absolute(*n);
    }
    for (reason, n) in &stats.refused {
        counter!(TFTP_REFUSED, "reason" => reason.as_str()).absolute(*n);
    }
}

/// Record the options of a started TFTP transfer.
pub fn record_tftp_started(blksize: u16, windowsize: u16) {
    histogram!(TFTP_BLKSIZE).record(f64::from(blksize));
    histogram!(TFTP_WINDOWSIZE).record(f64::from(windowsize));
}

/// Record the duration of a completed TFTP transfer.
pub fn record_tftp_completed(duration: Duration) {
    histogram!(TFTP_DURATION).record(duration.as_secs_f64());
}

/// Record a TFTP size query (the client ended the transfer after the OACK).
pub fn record_tftp_size_query() {
    counter!(TFTP_SIZE_QUERIES).increment(1);
}

/// Record a TFTP datagram that could not be sent.
pub fn record_tftp_send_error() {
    counter!(TFTP_SEND_ERRORS).increment(1);
}

/// Record TFTP events dropped because the event log could not keep up.
pub fn record_tftp_events_dropped(n: u64) {
    counter!(TFTP_EVENTS_DROPPED).increment(n);
}

/// Whether every enabled service is serving (see [`Readiness`]).
pub fn set_ready(ready: bool) {
    gauge!(READY).set(if ready { 1.0 } else { 0.0 });
}

/// Whether the uplink session is established.
pub fn set_uplink_connected(connected: bool) {
    gauge!(UPLINK_CONNECTED).set(if connected { 1.0 } else { 0.0 });
}

/// Events waiting in the outbox.
pub fn set_outbox_depth(depth: u64) {
    gauge!(UPLINK_OUTBOX_DEPTH).set(depth as f64);
}

/// Events sent to the control plane.
pub fn record_uplink_events_sent(n: u64) {
    counter!(UPLINK_EVENTS_SENT).increment(n);
}

/// Events dropped from a full outbox.
pub fn record_outbox_dropped(n: u64) {
    counter!(UPLINK_OUTBOX_DROPPED).increment(n);
}

/// `GET /readyz`: 200 `ready` or 503 `not ready: …` (see the module docs).
fn readyz(readiness: &Readiness) -> axum::response::Response {
    match readiness.check() {
        Ok(()) => "ready\n".into_response(),
        Err(waiting) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {waiting}\n"),
        )
            .into_response(),
    }
}

/// The exporter's routes: `GET /metrics`, `GET /healthz` and `GET /readyz` (from `readiness`).
pub fn router(handle: PrometheusHandle, readiness: Readiness) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        handle.render(),
                    )
                        .into_response()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move { readyz(&readiness) }
            }),
        )
}

/// Bind `addr` and return the server future: it serves [`router`] (with `readiness`) until `shutdown` completes,
/// and runs the recorder's upkeep meanwhile. Binding happens here, so a busy port is reported at
/// startup rather than when the future is first polled.
///
/// # Errors
/// [`MetricsError::Bind`] when `addr` cannot be bound.
pub async fn bind(
    addr: SocketAddr,
    handle: PrometheusHandle,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = Result<(), MetricsError>>), MetricsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let upkeep = handle.clone();
    let serve = async move {
        let upkeep_task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
        let result = axum::serve(listener, router(handle, readiness))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| MetricsError::Serve { addr, source });
        upkeep_task.abort();
        result
    };
    Ok((local, serve))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpStream};

    use ipnet::Ipv4Net;

    use super::*;
    use crate::dhcp::MessageType;

    /// The metrics listener on a free loopback port, served from a thread of its own.
    pub(crate) struct TestServer {
        /// Where it listens.
        pub(crate) addr: SocketAddr,
        stop: tokio::sync::oneshot::Sender<()>,
        thread: std::thread::JoinHandle<Result<(), MetricsError>>,
    }

    impl TestServer {
        /// Bind and serve `handle`'s metrics with `readiness`.
        pub(crate) fn start(handle: PrometheusHandle, readiness: Readiness) -> Self {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let (addr, serve) = rt
                .block_on(bind(
                    SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                    handle,
                    readiness,
                    async move {
                        let _ = stopped.await;
                    },
                ))
                .expect("bind");
            let thread = std::thread::spawn(move || rt.block_on(serve));
            Self { addr, stop, thread }
        }

        /// Shut the listener down gracefully and check it ended without an error.
        pub(crate) fn stop(self) {
            self.stop.send(()).expect("shutdown");
            self.thread.join().expect("join").expect("serve");
        }
    }

    /// `GET path` over a fresh connection: the whole response, head and body.
    pub(crate) fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).expect("connect");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }

    #[test]
    fn serves_every_metric_name_and_healthz() {
        let global = install().expect("install");
        assert!(install().is_ok(), "install is idempotent");
        drop(global);

        // Record into a recorder of its own: other tests running in parallel record into the
        // global one (commits, send errors), which would make exact counts flaky.
        let recorder = builder().expect("builder").build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();

            let mut stats = Stats::default();
            stats.received.insert(
                (
                    IngressLabel::Interface("eth9".into()),
                    MessageType::Discover,
                ),
                7,
            );
            stats
                .received
                .insert((IngressLabel::Relay, MessageType::Request), 3);
            stats.replies.insert(MessageType::Offer, 5);
            stats.drops.insert(DropReason::UnknownClient, 2);
            stats.rate_limited = 9;
            publish_dhcp_stats(&stats);
            publish_dhcp_gauges(
                4,
                &[PoolUsage {
                    subnet: Ipv4Net::new(Ipv4Addr::new(10, 1, 0, 0), 24).expect("net"),
                    size: 100,
                    used: 25,
                }],
            );
            record_commit(Duration::from_millis(2), 17);
            record_commit_failure();
            record_send_error("eth9");
        });

        let server = TestServer::start(handle, Readiness::default());
        let addr = server.addr;

        let health = get(addr, "/healthz");
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
        let ready = get(addr, "/readyz");
        assert!(
            ready.starts_with("HTTP/1.1 200"),
            "nothing announced: {ready}"
        );
        assert!(ready.ends_with("\r\n\r\nready\n"), "{ready}");

        let body = get(addr, "/metrics");
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        for line in [
            "netbootd_dhcp_received_total{interface=\"eth9\",type=\"discover\"} 7",
            "netbootd_dhcp_received_total{interface=\"relay\",type=\"request\"} 3",
            "netbootd_dhcp_replies_total{type=\"offer\"} 5",
            "netbootd_dhcp_dropped_total{reason=\"unknown_mac\"} 2",
            "netbootd_dhcp_rate_limited_total 9",
            "netbootd_dhcp_dropped_total{reason=\"pool_exhausted\"} 0",
            "netbootd_dhcp_dropped_total{reason=\"quarantined\"} 0",
            "netbootd_dhcp_active_leases 4",
            "netbootd_dhcp_pool_size{subnet=\"10.1.0.0/24\"} 100",
            "netbootd_dhcp_pool_used{subnet=\"10.1.0.0/24\"} 25",
            "netbootd_dhcp_pool_utilisation_ratio{subnet=\"10.1.0.0/24\"} 0.25",
            "netbootd_dhcp_lease_commit_seconds_bucket{le=\"0.0025\"} 1",
            "netbootd_dhcp_lease_commit_seconds_count 1",
            "netbootd_dhcp_commit_batch_size_bucket{le=\"32\"} 1",
            "netbootd_dhcp_commit_batch_size_bucket{le=\"16\"} 0",
            "netbootd_dhcp_commit_failures_total 1",
            "netbootd_dhcp_send_errors_total{interface=\"eth9\"} 1",
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "missing {line:?} in\n{body}"
            );
        }
        let version = format!(
            "netbootd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(body.lines().any(|l| l == version), "{body}");

        let missing = get(addr, "/nope");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

        server.stop();
    }

    #[test]
    fn tftp_metrics_are_rendered() {
        use crate::tftp::FailReason;

        // A recorder of its own: the global one is shared with tests running in parallel.
        let recorder = builder().expect("builder").build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            tftp_started("tokio");
            let mut stats = crate::tftp::Stats {
                bytes_sent: 123_456,
                data_packets_sent: 90,
                retransmitted_packets: 4,
                completed: 3,
                rate_limited: 6,
                ..crate::tftp::Stats::default()
            };
            stats.failed.insert(FailReason::Timeout, 2);
            stats.refused.insert(FailReason::BadPath, 5);
            publish_tftp_stats(&stats, 7, 11, 30 << 20);
            record_tftp_started(1468, 16);
            record_tftp_completed(Duration::from_millis(700));
            record_tftp_send_error();
        });
        let body = handle.render();
        for line in [
            "netbootd_tftp_driver{driver=\"tokio\"} 1",
            "netbootd_tftp_active_transfers 7",
            "netbootd_tftp_queued_requests 11",
            "netbootd_tftp_cache_bytes 31457280",
            "netbootd_tftp_bytes_sent_total 123456",
            "netbootd_tftp_data_packets_total 90",
            "netbootd_tftp_retransmits_total 4",
            "netbootd_tftp_transfers_completed_total 3",
            "netbootd_tftp_rate_limited_total 6",
            "netbootd_tftp_transfers_failed_total{reason=\"timeout\"} 2",
            "netbootd_tftp_transfers_failed_total{reason=\"not_found\"} 0",
            "netbootd_tftp_requests_refused_total{reason=\"bad_path\"} 5",
            "netbootd_tftp_requests_refused_total{reason=\"busy\"} 0",
            "netbootd_tftp_negotiated_blksize_bucket{le=\"1468\"} 1",
            "netbootd_tftp_negotiated_blksize_bucket{le=\"1456\"} 0",
            "netbootd_tftp_negotiated_windowsize_bucket{le=\"16\"} 1",
            "netbootd_tftp_negotiated_windowsize_bucket{le=\"8\"} 0",
            "netbootd_tftp_transfer_duration_seconds_bucket{le=\"1\"} 1",
            "netbootd_tftp_transfer_duration_seconds_bucket{le=\"0.5\"} 0",
            "netbootd_tftp_send_errors_total 1",
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "missing {line:?} in\n{body}"
            );
        }
    }
}
