//! Prometheus metrics of one control plane (served at `/metrics`, OpenMetrics text format).
//!
//! Each [`crate::state::AppState`] owns its registry, so several apps in one process (tests)
//! keep separate counts. Metrics:
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `ims_control_http_requests_total` | counter | `method`, `route`, `status` | requests answered |
//! | `ims_control_http_request_duration_seconds` | histogram | `method`, `route` | time to answer |
//! | `ims_control_db_pool_connections` | gauge | | open store connections |
//! | `ims_control_db_pool_idle` | gauge | | idle store connections |
//! | `ims_control_build_info` | gauge (always 1) | `version` | the running version |
//! | `ims_o2ims_registered` | gauge | | 1 once the SMO accepted the O-Cloud registration |
//! | `ims_o2ims_registration_attempts_total` | counter | | registration POSTs sent |
//!
//! and the fleet and certificate gauges of the `fleet` submodule (workers by status, their
//! heartbeats, outboxes and certificates, the uplink CA and server certificates, the HTTPS
//! certificate: `ims_control_https_cert_expiry_timestamp_seconds`), and the O2ims alarm gauges
//! of the `alarms` submodule (`ims_alarms_open{severity,alarm}`,
//! `ims_alarms_unacknowledged{severity}`).
//!
//! `route` is the matched route template (`/api/users/{id}`), or `unmatched` for requests no
//! route matched, so the label set stays bounded; `method` is one of the standard HTTP methods
//! or `other`. The pool, fleet and alarm gauges are read when `/metrics` is scraped.

use std::fmt;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::db::Db;
use crate::ratelimit::Clock;
use crate::state::AppState;

mod alarms;
mod fleet;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DurationLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

type HistogramFamily = Family<DurationLabels, Histogram, fn() -> Histogram>;

/// The registry and the metrics the server updates.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: HistogramFamily,
    pool_connections: Gauge,
    pool_idle: Gauge,
    fleet: fleet::FleetMetrics,
    alarms: alarms::AlarmMetrics,
    clock: Arc<dyn Clock>,
    /// `ims_o2ims_registered`: 1 once the SMO accepted the registration, else 0.
    pub o2ims_registered: Gauge,
    /// `ims_o2ims_registration_attempts_total`: registration POSTs sent.
    pub o2ims_registration_attempts: Counter,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn duration_histogram() -> Histogram {
    // 1 ms … ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    /// A fresh registry; request durations are measured on `clock`.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        // The encoder appends `_total` to counters.
        registry.register(
            "ims_control_http_requests",
            "HTTP requests answered, by method, route and status",
            requests.clone(),
        );
        let durations: HistogramFamily = Family::new_with_constructor(duration_histogram);
        registry.register(
            "ims_control_http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route",
            durations.clone(),
        );
        let pool_connections = Gauge::default();
        registry.register(
            "ims_control_db_pool_connections",
            "Open connections of the store's pool",
            pool_connections.clone(),
        );
        let pool_idle = Gauge::default();
        registry.register(
            "ims_control_db_pool_idle",
            "Idle connections of the store's pool",
            pool_idle.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register(
            "ims_control_build_info",
            "The running version (value 1)",
            build,
        );
        let o2ims_registered = Gauge::default();
        registry.register(
            "ims_o2ims_registered",
            "1 once the SMO accepted the O-Cloud registration, else 0",
            o2ims_registered.clone(),
        );
        let o2ims_registration_attempts = Counter::default();
        registry.register(
            "ims_o2ims_registration_attempts",
            "O-Cloud registration POSTs sent to the SMO",
            o2ims_registration_attempts.clone(),
        );
        let fleet = fleet::FleetMetrics::register(&mut registry);
        let alarms = alarms::AlarmMetrics::register(&mut registry);
        Self {
            registry,
            requests,
            durations,
            pool_connections,
            pool_idle,
            fleet,
            alarms,
            clock,
            o2ims_registered,
            o2ims_registration_attempts,
        }
    }

    /// Counts one answered request.
    pub fn observe(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        let method = method_label(method);
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status: status.to_string(),
            })
            .inc();
        self.durations
            .get_or_create(&DurationLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Records the end of validity of the uplink CA and of the QUIC server certificate (DER);
    /// one that does not parse is left out.
    pub fn set_uplink_certs(&self, ca_der: &[u8], server_der: &[u8]) {
        self.fleet.set_uplink_certs(ca_der, server_der);
    }

    /// Records the end of validity of the HTTPS certificate this process serves (DER, the
    /// first of the chain); one that does not parse is left out.
    pub fn set_https_cert(&self, der: &[u8]) {
        self.fleet.set_https_cert(der);
    }

    /// The metrics in the OpenMetrics text format, with the pool, fleet and alarm gauges read
    /// from `db` now.
    pub async fn render(&self, db: &Db) -> String {
        let fleet_read = self.fleet.refresh(db).await;
        if let Err(e) = self.alarms.refresh(db).await {
            // One count per failed scrape.
            if fleet_read {
                self.fleet.count_store_error();
            }
            tracing::warn!("metrics: cannot count the open alarms in the store: {e}");
        }
        let pool = db.pool();
        self.pool_connections.set(i64::from(pool.size()));
        self.pool_idle
            .set(i64::try_from(pool.num_idle()).unwrap_or(i64::MAX));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("encoding metrics failed: {e}");
        }
        out
    }
}

/// A bounded label for the request method.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware recording every request in [`AppState::metrics`].
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let metrics = &state.metrics;
    let start = metrics.clock.now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let seconds = metrics
        .clock
        .now()
        .saturating_duration_since(start)
        .as_secs_f64();
    metrics.observe(&method, &route, response.status().as_u16(), seconds);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::SystemClock;

    #[tokio::test]
    async fn renders_every_metric() {
        let dir = std::env::temp_dir().join(format!("ims-metrics-{}", std::process::id()));
        let db = Db::open_data_dir(&dir).await.unwrap();
        db.migrate().await.unwrap();
        let m = Metrics::new(Arc::new(SystemClock));
        m.observe(&Method::GET, "/api/users/{id}", 200, 0.003);
        m.observe(&Method::from_bytes(b"BREW").unwrap(), "unmatched", 404, 0.0);
        let text = m.render(&db).await;
        db.close().await;
        let _ = std::fs::remove_dir_all(&dir);
        for needle in [
            "ims_control_http_requests_total{method=\"GET\",route=\"/api/users/{id}\",status=\"200\"} 1",
            "ims_control_http_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"} 1",
            "ims_control_http_request_duration_seconds_bucket{le=\"0.004\",method=\"GET\",route=\"/api/users/{id}\"} 1",
            "ims_control_http_request_duration_seconds_count{method=\"GET\",route=\"/api/users/{id}\"} 1",
            "ims_control_db_pool_connections ",
            "ims_control_db_pool_idle ",
            "ims_control_workers{status=\"active\"} 0",
            "ims_control_uplink_ca_cert_expiry_timestamp_seconds 0",
            "ims_control_metrics_store_errors_total 0",
            "ims_control_https_cert_expiry_timestamp_seconds 0",
            "ims_alarms_open{severity=\"MAJOR\",alarm=\"edge-down\"} 0",
            "ims_alarms_unacknowledged{severity=\"CRITICAL\"} 0",
            &format!(
                "ims_control_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
