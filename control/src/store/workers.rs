//! Edge workers and the DHCP leases they report.
//!
//! The write functions here ([`register`], [`heartbeat`], [`report_lease`], [`report_error`])
//! are what a worker's reports become, whichever way they arrive: the original design's HTTP
//! client (`/api/ims-worker/…`) or the QUIC uplink. They take plain Rust values and `now`, and
//! run inside the caller's write transaction.
//!
//! A worker's status is stored as reported, and shown derived: one stored `active` or `error`
//! whose last heartbeat is older than three of its heartbeat intervals (the interval the uplink
//! gave it, [`HEARTBEAT_INTERVAL_MS`] for the original HTTP workers) is shown `inactive`
//! ([`shown_status`]); list filters use the same rule.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ims_proto::MacAddr;
use ipnet::Ipv4Net;
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::api::page::PageRequest;
use crate::db::StoreError;
use crate::model::{BindingState, WorkerStatus};
use crate::store::sites::{Arg, Filter, is_id, ts};

/// How often workers send a heartbeat unless the uplink told them otherwise (milliseconds).
pub const HEARTBEAT_INTERVAL_MS: i64 = 10_000;
/// Missed heartbeats after which a worker is shown `inactive`.
pub const MISSED_HEARTBEATS: i64 = 3;
/// A worker on the default interval is shown `inactive` after this long without a heartbeat.
pub const INACTIVE_AFTER_MS: i64 = MISSED_HEARTBEATS * HEARTBEAT_INTERVAL_MS;
/// Longest `last_error` kept (bytes); longer messages are cut.
pub const MAX_ERROR_LEN: usize = 4096;

/// The status shown for a worker stored with `stored`, last heard from at `last_heartbeat`, that
/// heartbeats every `interval_ms`.
#[must_use]
pub fn shown_status(
    stored: WorkerStatus,
    last_heartbeat: Option<i64>,
    interval_ms: i64,
    now_ms: i64,
) -> WorkerStatus {
    let window = MISSED_HEARTBEATS.saturating_mul(interval_ms.max(1));
    let fresh = last_heartbeat.is_some_and(|hb| hb >= now_ms.saturating_sub(window));
    match stored {
        WorkerStatus::Active | WorkerStatus::Error if fresh => stored,
        _ => WorkerStatus::Inactive,
    }
}

/// An edge worker as the API shows it (the original `IMSWorker`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Worker {
    /// Id.
    pub id: i64,
    /// The worker's own name (container id or hostname).
    pub worker_id: String,
    /// Its address.
    pub ip_address: Option<String>,
    /// `active`, `inactive` (no heartbeat for three intervals) or `error`.
    pub status: WorkerStatus,
    /// Last heartbeat (RFC 3339).
    #[serde(serialize_with = "ts::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_heartbeat: Option<i64>,
    /// Seconds since the last heartbeat.
    pub last_heartbeat_age_seconds: Option<i64>,
    /// Service states, by service name: `{"dhcp": {"status": "running"}}`.
    #[schema(value_type = Object)]
    pub services: Value,
    /// The worker's metrics.
    #[schema(value_type = Object)]
    pub metrics: Value,
    /// The last error it reported.
    pub last_error: Option<String>,
    /// First registration (RFC 3339).
    #[serde(serialize_with = "ts::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub registered_at: i64,
    /// Its site's id.
    pub site: Option<i64>,
    /// Its site's name.
    pub site_name: Option<String>,
    /// Its cluster's id.
    pub cluster: Option<i64>,
    /// Its cluster's name.
    pub cluster_name: Option<String>,
    /// Software version it reported.
    pub version: String,
    /// Whether its certificate was revoked (it may no longer report).
    pub revoked: bool,
}

/// A DHCP lease as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Lease {
    /// Id.
    pub id: i64,
    /// Leased address.
    pub ip_address: String,
    /// Client MAC, `XX:XX:XX:XX:XX:XX`.
    pub mac_address: String,
    /// Client hostname.
    pub hostname: String,
    /// Start (RFC 3339).
    #[serde(serialize_with = "ts::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub lease_start: i64,
    /// End (RFC 3339).
    #[serde(serialize_with = "ts::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub lease_end: i64,
    /// `active`, `expired`, `released` or `abandoned`.
    pub binding_state: BindingState,
    /// The reporting worker's `worker_id`.
    pub worker_id: String,
    /// The site's id.
    pub site: Option<i64>,
    /// The site's name.
    pub site_name: Option<String>,
    /// The subnet.
    pub cidr: Option<String>,
    /// Its gateway.
    pub gateway: Option<String>,
    /// Boot file handed out.
    pub bootfile_url: Option<String>,
    /// TFTP server handed out.
    pub tftp_server: Option<String>,
    /// Last report (RFC 3339).
    #[serde(serialize_with = "ts::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

/// Why a worker's report was refused.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// No worker has this `worker_id`: it must register first.
    #[error("worker `{0}` is not registered: register it first")]
    Unregistered(String),
    /// The worker was revoked.
    #[error("worker `{0}` was revoked and may no longer report")]
    Revoked(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for WorkerError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// A registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The worker's name.
    pub worker_id: String,
    /// Its address.
    pub ip_address: Option<IpAddr>,
    /// Its site (`None` keeps the stored one).
    pub site_id: Option<i64>,
    /// Its version (`None` keeps the stored one).
    pub version: Option<String>,
    /// The heartbeat interval it was told, in milliseconds (`None` keeps the stored one, 10 s
    /// for a new worker).
    pub heartbeat_interval_ms: Option<i64>,
}

/// One service's state in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    /// `running`, `stopped`, `error`, `failed`, …
    pub status: String,
    /// The service's last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl ServiceStatus {
    /// Whether this state counts as an error (`error` or `failed`, any case).
    #[must_use]
    pub fn is_error(&self) -> bool {
        let s = self.status.trim();
        s.eq_ignore_ascii_case("error") || s.eq_ignore_ascii_case("failed")
    }
}

/// A heartbeat.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Heartbeat {
    /// Service states by name.
    pub services: BTreeMap<String, ServiceStatus>,
    /// Metrics, as the worker sends them.
    pub metrics: serde_json::Map<String, Value>,
}

/// A lease report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseReport {
    /// Leased address.
    pub ip_address: Ipv4Addr,
    /// Client MAC.
    pub mac_address: MacAddr,
    /// Client hostname (may be empty).
    pub hostname: String,
    /// Start, Unix ms.
    pub lease_start: i64,
    /// End, Unix ms.
    pub lease_end: i64,
    /// Binding state.
    pub binding_state: BindingState,
    /// Subnet.
    pub cidr: Option<Ipv4Net>,
    /// Gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Boot file (`None` keeps the stored one).
    pub bootfile_url: Option<String>,
    /// TFTP server (`None` keeps the stored one).
    pub tftp_server: Option<Ipv4Addr>,
}

const WORKER_SELECT: &str = "SELECT w.id, w.worker_id, w.ip_address, w.status, \
     w.last_heartbeat, w.services, w.metrics, w.last_error, w.registered_at, w.site_id, \
     s.name AS site_name, w.cluster_id, c.name AS cluster_name, w.version, w.revoked, \
     w.heartbeat_interval_ms \
     FROM workers w LEFT JOIN sites s ON s.id = w.site_id \
     LEFT JOIN clusters c ON c.id = w.cluster_id";

fn json_object(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(serde_json::Map::new()),
    }
}

fn worker_from_row(row: &AnyRow, now_ms: i64) -> Result<Worker, sqlx::Error> {
    let stored: String = row.try_get("status")?;
    let stored = stored.parse().unwrap_or(WorkerStatus::Inactive);
    let last_heartbeat: Option<i64> = row.try_get("last_heartbeat")?;
    let interval_ms: i64 = row.try_get("heartbeat_interval_ms")?;
    let services: String = row.try_get("services")?;
    let metrics: String = row.try_get("metrics")?;
    Ok(Worker {
        id: row.try_get("id")?,
        worker_id: row.try_get("worker_id")?,
        ip_address: row.try_get("ip_address")?,
        status: shown_status(stored, last_heartbeat, interval_ms, now_ms),
        last_heartbeat,
        last_heartbeat_age_seconds: last_heartbeat.map(|hb| (now_ms - hb).max(0) / 1000),
        services: json_object(&services),
        metrics: json_object(&metrics),
        last_error: row.try_get("last_error")?,
        registered_at: row.try_get("registered_at")?,
        site: row.try_get("site_id")?,
        site_name: row.try_get("site_name")?,
        cluster: row.try_get("cluster_id")?,
        cluster_name: row.try_get("cluster_name")?,
        version: row.try_get("version")?,
        revoked: row.try_get::<i64, _>("revoked")? != 0,
    })
}

/// The worker `key` names: its id (all digits) or else its `worker_id`, seen at `now_ms`.
///
/// # Errors
/// [`StoreError::NotFound`]; the store failed.
pub async fn get(conn: &mut AnyConnection, key: &str, now_ms: i64) -> Result<Worker, StoreError> {
    if let Some(id) = is_id(key).then(|| key.parse::<i64>().ok()).flatten() {
        let row = sqlx::query(&format!("{WORKER_SELECT} WHERE w.id = $1"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = row {
            return Ok(worker_from_row(&row, now_ms)?);
        }
    }
    let row = sqlx::query(&format!("{WORKER_SELECT} WHERE w.worker_id = $1"))
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("worker `{key}`")))?;
    Ok(worker_from_row(&row, now_ms)?)
}

/// Filters of [`list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerFilter {
    /// Only this site's workers.
    pub site: Option<i64>,
    /// Only workers shown with this status.
    pub status: Option<WorkerStatus>,
}

/// One page of workers ordered by id, as seen at `now_ms`, and the total count.
///
/// # Errors
/// The store failed.
pub async fn list(
    conn: &mut AnyConnection,
    filter: WorkerFilter,
    now_ms: i64,
    page: PageRequest,
) -> Result<(i64, Vec<Worker>), StoreError> {
    let mut f = Filter::default();
    if let Some(site) = filter.site {
        f.push("w.site_id = ?", Arg::Int(site));
    }
    // Fresh: the last heartbeat is within three of the worker's own intervals.
    let now = Arg::Int(now_ms);
    match filter.status {
        Some(WorkerStatus::Active) => f.push(
            "w.status = 'active' AND w.last_heartbeat + 3 * w.heartbeat_interval_ms >= ?",
            now,
        ),
        Some(WorkerStatus::Error) => f.push(
            "w.status = 'error' AND w.last_heartbeat + 3 * w.heartbeat_interval_ms >= ?",
            now,
        ),
        Some(WorkerStatus::Inactive) => f.push(
            "(w.status NOT IN ('active', 'error') OR w.last_heartbeat IS NULL \
             OR w.last_heartbeat + 3 * w.heartbeat_interval_ms < ?)",
            now,
        ),
        None => {}
    }
    let count = f.count(conn, "workers w").await?;
    let sql = format!(
        "{WORKER_SELECT}{} ORDER BY w.id{}",
        f.where_sql(),
        f.page_sql()
    );
    let rows = f
        .bind_page(sqlx::query(&sql), page)
        .fetch_all(&mut *conn)
        .await?;
    let workers = rows
        .iter()
        .map(|r| worker_from_row(r, now_ms))
        .collect::<Result<_, _>>()?;
    Ok((count, workers))
}

/// The row id and site of the registered, unrevoked worker `worker_id`.
async fn reporting_worker(
    conn: &mut AnyConnection,
    worker_id: &str,
) -> Result<(i64, Option<i64>), WorkerError> {
    let row = sqlx::query("SELECT id, site_id, revoked FROM workers WHERE worker_id = $1")
        .bind(worker_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| WorkerError::Unregistered(worker_id.to_owned()))?;
    if row.try_get::<i64, _>("revoked")? != 0 {
        return Err(WorkerError::Revoked(worker_id.to_owned()));
    }
    Ok((row.try_get("id")?, row.try_get("site_id")?))
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Registers (or re-registers) a worker: status `active`, heard from now; a re-registration
/// keeps `registered_at`, and the site and version when none are given.
///
/// # Errors
/// The worker was revoked; the store failed.
pub async fn register(
    conn: &mut AnyConnection,
    reg: &Registration,
    now_ms: i64,
) -> Result<Worker, WorkerError> {
    let revoked = sqlx::query("SELECT revoked FROM workers WHERE worker_id = $1")
        .bind(reg.worker_id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = revoked {
        if row.try_get::<i64, _>(0)? != 0 {
            return Err(WorkerError::Revoked(reg.worker_id.clone()));
        }
    }
    sqlx::query(
        "INSERT INTO workers (worker_id, site_id, ip_address, version, status, last_heartbeat, \
         registered_at, heartbeat_interval_ms) \
         VALUES ($1, $2, $3, $4, 'active', $5, $5, COALESCE($7, $8)) \
         ON CONFLICT (worker_id) DO UPDATE SET ip_address = excluded.ip_address, \
         site_id = COALESCE($2, workers.site_id), \
         version = COALESCE($6, workers.version), \
         heartbeat_interval_ms = COALESCE($7, workers.heartbeat_interval_ms), \
         status = 'active', last_heartbeat = excluded.last_heartbeat",
    )
    .bind(reg.worker_id.as_str())
    .bind(reg.site_id)
    .bind(reg.ip_address.map(|a| a.to_string()))
    .bind(reg.version.as_deref().unwrap_or(""))
    .bind(now_ms)
    .bind(reg.version.as_deref())
    .bind(reg.heartbeat_interval_ms)
    .bind(HEARTBEAT_INTERVAL_MS)
    .execute(&mut *conn)
    .await
    .map_err(crate::store::sites::site_fk)?;
    Ok(get(conn, &reg.worker_id, now_ms).await?)
}

/// Records a heartbeat: heard from now, services and metrics replaced; status `error` when a
/// service reports `error`/`failed` (its message becomes `last_error`), else `active`.
///
/// # Errors
/// The worker is not registered or was revoked; the store failed.
pub async fn heartbeat(
    conn: &mut AnyConnection,
    worker_id: &str,
    hb: &Heartbeat,
    now_ms: i64,
) -> Result<Worker, WorkerError> {
    let (id, _) = reporting_worker(conn, worker_id).await?;
    let failing = hb.services.iter().find(|(_, s)| s.is_error());
    let (status, error) = match failing {
        Some((name, s)) => {
            let detail = s
                .last_error
                .as_deref()
                .filter(|e| !e.trim().is_empty())
                .map_or_else(|| format!("status `{}`", s.status.trim()), str::to_owned);
            (WorkerStatus::Error, Some(cut(format!("{name}: {detail}"))))
        }
        None => (WorkerStatus::Active, None),
    };
    let services = serde_json::to_string(&hb.services).unwrap_or_else(|_| "{}".to_owned());
    let metrics = Value::Object(hb.metrics.clone()).to_string();
    sqlx::query(
        "UPDATE workers SET last_heartbeat = $1, services = $2, metrics = $3, status = $4, \
         last_error = COALESCE($5, last_error) WHERE id = $6",
    )
    .bind(now_ms)
    .bind(services)
    .bind(metrics)
    .bind(status.as_str())
    .bind(error)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(get(conn, worker_id, now_ms).await?)
}

/// Records an error: status `error`, `last_error` = the message (and details, when any).
///
/// # Errors
/// The worker is not registered or was revoked; the store failed.
pub async fn report_error(
    conn: &mut AnyConnection,
    worker_id: &str,
    message: &str,
    details: &Value,
    now_ms: i64,
) -> Result<Worker, WorkerError> {
    let (id, _) = reporting_worker(conn, worker_id).await?;
    let has_details = match details {
        Value::Null => false,
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    };
    let text = if has_details {
        format!("{} ({details})", message.trim())
    } else {
        message.trim().to_owned()
    };
    sqlx::query("UPDATE workers SET status = 'error', last_error = $1 WHERE id = $2")
        .bind(cut(text))
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(get(conn, worker_id, now_ms).await?)
}

const LEASE_SELECT: &str = "SELECT l.id, l.ip_address, l.mac_address, l.hostname, \
     l.lease_start, l.lease_end, l.binding_state, l.worker_id, l.site_id, s.name AS site_name, \
     l.cidr, l.gateway, l.bootfile_url, l.tftp_server, l.updated_at \
     FROM leases l LEFT JOIN sites s ON s.id = l.site_id";

fn lease_from_row(row: &AnyRow) -> Result<Lease, sqlx::Error> {
    let state: String = row.try_get("binding_state")?;
    Ok(Lease {
        id: row.try_get("id")?,
        ip_address: row.try_get("ip_address")?,
        mac_address: row.try_get("mac_address")?,
        hostname: row.try_get("hostname")?,
        lease_start: row.try_get("lease_start")?,
        lease_end: row.try_get("lease_end")?,
        binding_state: state.parse().unwrap_or(BindingState::Abandoned),
        worker_id: row.try_get("worker_id")?,
        site: row.try_get("site_id")?,
        site_name: row.try_get("site_name")?,
        cidr: row.try_get("cidr")?,
        gateway: row.try_get("gateway")?,
        bootfile_url: row.try_get("bootfile_url")?,
        tftp_server: row.try_get("tftp_server")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Records a lease: inserted, or updated when `(ip_address, mac_address)` is already known. The
/// lease belongs to the worker's site.
///
/// # Errors
/// The worker is not registered or was revoked; the store failed.
pub async fn report_lease(
    conn: &mut AnyConnection,
    worker_id: &str,
    lease: &LeaseReport,
    now_ms: i64,
) -> Result<Lease, WorkerError> {
    let (_, site_id) = reporting_worker(conn, worker_id).await?;
    let row = sqlx::query(
        "INSERT INTO leases (worker_id, site_id, ip_address, mac_address, hostname, lease_start, \
         lease_end, binding_state, cidr, gateway, bootfile_url, tftp_server, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (ip_address, mac_address) DO UPDATE SET worker_id = excluded.worker_id, \
         site_id = excluded.site_id, hostname = excluded.hostname, \
         lease_start = excluded.lease_start, lease_end = excluded.lease_end, \
         binding_state = excluded.binding_state, cidr = excluded.cidr, \
         gateway = excluded.gateway, \
         bootfile_url = COALESCE(excluded.bootfile_url, leases.bootfile_url), \
         tftp_server = COALESCE(excluded.tftp_server, leases.tftp_server), \
         updated_at = excluded.updated_at \
         RETURNING id",
    )
    .bind(worker_id)
    .bind(site_id)
    .bind(lease.ip_address.to_string())
    .bind(lease.mac_address.to_string())
    .bind(lease.hostname.as_str())
    .bind(lease.lease_start)
    .bind(lease.lease_end)
    .bind(lease.binding_state.as_str())
    .bind(lease.cidr.map(|c| c.to_string()))
    .bind(lease.gateway.map(|g| g.to_string()))
    .bind(lease.bootfile_url.as_deref())
    .bind(lease.tftp_server.map(|t| t.to_string()))
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await?;
    Ok(get_lease(conn, row.try_get(0)?).await?)
}

/// The lease `id`.
///
/// # Errors
/// [`StoreError::NotFound`]; the store failed.
pub async fn get_lease(conn: &mut AnyConnection, id: i64) -> Result<Lease, StoreError> {
    let row = sqlx::query(&format!("{LEASE_SELECT} WHERE l.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("lease {id}")))?;
    Ok(lease_from_row(&row)?)
}

/// Filters of [`list_leases`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseFilter {
    /// Only this site's leases.
    pub site: Option<i64>,
    /// Only leases this worker (`worker_id`) reported.
    pub worker: Option<String>,
    /// Only this client's leases.
    pub mac: Option<MacAddr>,
    /// Only leases in this state.
    pub state: Option<BindingState>,
}

/// One page of leases ordered by id, and the total count.
///
/// # Errors
/// The store failed.
pub async fn list_leases(
    conn: &mut AnyConnection,
    filter: &LeaseFilter,
    page: PageRequest,
) -> Result<(i64, Vec<Lease>), StoreError> {
    let mut f = Filter::default();
    if let Some(site) = filter.site {
        f.push("l.site_id = ?", Arg::Int(site));
    }
    if let Some(worker) = &filter.worker {
        f.push("l.worker_id = ?", Arg::Text(worker.clone()));
    }
    if let Some(mac) = filter.mac {
        f.push("l.mac_address = ?", Arg::Text(mac.to_string()));
    }
    if let Some(state) = filter.state {
        f.push("l.binding_state = ?", Arg::Text(state.as_str().to_owned()));
    }
    let count = f.count(conn, "leases l").await?;
    let sql = format!(
        "{LEASE_SELECT}{} ORDER BY l.id{}",
        f.where_sql(),
        f.page_sql()
    );
    let rows = f
        .bind_page(sqlx::query(&sql), page)
        .fetch_all(&mut *conn)
        .await?;
    Ok((
        count,
        rows.iter().map(lease_from_row).collect::<Result<_, _>>()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_heartbeats_show_inactive() {
        let now = 1_000_000;
        let i = HEARTBEAT_INTERVAL_MS;
        let fresh = Some(now - INACTIVE_AFTER_MS);
        let stale = Some(now - INACTIVE_AFTER_MS - 1);
        let show = |stored, hb, interval| shown_status(stored, hb, interval, now);
        assert_eq!(show(WorkerStatus::Active, fresh, i), WorkerStatus::Active);
        assert_eq!(show(WorkerStatus::Error, fresh, i), WorkerStatus::Error);
        assert_eq!(show(WorkerStatus::Active, stale, i), WorkerStatus::Inactive);
        assert_eq!(show(WorkerStatus::Error, stale, i), WorkerStatus::Inactive);
        assert_eq!(show(WorkerStatus::Active, None, i), WorkerStatus::Inactive);
        assert_eq!(
            show(WorkerStatus::Inactive, fresh, i),
            WorkerStatus::Inactive
        );
        // A worker told to heartbeat every second is inactive after three missed seconds.
        assert_eq!(
            show(WorkerStatus::Active, Some(now - 3_000), 1_000),
            WorkerStatus::Active
        );
        assert_eq!(
            show(WorkerStatus::Active, Some(now - 3_001), 1_000),
            WorkerStatus::Inactive
        );
    }

    #[test]
    fn failing_services_are_errors_and_messages_are_cut() {
        let s = |status: &str| ServiceStatus {
            status: status.into(),
            last_error: None,
        };
        assert!(s("Failed").is_error());
        assert!(s(" error ").is_error());
        assert!(!s("running").is_error());
        let long = "é".repeat(MAX_ERROR_LEN);
        let c = cut(long);
        assert!(c.len() <= MAX_ERROR_LEN && c.chars().all(|ch| ch == 'é'));
    }
}
