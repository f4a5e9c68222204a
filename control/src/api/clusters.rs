//! `/api/cluster…`: clusters (list, create, read, replace, patch, delete — deleting a cluster
//! deletes its machines) and their machines: `add_machine`, the cluster's machine list, and
//! `/api/cluster/{cid}/machines/{mid}`, which reads, edits **in place** (the same id; a
//! `cluster` field moves it) or deletes a machine of that cluster and answers 404 for a machine
//! of another cluster.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::AnyConnection;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::machines::input::{
    Checker, describe, enum_filter, parse_enum, parse_ref, parse_text, present, query_value,
};
use super::machines::{self, MachineInput, MachineQuery, MachineView, Target};
use crate::api::page::{Page, PageParams};
use crate::auth::{AdminUser, AuthUser};
use crate::db::{StoreError, format_ts, now_ms};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, Problem};
use crate::model::{ClusterStatus, Health};
use crate::state::AppState;
use crate::store::clusters::{self as store, Cluster, ClusterFields, ClusterFilter, NameOrId};

/// Longest cluster name.
const MAX_NAME: usize = 100;
/// Longest description.
const MAX_DESCRIPTION: usize = 10_000;

/// A cluster as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ClusterView {
    /// Id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Operational status.
    pub status: ClusterStatus,
    /// Health.
    pub health: Health,
    /// Site id, or null.
    pub site: Option<i64>,
    /// Site name, or null.
    pub site_name: Option<String>,
    /// How many machines it has.
    pub machine_count: i64,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

impl From<&Cluster> for ClusterView {
    fn from(c: &Cluster) -> Self {
        Self {
            id: c.id,
            name: c.name.clone(),
            description: c.description.clone(),
            status: c.status,
            health: c.health,
            site: c.site_id,
            site_name: c.site_name.clone(),
            machine_count: c.machine_count,
            created_at: format_ts(c.created_at),
            updated_at: format_ts(c.updated_at),
        }
    }
}

/// A cluster body. POST and PUT need `name` (PUT resets the fields left out to their
/// defaults); PATCH changes only what it names.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterInput {
    /// Unique name, 1–100 characters (trimmed).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "edge-cluster-1")]
    name: Option<Value>,
    /// Free text (default empty).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Value>,
    /// Operational status (default UNKNOWN).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<ClusterStatus>)]
    status: Option<Value>,
    /// Health (default UNKNOWN).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Health>)]
    health: Option<Value>,
    /// Site id or name; null for none (the default).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "lab-1")]
    site: Option<Value>,
}

/// Checks `input` against `base` (PATCH: the stored cluster; POST/PUT: none) and resolves the
/// site.
async fn build_fields(
    conn: &mut AnyConnection,
    input: &ClusterInput,
    base: Option<&Cluster>,
) -> Result<ClusterFields, ApiError> {
    let mut c = Checker::default();
    let name = c.take(
        "name",
        input.name.as_ref(),
        base.map(|b| b.name.clone()),
        None,
        "a unique name of 1 to 100 characters",
        |v| parse_text(v, MAX_NAME, true, true),
    );
    let description = c.take(
        "description",
        input.description.as_ref(),
        base.map(|b| b.description.clone()),
        Some(String::new()),
        "",
        |v| parse_text(v, MAX_DESCRIPTION, false, false),
    );
    let status = c.take(
        "status",
        input.status.as_ref(),
        base.map(|b| b.status),
        Some(ClusterStatus::Unknown),
        "",
        |v| parse_enum(v, ClusterStatus::EXPECTED),
    );
    let health = c.take(
        "health",
        input.health.as_ref(),
        base.map(|b| b.health),
        Some(Health::Unknown),
        "",
        |v| parse_enum(v, Health::EXPECTED),
    );
    let site = c.take(
        "site",
        input.site.as_ref(),
        base.map(|b| b.site_id.map(NameOrId::Id)),
        Some(None),
        "",
        |v| parse_ref(v, "site"),
    );
    let mut site_id = Some(None);
    if let Some(Some(r)) = &site {
        let found = store::find_site(&mut *conn, r).await?;
        if found.is_none() {
            c.error(
                "site",
                format!("no site has {}; give an existing site or null", describe(r)),
            );
        }
        site_id = found.map(Some);
    }
    c.finish()?;
    match (name, description, status, health, site_id) {
        (Some(name), Some(description), Some(status), Some(health), Some(site_id)) => {
            Ok(ClusterFields {
                name,
                description,
                status,
                health,
                site_id,
            })
        }
        _ => Err(ApiError::bad_request("invalid cluster")),
    }
}

/// Creates (`id` none) or updates cluster `id` in one transaction.
async fn save(
    state: &AppState,
    id: Option<i64>,
    patch: bool,
    input: &ClusterInput,
) -> Result<ClusterView, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let current = match id {
        Some(id) => Some(load(&mut tx, id).await?),
        None => None,
    };
    let base = if patch { current.as_ref() } else { None };
    let fields = build_fields(&mut tx, input, base).await?;
    let now = now_ms();
    let id = match id {
        Some(id) => {
            store::update(&mut tx, id, &fields, now).await?;
            id
        }
        None => store::create(&mut tx, &fields, now).await?,
    };
    let cluster = load(&mut tx, id).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(ClusterView::from(&cluster))
}

async fn load(conn: &mut AnyConnection, id: i64) -> Result<Cluster, ApiError> {
    store::get(&mut *conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("cluster {id}")))
}

/// Filters and pagination of cluster lists.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ClusterQuery {
    /// Site id or name.
    site: Option<String>,
    /// Status (OPERATIONAL, DEGRADED, …).
    status: Option<String>,
    /// Health (HEALTHY, WARNING, CRITICAL, UNKNOWN).
    health: Option<String>,
    /// Name (case-insensitive).
    name: Option<String>,
    /// Page number, from 1 (default 1).
    page: Option<u32>,
    /// Items per page, 1–10000 (default 100).
    page_size: Option<u32>,
}

/// List clusters.
#[utoipa::path(get, path = "/api/cluster", tag = "clusters", params(ClusterQuery),
    responses(
        (status = 200, description = "One page of clusters, ordered by id",
            body = Page<ClusterView>),
        (status = 400, description = "Invalid filter or page", body = Problem),
        (status = 401, description = "Not authenticated", body = Problem)),
    security(("bearer" = [])))]
async fn list_clusters(
    _user: AuthUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ClusterQuery>,
) -> Result<Json<Page<ClusterView>>, ApiError> {
    let mut c = Checker::default();
    let filter = ClusterFilter {
        site: query_value(q.site.as_ref()).and_then(NameOrId::parse),
        status: enum_filter(&mut c, "status", q.status.as_ref()),
        health: enum_filter(&mut c, "health", q.health.as_ref()),
        name: query_value(q.name.as_ref()).map(str::to_owned),
    };
    c.finish()?;
    let page = PageParams {
        page: q.page,
        page_size: q.page_size,
    }
    .request()?;
    let (count, clusters) = store::list(&state.db, &filter, page).await?;
    Ok(Json(Page::new(
        page,
        count,
        clusters.iter().map(ClusterView::from).collect(),
    )))
}

/// Create a cluster.
#[utoipa::path(post, path = "/api/cluster", tag = "clusters", request_body = ClusterInput,
    responses(
        (status = 201, description = "Created", body = ClusterView),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 409, description = "Name already used", body = Problem)),
    security(("bearer" = [])))]
async fn create_cluster(
    _admin: AdminUser,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<ClusterInput>,
) -> Result<(StatusCode, Json<ClusterView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(save(&state, None, false, &input).await?),
    ))
}

/// Read a cluster.
#[utoipa::path(get, path = "/api/cluster/{id}", tag = "clusters",
    params(("id" = i64, Path, description = "Cluster id")),
    responses(
        (status = 200, description = "The cluster", body = ClusterView),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 404, description = "No such cluster", body = Problem)),
    security(("bearer" = [])))]
async fn get_cluster(
    _user: AuthUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ClusterView>, ApiError> {
    let c = store::get(state.db.pool(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("cluster {id}")))?;
    Ok(Json(ClusterView::from(&c)))
}

/// Replace a cluster (fields left out get their defaults).
#[utoipa::path(put, path = "/api/cluster/{id}", tag = "clusters",
    params(("id" = i64, Path, description = "Cluster id")), request_body = ClusterInput,
    responses(
        (status = 200, description = "Updated", body = ClusterView),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such cluster", body = Problem),
        (status = 409, description = "Name already used", body = Problem)),
    security(("bearer" = [])))]
async fn put_cluster(
    _admin: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<ClusterInput>,
) -> Result<Json<ClusterView>, ApiError> {
    Ok(Json(save(&state, Some(id), false, &input).await?))
}

/// Change some fields of a cluster.
#[utoipa::path(patch, path = "/api/cluster/{id}", tag = "clusters",
    params(("id" = i64, Path, description = "Cluster id")), request_body = ClusterInput,
    responses(
        (status = 200, description = "Updated", body = ClusterView),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such cluster", body = Problem),
        (status = 409, description = "Name already used", body = Problem)),
    security(("bearer" = [])))]
async fn patch_cluster(
    _admin: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<ClusterInput>,
) -> Result<Json<ClusterView>, ApiError> {
    Ok(Json(save(&state, Some(id), true, &input).await?))
}

/// Delete a cluster and all its machines.
#[utoipa::path(delete, path = "/api/cluster/{id}", tag = "clusters",
    params(("id" = i64, Path, description = "Cluster id")),
    responses(
        (status = 204, description = "Deleted, with its machines"),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such cluster", body = Problem)),
    security(("bearer" = [])))]
async fn delete_cluster(
    _admin: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    if !store::delete(&mut tx, id).await? {
        return Err(ApiError::not_found(format!("cluster {id}")));
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add a machine to a cluster (the body is a machine without `cluster`).
#[utoipa::path(post, path = "/api/cluster/{id}/add_machine", tag = "clusters",
    params(("id" = i64, Path, description = "Cluster id")), request_body = MachineInput,
    responses(
        (status = 201, description = "Created", body = MachineView),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such cluster", body = Problem),
        (status = 409, description = "MAC or IP already used", body = Problem)),
    security(("bearer" = [])))]
async fn add_machine(
    _admin: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<MachineInput>,
) -> Result<(StatusCode, Json<MachineView>), ApiError> {
    let target = Target {
        id: None,
        cluster: Some(id),
        patch: false,
    };
    Ok((
        StatusCode::CREATED,
        Json(machines::save(&state, target, &input).await?),
    ))
}

/// Filters and pagination of a cluster's machines.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ClusterMachinesQuery {
    /// Site id or name.
    site: Option<String>,
    /// Status (ACTIVE, INACTIVE, …).
    status: Option<String>,
    /// Role (MASTER, WORKER, STORAGE, GATEWAY).
    role: Option<String>,
    /// Health (HEALTHY, WARNING, CRITICAL, UNKNOWN).
    health: Option<String>,
    /// MAC address, any spelling.
    mac: Option<String>,
    /// IPv4 address.
    ip: Option<String>,
    /// Host name (case-insensitive).
    hostname: Option<String>,
    /// Page number, from 1 (default 1).
    page: Option<u32>,
    /// Items per page, 1–10000 (default 100).
    page_size: Option<u32>,
}

/// List a cluster's machines.
#[utoipa::path(get, path = "/api/cluster/{cid}/machines", tag = "clusters",
    params(("cid" = i64, Path, description = "Cluster id"), ClusterMachinesQuery),
    responses(
        (status = 200, description = "One page of the cluster's machines, ordered by id",
            body = Page<MachineView>),
        (status = 400, description = "Invalid filter or page", body = Problem),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 404, description = "No such cluster", body = Problem)),
    security(("bearer" = [])))]
async fn list_cluster_machines(
    _user: AuthUser,
    State(state): State<AppState>,
    ApiPath(cid): ApiPath<i64>,
    ApiQuery(q): ApiQuery<ClusterMachinesQuery>,
) -> Result<Json<Page<MachineView>>, ApiError> {
    let query = MachineQuery {
        cluster: None,
        site: q.site,
        status: q.status,
        role: q.role,
        health: q.health,
        mac: q.mac,
        ip: q.ip,
        hostname: q.hostname,
        page: q.page,
        page_size: q.page_size,
    };
    let (mut filter, page) = query.filter()?;
    if store::find(state.db.pool(), &NameOrId::Id(cid))
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!("cluster {cid}")));
    }
    filter.cluster = Some(NameOrId::Id(cid));
    Ok(Json(machines::list_page(&state, &filter, page).await?))
}

/// Read a machine of a cluster.
#[utoipa::path(get, path = "/api/cluster/{cid}/machines/{mid}", tag = "clusters",
    params(("cid" = i64, Path, description = "Cluster id"),
        ("mid" = i64, Path, description = "Machine id")),
    responses(
        (status = 200, description = "The machine", body = MachineView),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 404, description = "No such machine in this cluster", body = Problem)),
    security(("bearer" = [])))]
async fn get_cluster_machine(
    _user: AuthUser,
    State(state): State<AppState>,
    ApiPath((cid, mid)): ApiPath<(i64, i64)>,
) -> Result<Json<MachineView>, ApiError> {
    let mut conn = state
        .db
        .pool()
        .acquire()
        .await
        .map_err(|e| ApiError::from(StoreError::from(e)))?;
    let m = machines::load(&mut conn, mid, Some(cid)).await?;
    Ok(Json(MachineView::from(&m)))
}

/// Replace a machine of a cluster, in place (fields left out get their defaults; `cluster`
/// defaults to this one).
#[utoipa::path(put, path = "/api/cluster/{cid}/machines/{mid}", tag = "clusters",
    params(("cid" = i64, Path, description = "Cluster id"),
        ("mid" = i64, Path, description = "Machine id")),
    request_body = MachineInput,
    responses(
        (status = 200, description = "Updated (same id)", body = MachineView),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such machine in this cluster", body = Problem),
        (status = 409, description = "MAC or IP already used", body = Problem)),
    security(("bearer" = [])))]
async fn put_cluster_machine(
    _admin: AdminUser,
    State(state): State<AppState>,
    ApiPath((cid, mid)): ApiPath<(i64, i64)>,
    ApiJson(input): ApiJson<MachineInput>,
) -> Result<Json<MachineView>, ApiError> {
    let target = Target {
        id: Some(mid),
        cluster: Some(cid),
        patch: false,
    };
    Ok(Json(machines::save(&state, target, &input).await?))
}

/// Change some fields of a machine of a cluster, in place.
#[utoipa::path(patch, path = "/api/cluster/{cid}/machines/{mid}", tag = "clusters",
    params(("cid" = i64, Path, description = "Cluster id"),
        ("mid" = i64, Path, description = "Machine id")),
    request_body = MachineInput,
    responses(
        (status = 200, description = "Updated (same id)", body = MachineView),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such machine in this cluster", body = Problem),
        (status = 409, description = "MAC or IP already used", body = Problem)),
    security(("bearer" = [])))]
async fn patch_cluster_machine(
    _admin: AdminUser,
    State(state): State<AppState>,
    ApiPath((cid, mid)): ApiPath<(i64, i64)>,
    ApiJson(input): ApiJson<MachineInput>,
) -> Result<Json<MachineView>, ApiError> {
    let target = Target {
        id: Some(mid),
        cluster: Some(cid),
        patch: true,
    };
    Ok(Json(machines::save(&state, target, &input).await?))
}

/// Delete a machine of a cluster.
#[utoipa::path(delete, path = "/api/cluster/{cid}/machines/{mid}", tag = "clusters",
    params(("cid" = i64, Path, description = "Cluster id"),
        ("mid" = i64, Path, description = "Machine id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such machine in this cluster", body = Problem)),
    security(("bearer" = [])))]
async fn delete_cluster_machine(
    _admin: AdminUser,
    State(state): State<AppState>,
    ApiPath((cid, mid)): ApiPath<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    machines::remove(&state, mid, Some(cid)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_clusters, create_cluster))
        .routes(routes!(
            get_cluster,
            put_cluster,
            patch_cluster,
            delete_cluster
        ))
        .routes(routes!(add_machine))
        .routes(routes!(list_cluster_machines))
        .routes(routes!(
            get_cluster_machine,
            put_cluster_machine,
            patch_cluster_machine,
            delete_cluster_machine
        ))
}
