//! `/api/machines/{id}/metrics` (the latest resource metrics: read, and replace as an admin)
//! and `/api/machines/{id}/events` (provisioning events reported by edges, newest first).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::input::{Checker, parse_int, query_value};
use crate::api::page::{Page, PageParams};
use crate::auth::{AdminUser, AuthUser};
use crate::db::{StoreError, format_ts, now_ms};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, Problem};
use crate::state::AppState;
use crate::store::events::{self, Event, MAX_KEY_LEN};
use crate::store::machines::{self as store, MAX_CPU_CORES, MachineMetrics, Metrics};

/// A machine's latest resource metrics (the original design's ResourceMetrics).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MetricsView {
    /// Machine id.
    pub machine: i64,
    /// CPU usage, percent.
    pub cpu_usage: f64,
    /// CPU cores.
    pub cpu_cores: u32,
    /// Memory in use, GB.
    pub memory_used: f64,
    /// Memory installed, GB.
    pub memory_total: f64,
    /// Memory usage, percent.
    pub memory_usage: f64,
    /// Disk in use, GB.
    pub disk_used: f64,
    /// Disk capacity, GB.
    pub disk_total: f64,
    /// Disk usage, percent.
    pub disk_usage: f64,
    /// Incoming traffic, Mbps.
    pub network_incoming: f64,
    /// Outgoing traffic, Mbps.
    pub network_outgoing: f64,
    /// When they were stored (RFC 3339).
    pub timestamp: String,
}

impl From<&MachineMetrics> for MetricsView {
    fn from(m: &MachineMetrics) -> Self {
        let v = &m.metrics;
        Self {
            machine: m.machine_id,
            cpu_usage: v.cpu_usage,
            cpu_cores: v.cpu_cores,
            memory_used: v.memory_used,
            memory_total: v.memory_total,
            memory_usage: v.memory_usage,
            disk_used: v.disk_used,
            disk_total: v.disk_total,
            disk_usage: v.disk_usage,
            network_incoming: v.network_incoming,
            network_outgoing: v.network_outgoing,
            timestamp: format_ts(m.timestamp),
        }
    }
}

/// New metrics for a machine; fields left out are 0. The time stamp is the server's.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsInput {
    /// CPU usage, percent (0–100).
    #[schema(value_type = Option<f64>)]
    cpu_usage: Option<Value>,
    /// CPU cores (0–4096).
    #[schema(value_type = Option<u32>)]
    cpu_cores: Option<Value>,
    /// Memory in use, GB.
    #[schema(value_type = Option<f64>)]
    memory_used: Option<Value>,
    /// Memory installed, GB.
    #[schema(value_type = Option<f64>)]
    memory_total: Option<Value>,
    /// Memory usage, percent (0–100).
    #[schema(value_type = Option<f64>)]
    memory_usage: Option<Value>,
    /// Disk in use, GB.
    #[schema(value_type = Option<f64>)]
    disk_used: Option<Value>,
    /// Disk capacity, GB.
    #[schema(value_type = Option<f64>)]
    disk_total: Option<Value>,
    /// Disk usage, percent (0–100).
    #[schema(value_type = Option<f64>)]
    disk_usage: Option<Value>,
    /// Incoming traffic, Mbps.
    #[schema(value_type = Option<f64>)]
    network_incoming: Option<Value>,
    /// Outgoing traffic, Mbps.
    #[schema(value_type = Option<f64>)]
    network_outgoing: Option<Value>,
}

impl MetricsInput {
    /// The metrics, with every invalid field reported.
    fn metrics(&self) -> Result<Metrics, ApiError> {
        let mut c = Checker::default();
        let mut num = |name: &str, v: &Option<Value>| match v {
            None | Some(Value::Null) => 0.0,
            Some(v) => v.as_f64().unwrap_or_else(|| {
                c.error(name, "give a number (0 or more)");
                0.0
            }),
        };
        let mut m = Metrics {
            cpu_usage: num("cpu_usage", &self.cpu_usage),
            cpu_cores: 0,
            memory_used: num("memory_used", &self.memory_used),
            memory_total: num("memory_total", &self.memory_total),
            memory_usage: num("memory_usage", &self.memory_usage),
            disk_used: num("disk_used", &self.disk_used),
            disk_total: num("disk_total", &self.disk_total),
            disk_usage: num("disk_usage", &self.disk_usage),
            network_incoming: num("network_incoming", &self.network_incoming),
            network_outgoing: num("network_outgoing", &self.network_outgoing),
        };
        if let Some(v) = self.cpu_cores.as_ref().filter(|v| !v.is_null()) {
            match parse_int(v, 0, MAX_CPU_CORES.into()) {
                Ok(n) => m.cpu_cores = u32::try_from(n).unwrap_or(0),
                Err(e) => c.error("cpu_cores", e),
            }
        }
        c.errors.extend(m.validate());
        c.finish()?;
        Ok(m)
    }
}

async fn machine_exists(state: &AppState, id: i64) -> Result<(), ApiError> {
    match store::get(state.db.pool(), id).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!("machine {id}"))),
    }
}

/// Read a machine's latest metrics.
#[utoipa::path(get, path = "/api/machines/{id}/metrics", tag = "machines",
    params(("id" = i64, Path, description = "Machine id")),
    responses(
        (status = 200, description = "The latest metrics", body = MetricsView),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 404, description = "No such machine, or no metrics reported yet",
            body = Problem)),
    security(("bearer" = [])))]
async fn get_metrics(
    _user: AuthUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<MetricsView>, ApiError> {
    machine_exists(&state, id).await?;
    let m = store::get_metrics(state.db.pool(), id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                format!("no metrics reported yet for machine {id}"),
            )
        })?;
    Ok(Json(MetricsView::from(&m)))
}

/// Store a machine's latest metrics (replacing the previous ones).
#[utoipa::path(put, path = "/api/machines/{id}/metrics", tag = "machines",
    params(("id" = i64, Path, description = "Machine id")), request_body = MetricsInput,
    responses(
        (status = 200, description = "Stored", body = MetricsView),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such machine", body = Problem)),
    security(("bearer" = [])))]
async fn put_metrics(
    _admin: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<MetricsInput>,
) -> Result<Json<MetricsView>, ApiError> {
    let metrics = input.metrics()?;
    let mut tx = state.db.begin_write().await?;
    store::upsert_metrics(&mut tx, id, &metrics, now_ms()).await?;
    let stored = store::get_metrics(&mut *tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("metrics of machine {id}")))?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(Json(MetricsView::from(&stored)))
}

/// A provisioning event.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EventView {
    /// Id.
    pub id: i64,
    /// The machine, or null if none had this MAC when it was recorded.
    pub machine: Option<i64>,
    /// The MAC it concerns.
    pub mac: String,
    /// The edge that reported it.
    pub worker_id: Option<String>,
    /// The edge's idempotency key.
    pub event_id: Option<String>,
    /// What happened (`lease`, `transfer_started`, `transfer_completed`, `transfer_failed`,
    /// `phone_home`, `error`, `status`, …).
    pub kind: String,
    /// Human-readable text.
    pub message: String,
    /// Structured details.
    #[schema(value_type = Object)]
    pub detail: Value,
    /// When it happened (RFC 3339).
    pub at: String,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        Self {
            id: e.id,
            machine: e.machine_id,
            mac: e.mac.clone(),
            worker_id: e.worker_id.clone(),
            event_id: e.event_id.clone(),
            kind: e.kind.clone(),
            message: e.message.clone(),
            detail: e.detail.clone(),
            at: format_ts(e.at_ms),
        }
    }
}

/// Filter and pagination of a machine's events.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventQuery {
    /// Only events of this kind (case-insensitive).
    kind: Option<String>,
    /// Page number, from 1 (default 1).
    page: Option<u32>,
    /// Items per page, 1–10000 (default 100).
    page_size: Option<u32>,
}

/// List a machine's provisioning events, newest first.
#[utoipa::path(get, path = "/api/machines/{id}/events", tag = "machines",
    params(("id" = i64, Path, description = "Machine id"), EventQuery),
    responses(
        (status = 200, description = "One page of events, newest first", body = Page<EventView>),
        (status = 400, description = "Invalid filter or page", body = Problem),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 404, description = "No such machine", body = Problem)),
    security(("bearer" = [])))]
async fn list_events(
    _user: AuthUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Result<Json<Page<EventView>>, ApiError> {
    let kind = query_value(query.kind.as_ref());
    if let Some(k) = kind.filter(|k| !events::valid_kind(k)) {
        let mut c = Checker::default();
        c.error(
            "kind",
            format!(
                "`{k}` is not an event kind: give 1-{MAX_KEY_LEN} letters, digits, `_`, `-`, `.` \
                 or `:`, such as transfer_completed"
            ),
        );
        c.finish()?;
    }
    let page = PageParams {
        page: query.page,
        page_size: query.page_size,
    }
    .request()?;
    machine_exists(&state, id).await?;
    let (count, items) = events::list_events(&state.db, id, kind, page).await?;
    Ok(Json(Page::new(
        page,
        count,
        items.iter().map(EventView::from).collect(),
    )))
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_metrics, put_metrics))
        .routes(routes!(list_events))
}
