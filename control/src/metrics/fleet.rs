//! Fleet and certificate metrics: the edges as the store knows them, read when `/metrics` is
//! scraped, and the expiry of the uplink's certificates.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `ims_control_workers` | gauge | `status` | workers by shown status (`active`, `inactive`, `error`), and `revoked` ones |
//! | `ims_control_worker_last_heartbeat_timestamp_seconds` | gauge | `worker_id`, `site` | when each (unrevoked) worker last sent a heartbeat |
//! | `ims_control_worker_outbox_depth` | gauge | `worker_id`, `site` | events waiting in its outbox, as its last heartbeat said |
//! | `ims_control_worker_cert_expiry_timestamp_seconds` | gauge | `worker_id`, `site` | end of validity of its newest unrevoked certificate |
//! | `ims_control_uplink_ca_cert_expiry_timestamp_seconds` | gauge | | end of validity of the uplink CA |
//! | `ims_control_uplink_server_cert_expiry_timestamp_seconds` | gauge | | end of validity of this process's QUIC server certificate |
//! | `ims_control_https_cert_expiry_timestamp_seconds` | gauge | | end of validity of the HTTPS certificate this process serves (`--tls-cert`, first of the chain); 0 over plain HTTP |
//! | `ims_control_metrics_store_errors_total` | counter | | scrapes whose store queries failed (the fleet and alarm gauges kept their last values) |
//!
//! Every replica on one database reports the same fleet values: aggregate them with `max by`.
//! Timestamps are Unix seconds, so `x - time()` is the time left. The uplink certificate gauges
//! are 0 until the uplink server has started; the HTTPS one is set when the certificate is
//! loaded at start (ims-control does not reload it: a new certificate needs a restart).

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sqlx::Row;

use crate::db::{Db, now_ms};
use crate::model::WorkerStatus;
use crate::store::workers::shown_status;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WorkerLabels {
    worker_id: String,
    site: String,
}

/// The `status` label of revoked workers.
const REVOKED: &str = "revoked";

/// The fleet and certificate gauges of one registry.
#[derive(Debug, Default)]
pub(crate) struct FleetMetrics {
    workers: Family<StatusLabels, Gauge>,
    last_heartbeat: Family<WorkerLabels, Gauge>,
    outbox_depth: Family<WorkerLabels, Gauge>,
    cert_expiry: Family<WorkerLabels, Gauge>,
    ca_expiry: Gauge,
    server_expiry: Gauge,
    https_expiry: Gauge,
    store_errors: Counter,
}

/// One worker's row, as the gauges need it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WorkerRow {
    worker_id: String,
    site: String,
    status: WorkerStatus,
    revoked: bool,
    last_heartbeat_ms: Option<i64>,
    outbox_depth: Option<i64>,
}

impl FleetMetrics {
    /// Registers every metric of this module in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "ims_control_workers",
            "Edge workers by status (active, inactive, error; revoked ones as revoked)",
            m.workers.clone(),
        );
        registry.register(
            "ims_control_worker_last_heartbeat_timestamp_seconds",
            "When each unrevoked worker last sent a heartbeat (Unix seconds)",
            m.last_heartbeat.clone(),
        );
        registry.register(
            "ims_control_worker_outbox_depth",
            "Events waiting in each worker's outbox, as its last heartbeat reported",
            m.outbox_depth.clone(),
        );
        registry.register(
            "ims_control_worker_cert_expiry_timestamp_seconds",
            "End of validity of each worker's newest unrevoked certificate (Unix seconds)",
            m.cert_expiry.clone(),
        );
        registry.register(
            "ims_control_uplink_ca_cert_expiry_timestamp_seconds",
            "End of validity of the uplink CA certificate (Unix seconds)",
            m.ca_expiry.clone(),
        );
        registry.register(
            "ims_control_uplink_server_cert_expiry_timestamp_seconds",
            "End of validity of this process's QUIC server certificate (Unix seconds)",
            m.server_expiry.clone(),
        );
        registry.register(
            "ims_control_https_cert_expiry_timestamp_seconds",
            "End of validity of the HTTPS certificate this process serves (Unix seconds; 0 over plain HTTP)",
            m.https_expiry.clone(),
        );
        // The encoder appends `_total` to counters.
        registry.register(
            "ims_control_metrics_store_errors",
            "Scrapes whose store queries failed (fleet and alarm gauges kept their last values)",
            m.store_errors.clone(),
        );
        m
    }

    /// Sets the certificate gauges from the DER of the CA and of the QUIC server certificate;
    /// a certificate that does not parse leaves its gauge as it was.
    pub(crate) fn set_uplink_certs(&self, ca_der: &[u8], server_der: &[u8]) {
        if let Some(t) = not_after_seconds(ca_der) {
            self.ca_expiry.set(t);
        }
        if let Some(t) = not_after_seconds(server_der) {
            self.server_expiry.set(t);
        }
    }

    /// Sets the HTTPS certificate gauge from the DER of the serving certificate; one that does
    /// not parse leaves the gauge as it was.
    pub(crate) fn set_https_cert(&self, der: &[u8]) {
        if let Some(t) = not_after_seconds(der) {
            self.https_expiry.set(t);
        }
    }

    /// Counts a scrape whose store queries failed (outside this module: the alarm gauges).
    pub(crate) fn count_store_error(&self) {
        self.store_errors.inc();
    }

    /// Reads the workers and their certificates from `db` and sets the fleet gauges; on a store
    /// error counts it, logs it and keeps the last values. False after a store error.
    pub(crate) async fn refresh(&self, db: &Db) -> bool {
        match read(db).await {
            Ok((workers, certs)) => {
                self.set(&workers, &certs);
                true
            }
            Err(e) => {
                self.store_errors.inc();
                tracing::warn!("metrics: cannot read the workers from the store: {e}");
                false
            }
        }
    }

    fn set(&self, workers: &[WorkerRow], certs: &BTreeMap<String, i64>) {
        let mut by_status: BTreeMap<&str, i64> = WorkerStatus::ALL
            .iter()
            .map(|s| (s.as_str(), 0))
            .chain([(REVOKED, 0)])
            .collect();
        // Workers deleted since the last scrape must disappear.
        self.last_heartbeat.clear();
        self.outbox_depth.clear();
        self.cert_expiry.clear();
        for w in workers {
            let status = if w.revoked {
                REVOKED
            } else {
                w.status.as_str()
            };
            *by_status.entry(status).or_default() += 1;
            if w.revoked {
                continue;
            }
            let labels = WorkerLabels {
                worker_id: w.worker_id.clone(),
                site: w.site.clone(),
            };
            if let Some(hb) = w.last_heartbeat_ms {
                self.last_heartbeat.get_or_create(&labels).set(hb / 1000);
            }
            if let Some(depth) = w.outbox_depth {
                self.outbox_depth.get_or_create(&labels).set(depth);
            }
            if let Some(not_after) = certs.get(&w.worker_id) {
                self.cert_expiry
                    .get_or_create(&labels)
                    .set(not_after / 1000);
            }
        }
        for (status, n) in by_status {
            self.workers
                .get_or_create(&StatusLabels {
                    status: status.to_owned(),
                })
                .set(n);
        }
    }
}

async fn read(db: &Db) -> Result<(Vec<WorkerRow>, BTreeMap<String, i64>), sqlx::Error> {
    let now = now_ms();
    let rows = sqlx::query(
        "SELECT w.worker_id, w.status, w.last_heartbeat, w.heartbeat_interval_ms, w.metrics, \
         w.revoked, s.name AS site_name \
         FROM workers w LEFT JOIN sites s ON s.id = w.site_id",
    )
    .fetch_all(db.pool())
    .await?;
    let mut workers = Vec::with_capacity(rows.len());
    for row in &rows {
        let stored: String = row.try_get("status")?;
        let stored = stored.parse().unwrap_or(WorkerStatus::Inactive);
        let last_heartbeat_ms: Option<i64> = row.try_get("last_heartbeat")?;
        let interval_ms: i64 = row.try_get("heartbeat_interval_ms")?;
        let metrics: String = row.try_get("metrics")?;
        let revoked: i64 = row.try_get("revoked")?;
        let site: Option<String> = row.try_get("site_name")?;
        workers.push(WorkerRow {
            worker_id: row.try_get("worker_id")?,
            site: site.unwrap_or_default(),
            status: shown_status(stored, last_heartbeat_ms, interval_ms, now),
            revoked: revoked != 0,
            last_heartbeat_ms,
            outbox_depth: outbox_depth(&metrics),
        });
    }
    let certs = sqlx::query(
        "SELECT worker_id, MAX(not_after) AS not_after FROM worker_certs \
         WHERE revoked = 0 GROUP BY worker_id",
    )
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|row| Ok((row.try_get("worker_id")?, row.try_get("not_after")?)))
    .collect::<Result<BTreeMap<String, i64>, sqlx::Error>>()?;
    Ok((workers, certs))
}

/// `outbox_depth` from a worker's stored metrics JSON (absent before its first heartbeat).
fn outbox_depth(metrics_json: &str) -> Option<i64> {
    serde_json::from_str::<serde_json::Value>(metrics_json)
        .ok()?
        .get("outbox_depth")?
        .as_i64()
}

/// The end of validity of a DER certificate, Unix seconds.
fn not_after_seconds(der: &[u8]) -> Option<i64> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn gauges_follow_the_rows_and_forget_deleted_workers() {
        let mut registry = Registry::default();
        let m = FleetMetrics::register(&mut registry);
        let row = |id: &str, status, revoked, depth| WorkerRow {
            worker_id: id.to_owned(),
            site: "edge1".to_owned(),
            status,
            revoked,
            last_heartbeat_ms: Some(1_700_000_000_500),
            outbox_depth: depth,
        };
        let certs = BTreeMap::from([("w1".to_owned(), 1_800_000_000_000)]);
        m.set(
            &[
                row("w1", WorkerStatus::Active, false, Some(7)),
                row("w2", WorkerStatus::Inactive, false, None),
                row("w3", WorkerStatus::Active, true, Some(1)),
            ],
            &certs,
        );
        let text = render(&registry);
        for needle in [
            "ims_control_workers{status=\"active\"} 1",
            "ims_control_workers{status=\"inactive\"} 1",
            "ims_control_workers{status=\"error\"} 0",
            "ims_control_workers{status=\"revoked\"} 1",
            "ims_control_worker_last_heartbeat_timestamp_seconds{worker_id=\"w1\",site=\"edge1\"} 1700000000",
            "ims_control_worker_outbox_depth{worker_id=\"w1\",site=\"edge1\"} 7",
            "ims_control_worker_cert_expiry_timestamp_seconds{worker_id=\"w1\",site=\"edge1\"} 1800000000",
            "ims_control_metrics_store_errors_total 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(!text.contains("worker_id=\"w3\""), "revoked: {text}");
        assert!(
            !text.contains("ims_control_worker_outbox_depth{worker_id=\"w2\""),
            "{text}"
        );

        m.set(&[row("w2", WorkerStatus::Error, false, None)], &certs);
        let text = render(&registry);
        assert!(!text.contains("worker_id=\"w1\""), "deleted: {text}");
        assert!(
            text.contains("ims_control_workers{status=\"active\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("ims_control_workers{status=\"error\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn certificate_expiry_comes_from_the_der() {
        let mut registry = Registry::default();
        let m = FleetMetrics::register(&mut registry);
        let ca = crate::uplink::Ca::generate(1_700_000_000_000).unwrap();
        let server = ca.issue_server_cert(&[], 1_700_000_000_000).unwrap();
        m.set_uplink_certs(ca.cert_der(), &server.chain[0]);
        m.set_uplink_certs(b"not a certificate", b"");
        assert!(
            render(&registry).contains("ims_control_https_cert_expiry_timestamp_seconds 0\n"),
            "plain HTTP until set"
        );
        m.set_https_cert(&server.chain[0]);
        m.set_https_cert(b"not a certificate");
        let text = render(&registry);
        let day = 86_400;
        let ca_end = 1_700_000_000 + crate::uplink::ca::CA_VALIDITY_DAYS * day;
        let server_end = 1_700_000_000 + crate::uplink::ca::SERVER_VALIDITY_DAYS * day;
        assert!(
            text.contains(&format!(
                "ims_control_uplink_ca_cert_expiry_timestamp_seconds {ca_end}"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "ims_control_uplink_server_cert_expiry_timestamp_seconds {server_end}"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "ims_control_https_cert_expiry_timestamp_seconds {server_end}"
            )),
            "{text}"
        );
    }

    #[test]
    fn outbox_depth_is_read_from_the_heartbeat_metrics() {
        assert_eq!(outbox_depth(r#"{"outbox_depth": 12, "x": 1}"#), Some(12));
        assert_eq!(outbox_depth("{}"), None);
        assert_eq!(outbox_depth("not json"), None);
    }
}
