//! Edge workers and their leases, read-only: `/api/workers` (filters `site`, `status`),
//! `/api/workers/{id}` (id or `worker_id`), `/api/leases` (filters `site`, `worker`, `mac`,
//! `state`) and `/api/leases/{id}`.
//!
//! And the original design's worker HTTP client (the Go `APIClient`), which keeps working:
//! `POST /api/ims-worker/register`, `…/heartbeat`, `…/report_lease` and `…/report_error`, each
//! answered 200 with a small JSON body. The legacy worker logs in as a user, so these need an
//! admin token. They validate their input and hand plain values to the store functions in
//! [`crate::store::workers`], which the QUIC uplink calls too.

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ims_proto::MacAddr;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::page::Page;
use crate::api::sites::{Fields, commit, page_request, present, read_conn, site_filter};
use crate::auth::{AdminUser, AuthUser};
use crate::db::{now_ms, parse_ts};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, FieldError, Problem};
use crate::model::{BindingState, WorkerStatus};
use crate::state::AppState;
use crate::store::workers::{
    self, Heartbeat, Lease, LeaseFilter, LeaseReport, Registration, ServiceStatus, Worker,
    WorkerError, WorkerFilter,
};

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_workers))
        .routes(routes!(get_worker))
        .routes(routes!(list_leases))
        .routes(routes!(get_lease))
        .routes(routes!(register))
        .routes(routes!(heartbeat))
        .routes(routes!(report_lease))
        .routes(routes!(report_error))
}

/// Longest `worker_id`.
pub const MAX_WORKER_ID: usize = 100;
/// Most services in a heartbeat.
pub const MAX_SERVICES: usize = 64;
/// Largest `metrics` object (bytes of JSON).
pub const MAX_METRICS: usize = 65_536;

impl From<WorkerError> for ApiError {
    fn from(e: WorkerError) -> Self {
        match e {
            WorkerError::Unregistered(id) => Self::new(
                StatusCode::NOT_FOUND,
                format!(
                    "worker `{id}` is not registered: POST /api/ims-worker/register with its \
                     worker_id and ip_address first"
                ),
            ),
            WorkerError::Revoked(id) => Self::forbidden(format!(
                "worker `{id}` was revoked and may no longer report; enrol it again"
            )),
            WorkerError::Store(e) => e.into(),
        }
    }
}

/// Collects the field errors of a failed page request.
fn page_or_errors(
    page: Option<u32>,
    page_size: Option<u32>,
    errors: &mut Vec<FieldError>,
) -> Option<crate::api::page::PageRequest> {
    page_request(page, page_size)
        .map_err(|e| errors.extend(e.problem().errors))
        .ok()
}

/// Filters and pagination of the worker list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WorkerQuery {
    /// Page number, from 1 (default 1).
    page: Option<u32>,
    /// Items per page, 1–10000 (default 100).
    page_size: Option<u32>,
    /// Only this site's workers (id or name).
    site: Option<String>,
    /// Only workers shown with this status: `active`, `inactive` or `error`.
    status: Option<String>,
}

/// List edge workers.
#[utoipa::path(get, path = "/api/workers", tag = "workers", params(WorkerQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of workers, ordered by id. `status` is derived: \
            a worker whose last heartbeat is older than 30 s shows `inactive`", body = Page<Worker>),
        (status = 400, description = "Invalid filters or page parameters", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
    ))]
async fn list_workers(
    _: AuthUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<WorkerQuery>,
) -> Result<Json<Page<Worker>>, ApiError> {
    let mut errors = Vec::new();
    let page = page_or_errors(q.page, q.page_size, &mut errors);
    let status = q
        .status
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| {
            s.parse::<WorkerStatus>()
                .map_err(|e| errors.push(FieldError::new("status", e.to_string())))
                .ok()
        });
    let Some(page) = page.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let mut conn = read_conn(&state).await?;
    let site = site_filter(&mut conn, q.site.as_deref()).await?;
    let filter = WorkerFilter { site, status };
    let (count, list) = workers::list(&mut conn, filter, now_ms(), page).await?;
    Ok(Json(Page::new(page, count, list)))
}

/// Read an edge worker.
#[utoipa::path(get, path = "/api/workers/{id}", tag = "workers",
    params(("id" = String, Path, description = "Worker id, or its `worker_id`")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The worker", body = Worker),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 404, description = "No such worker", body = Problem),
    ))]
async fn get_worker(
    _: AuthUser,
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Worker>, ApiError> {
    let mut conn = read_conn(&state).await?;
    Ok(Json(workers::get(&mut conn, &key, now_ms()).await?))
}

/// Filters and pagination of the lease list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LeaseQuery {
    /// Page number, from 1 (default 1).
    page: Option<u32>,
    /// Items per page, 1–10000 (default 100).
    page_size: Option<u32>,
    /// Only this site's leases (id or name).
    site: Option<String>,
    /// Only leases reported by this worker (`worker_id`).
    worker: Option<String>,
    /// Only this client's leases (any MAC spelling).
    mac: Option<String>,
    /// Only leases in this state: `active`, `expired`, `released` or `abandoned`.
    state: Option<String>,
}

/// List DHCP leases.
#[utoipa::path(get, path = "/api/leases", tag = "leases", params(LeaseQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of leases, ordered by id", body = Page<Lease>),
        (status = 400, description = "Invalid filters or page parameters", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
    ))]
async fn list_leases(
    _: AuthUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<LeaseQuery>,
) -> Result<Json<Page<Lease>>, ApiError> {
    let mut errors = Vec::new();
    let page = page_or_errors(q.page, q.page_size, &mut errors);
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
    let mac = nonempty(&q.mac).and_then(|m| {
        m.trim()
            .parse::<MacAddr>()
            .map_err(|e| errors.push(FieldError::new("mac", e.to_string())))
            .ok()
    });
    let binding = nonempty(&q.state).and_then(|s| {
        s.parse::<BindingState>()
            .map_err(|e| errors.push(FieldError::new("state", e.to_string())))
            .ok()
    });
    let Some(page) = page.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let mut conn = read_conn(&state).await?;
    let site = site_filter(&mut conn, q.site.as_deref()).await?;
    let filter = LeaseFilter {
        site,
        worker: nonempty(&q.worker).map(|w| w.trim().to_owned()),
        mac,
        state: binding,
    };
    let (count, list) = workers::list_leases(&mut conn, &filter, page).await?;
    Ok(Json(Page::new(page, count, list)))
}

/// Read a DHCP lease.
#[utoipa::path(get, path = "/api/leases/{id}", tag = "leases",
    params(("id" = i64, Path, description = "Lease id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The lease", body = Lease),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 404, description = "No such lease", body = Problem),
    ))]
async fn get_lease(
    _: AuthUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Lease>, ApiError> {
    let mut conn = read_conn(&state).await?;
    Ok(Json(workers::get_lease(&mut conn, id).await?))
}

// ---------------------------------------------------------------------------------------------
// The original design's worker client.

/// What the legacy worker calls answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct WorkerAck {
    /// `registered`, `ok` or `recorded`.
    status: &'static str,
    /// The worker.
    worker_id: String,
    /// The worker's status now.
    worker_status: WorkerStatus,
    /// The stored lease (report_lease only).
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_id: Option<i64>,
}

impl WorkerAck {
    fn new(status: &'static str, worker: &Worker) -> Json<Self> {
        Json(Self {
            status,
            worker_id: worker.worker_id.clone(),
            worker_status: worker.status,
            lease_id: None,
        })
    }
}

/// Reads `worker_id`: 1–100 characters, no whitespace, control characters or `/`.
fn worker_id(f: &mut Fields) -> String {
    let id = f.text("worker_id", 4 * MAX_WORKER_ID, "the worker's name");
    if !id.is_empty()
        && (id.chars().count() > MAX_WORKER_ID || id.chars().any(|c| c.is_whitespace() || c == '/'))
    {
        f.error(
            "worker_id",
            format!(
                "`{id}` is not a usable worker_id: 1–{MAX_WORKER_ID} characters without spaces \
                 or `/` (a hostname or container id)"
            ),
        );
    }
    id
}

/// A time in RFC 3339, with any UTC offset (Go's `time.Time` sends local offsets and
/// nanoseconds).
fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() >= 25 && matches!(b[b.len() - 6], b'+' | b'-') && b[b.len() - 3] == b':' {
        let (time, offset) = s.split_at(s.len() - 6);
        let hours: i64 = offset.get(1..3)?.parse().ok()?;
        let minutes: i64 = offset.get(4..6)?.parse().ok()?;
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let ms = parse_ts(&format!("{time}Z"))?;
        return Some(ms - sign * (hours * 3600 + minutes * 60) * 1000);
    }
    parse_ts(s)
}

/// A registration (`APIClient.Register`).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterInput {
    /// The worker's name (hostname or container id), 1–100 characters.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String)]
    worker_id: Option<Value>,
    /// Its IPv4 or IPv6 address.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String)]
    ip_address: Option<Value>,
}

/// Register (or re-register) a legacy worker.
#[utoipa::path(post, path = "/api/ims-worker/register", tag = "ims-worker",
    request_body = RegisterInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Registered: status active; a re-registration keeps \
                                      registered_at", body = WorkerAck),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin, or the worker was revoked", body = Problem),
    ))]
async fn register(
    _: AdminUser,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<RegisterInput>,
) -> Result<Json<WorkerAck>, ApiError> {
    let mut f = Fields::of(&input);
    let worker_id = worker_id(&mut f);
    let ip = f.text("ip_address", 64, "the worker's IP address");
    let ip_address = match ip.trim().parse::<IpAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            if !ip.is_empty() {
                f.error(
                    "ip_address",
                    format!("`{ip}` is not an IPv4 or IPv6 address"),
                );
            }
            None
        }
    };
    f.finish()?;
    let registration = Registration {
        worker_id,
        ip_address,
        site_id: None,
        version: None,
        heartbeat_interval_ms: None,
    };
    let mut tx = state.db.begin_write().await?;
    let worker = workers::register(&mut tx, &registration, now_ms()).await?;
    commit(tx).await?;
    Ok(WorkerAck::new("registered", &worker))
}

/// A heartbeat (`APIClient.SendHeartbeat`).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeartbeatInput {
    /// The worker's name.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String)]
    worker_id: Option<Value>,
    /// Service states by name: `{"dhcp": {"status": "running", "last_error": "…"}}`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Object>)]
    services: Option<Value>,
    /// Metrics (any JSON object, at most 64 KiB).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Object>)]
    metrics: Option<Value>,
}

fn parse_services(f: &mut Fields) -> BTreeMap<String, ServiceStatus> {
    let mut out = BTreeMap::new();
    let Some(value) = f.value("services").cloned() else {
        return out;
    };
    let Value::Object(services) = value else {
        f.error(
            "services",
            "must be an object of {\"status\": …} by service name",
        );
        return out;
    };
    if services.len() > MAX_SERVICES {
        f.error(
            "services",
            format!("has {} services: at most {MAX_SERVICES}", services.len()),
        );
        return out;
    }
    for (name, state) in services {
        let mut s = Fields::of(&state);
        if !state.is_object() {
            s.error(
                "status",
                "is required: give the service's state such as \"running\"",
            );
        }
        let status = s.text("status", 64, "the service's state such as \"running\"");
        let last_error = s.opt_text("last_error", workers::MAX_ERROR_LEN, true);
        let unknown: Vec<String> = s
            .keys()
            .filter(|k| !matches!(*k, "status" | "last_error"))
            .map(str::to_owned)
            .collect();
        for key in unknown {
            s.error(
                &key,
                "unknown field: a service has `status` and `last_error`",
            );
        }
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            s.error("name", "service names are 1–64 printable characters");
        }
        f.absorb(&format!("services.{name}"), s);
        out.insert(name, ServiceStatus { status, last_error });
    }
    out
}

/// Record a legacy worker's heartbeat.
#[utoipa::path(post, path = "/api/ims-worker/heartbeat", tag = "ims-worker",
    request_body = HeartbeatInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Recorded: status `error` when a service reports \
                                      error/failed, else `active`", body = WorkerAck),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin, or the worker was revoked", body = Problem),
        (status = 404, description = "The worker is not registered", body = Problem),
    ))]
async fn heartbeat(
    _: AdminUser,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<HeartbeatInput>,
) -> Result<Json<WorkerAck>, ApiError> {
    let mut f = Fields::of(&input);
    let worker_id = worker_id(&mut f);
    let services = parse_services(&mut f);
    let metrics = match f.value("metrics").cloned() {
        None => serde_json::Map::new(),
        Some(Value::Object(m)) if Value::Object(m.clone()).to_string().len() <= MAX_METRICS => m,
        Some(Value::Object(_)) => {
            f.error(
                "metrics",
                format!("is larger than {MAX_METRICS} bytes of JSON"),
            );
            serde_json::Map::new()
        }
        Some(_) => {
            f.error("metrics", "must be a JSON object");
            serde_json::Map::new()
        }
    };
    f.finish()?;
    let hb = Heartbeat { services, metrics };
    let mut tx = state.db.begin_write().await?;
    let worker = workers::heartbeat(&mut tx, &worker_id, &hb, now_ms()).await?;
    commit(tx).await?;
    Ok(WorkerAck::new("ok", &worker))
}

/// A lease report (`APIClient.ReportLease`).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportLeaseInput {
    /// The worker's name.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String)]
    worker_id: Option<Value>,
    /// `{ip_address, mac_address, hostname, lease_start, lease_end, cidr, gateway}` (times in
    /// RFC 3339); optionally `binding_state`, `bootfile_url`, `tftp_server`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Object)]
    lease: Option<Value>,
}

/// A required RFC 3339 time field.
fn time_field(l: &mut Fields, key: &str) -> Option<i64> {
    let example = "2026-01-01T12:00:00Z";
    let text = l.text(key, 64, &format!("an RFC 3339 time such as {example}"));
    let ms = parse_time(&text);
    if ms.is_none() && !text.is_empty() {
        l.error(
            key,
            format!("`{text}` is not an RFC 3339 time after 1970 such as {example}"),
        );
    }
    ms
}

const LEASE_KEYS: [&str; 10] = [
    "ip_address",
    "mac_address",
    "hostname",
    "lease_start",
    "lease_end",
    "cidr",
    "gateway",
    "binding_state",
    "bootfile_url",
    "tftp_server",
];

fn parse_lease(l: &mut Fields) -> Option<LeaseReport> {
    let unknown: Vec<String> = l
        .keys()
        .filter(|k| !LEASE_KEYS.contains(k))
        .map(str::to_owned)
        .collect();
    for key in unknown {
        l.error(
            &key,
            format!("unknown field: a lease has {}", LEASE_KEYS.join(", ")),
        );
    }
    let ip = l.opt_ipv4("ip_address");
    if ip.is_none() && !l.has_error("ip_address") {
        l.error("ip_address", "is required: give the leased IPv4 address");
    }
    let mac_text = l.text("mac_address", 64, "the client's MAC address");
    let mac = match mac_text.parse::<MacAddr>() {
        Ok(m) => Some(m),
        Err(e) => {
            if !mac_text.is_empty() {
                l.error("mac_address", e.to_string());
            }
            None
        }
    };
    let hostname = l.opt_text("hostname", 255, false).unwrap_or_default();
    let start = time_field(l, "lease_start");
    let end = time_field(l, "lease_end");
    if let (Some(s), Some(e)) = (start, end) {
        if e < s {
            l.error("lease_end", "is before lease_start");
        }
    }
    let cidr = l
        .opt_text("cidr", 64, false)
        .and_then(|c| match c.trim().parse::<Ipv4Net>() {
            Ok(net) => Some(net.trunc()),
            Err(_) => {
                l.error(
                    "cidr",
                    format!("`{c}` is not an IPv4 network such as 10.77.0.0/24"),
                );
                None
            }
        });
    let gateway = l.opt_ipv4("gateway");
    let binding_state = match l.opt_text("binding_state", 32, false) {
        None => BindingState::Active,
        Some(s) => s.parse().unwrap_or_else(|e: crate::model::UnknownVariant| {
            l.error("binding_state", e.to_string());
            BindingState::Active
        }),
    };
    let bootfile_url = l.opt_text("bootfile_url", 1024, false);
    let tftp_server = l.opt_ipv4("tftp_server");
    Some(LeaseReport {
        ip_address: ip?,
        mac_address: mac?,
        hostname,
        lease_start: start?,
        lease_end: end?,
        binding_state,
        cidr,
        gateway,
        bootfile_url,
        tftp_server,
    })
}

/// Record a lease a legacy worker handed out.
#[utoipa::path(post, path = "/api/ims-worker/report_lease", tag = "ims-worker",
    request_body = ReportLeaseInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Recorded (one lease per IP and MAC, updated in place)", body = WorkerAck),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin, or the worker was revoked", body = Problem),
        (status = 404, description = "The worker is not registered", body = Problem),
    ))]
async fn report_lease(
    _: AdminUser,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<ReportLeaseInput>,
) -> Result<Json<WorkerAck>, ApiError> {
    let mut f = Fields::of(&input);
    let worker_id = worker_id(&mut f);
    let lease = match f.value("lease").cloned() {
        Some(v @ Value::Object(_)) => {
            let mut l = Fields::of(&v);
            let lease = parse_lease(&mut l);
            f.absorb("lease", l);
            lease
        }
        _ => {
            f.error("lease", "is required: give the lease as an object");
            None
        }
    };
    f.finish()?;
    let Some(lease) = lease else {
        return Err(ApiError::bad_request("invalid fields: lease"));
    };
    let now = now_ms();
    let mut tx = state.db.begin_write().await?;
    let stored = workers::report_lease(&mut tx, &worker_id, &lease, now).await?;
    let worker = workers::get(&mut tx, &worker_id, now).await?;
    commit(tx).await?;
    let mut ack = WorkerAck::new("ok", &worker);
    ack.lease_id = Some(stored.id);
    Ok(ack)
}

/// An error report (`APIClient.ReportError`).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportErrorInput {
    /// The worker's name.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String)]
    worker_id: Option<Value>,
    /// `{"message": "…", "details": {…}}`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Object)]
    error: Option<Value>,
}

/// Record an error a legacy worker reports.
#[utoipa::path(post, path = "/api/ims-worker/report_error", tag = "ims-worker",
    request_body = ReportErrorInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Recorded: status `error`, last_error set", body = WorkerAck),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin, or the worker was revoked", body = Problem),
        (status = 404, description = "The worker is not registered", body = Problem),
    ))]
async fn report_error(
    _: AdminUser,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<ReportErrorInput>,
) -> Result<Json<WorkerAck>, ApiError> {
    let mut f = Fields::of(&input);
    let worker_id = worker_id(&mut f);
    let (message, details) = match f.value("error").cloned() {
        Some(v @ Value::Object(_)) => {
            let mut e = Fields::of(&v);
            let message = e.text("message", workers::MAX_ERROR_LEN, "what went wrong");
            let details = e.value("details").cloned().unwrap_or(Value::Null);
            let unknown: Vec<String> = e
                .keys()
                .filter(|k| !matches!(*k, "message" | "details"))
                .map(str::to_owned)
                .collect();
            for key in unknown {
                e.error(&key, "unknown field: an error has `message` and `details`");
            }
            f.absorb("error", e);
            (message, details)
        }
        _ => {
            f.error(
                "error",
                "is required: give {\"message\": …, \"details\": {…}}",
            );
            (String::new(), Value::Null)
        }
    };
    f.finish()?;
    let mut tx = state.db.begin_write().await?;
    let worker = workers::report_error(&mut tx, &worker_id, &message, &details, now_ms()).await?;
    commit(tx).await?;
    Ok(WorkerAck::new("recorded", &worker))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_times_with_offsets_and_nanoseconds() {
        let utc = parse_time("2026-01-01T12:00:00Z").unwrap();
        assert_eq!(
            parse_time("2026-01-01T12:00:00.123456789Z"),
            Some(utc + 123)
        );
        assert_eq!(parse_time("2026-01-01T20:00:00.5+08:00"), Some(utc + 500));
        assert_eq!(parse_time("2026-01-01T07:30:00-04:30"), Some(utc));
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn v4_only_leases() {
        let mut l = Fields::of(&serde_json::json!({
            "ip_address": "2001:db8::1", "mac_address": "52:54:00:12:34:56",
            "lease_start": "2026-01-01T12:00:00Z", "lease_end": "2026-01-01T11:00:00Z",
            "color": "red"
        }));
        assert!(parse_lease(&mut l).is_none());
        let problem = l.finish().unwrap_err().problem();
        let fields: Vec<&str> = problem.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["color", "ip_address", "lease_end"]);
    }
}
