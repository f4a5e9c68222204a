//! `/api/machines…`: machines (list, create, read, replace, patch, delete), their latest
//! resource metrics and their provisioning events ([`telemetry`]).
//!
//! Machine bodies are checked field by field (module `input`) and every invalid field is
//! reported at once. The same checks serve the cluster-scoped routes in [`super::clusters`]
//! (`add_machine`, `/api/cluster/{cid}/machines/{mid}`), which edit the one machine in place.

pub(crate) mod input;
pub mod telemetry;

use std::net::Ipv4Addr;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ims_proto::MacAddr;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::AnyConnection;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::page::{Page, PageParams, PageRequest};
use crate::auth::{AdminUser, AuthUser};
use crate::db::{StoreError, format_ts, now_ms};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, FieldError, Problem};
use crate::model::{Health, MachineRole, MachineStatus, OsType};
use crate::state::AppState;
use crate::store::clusters::{self as cluster_store, NameOrId};
use crate::store::machines::{self as store, MAX_CPU_CORES, Machine, MachineFields, MachineFilter};
use input::{
    Checker, describe, enum_filter, parse_bool, parse_enum, parse_hostname, parse_int, parse_ipv4,
    parse_mac, parse_ref, present, query_value,
};

/// A machine body. Which fields are required depends on the route: POST and PUT need
/// `hostname` and `mac` (and `cluster` on `/api/machines`); PATCH changes only what it names.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MachineInput {
    /// Cluster id or name. Required on `/api/machines`; on cluster routes it defaults to the
    /// URL's cluster (giving another one moves the machine).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "edge-cluster-1")]
    pub(crate) cluster: Option<Value>,
    /// RFC 1123 host name.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "node-1")]
    pub(crate) hostname: Option<Value>,
    /// Fixed IPv4 address, unique; null for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "10.0.0.5")]
    pub(crate) ip: Option<Value>,
    /// Boot interface MAC, unique; `:`, `-`, `.` or no separators, any case.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "52:54:00:12:34:56")]
    pub(crate) mac: Option<Value>,
    /// CPU cores, 0–4096 (default 0).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub(crate) cpu_cores: Option<Value>,
    /// Role (default WORKER).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<MachineRole>)]
    pub(crate) role: Option<Value>,
    /// Operating system (default LINUX).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<OsType>)]
    pub(crate) os_type: Option<Value>,
    /// Lifecycle status (default INACTIVE).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<MachineStatus>)]
    pub(crate) status: Option<Value>,
    /// Health (default UNKNOWN).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Health>)]
    pub(crate) health: Option<Value>,
    /// Boot profile id or name; null for none (the default).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub(crate) boot_profile: Option<Value>,
    /// Whether edges answer its netboot requests (default true).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<bool>)]
    pub(crate) netboot: Option<Value>,
}

/// Checks `input` against `base` (PATCH: the stored machine; POST/PUT: none) and resolves its
/// references; `url_cluster` is the default cluster on cluster routes.
async fn build_fields(
    conn: &mut AnyConnection,
    input: &MachineInput,
    base: Option<&Machine>,
    url_cluster: Option<i64>,
) -> Result<MachineFields, ApiError> {
    let mut c = Checker::default();
    let cluster = c.take(
        "cluster",
        input.cluster.as_ref(),
        base.map(|m| NameOrId::Id(m.cluster_id)),
        url_cluster.map(NameOrId::Id),
        "give the cluster's id or name",
        |v| parse_ref(v, "cluster")?.ok_or_else(|| "give the cluster's id or name".to_owned()),
    );
    let hostname = c.take(
        "hostname",
        input.hostname.as_ref(),
        base.map(|m| m.hostname.clone()),
        None,
        "an RFC 1123 host name such as node-1",
        parse_hostname,
    );
    let ip = c.take(
        "ip",
        input.ip.as_ref(),
        base.map(|m| m.ip),
        Some(None),
        "",
        parse_ipv4,
    );
    let mac = c.take(
        "mac",
        input.mac.as_ref(),
        base.map(|m| m.mac),
        None,
        "the boot interface's MAC address such as 52:54:00:12:34:56",
        parse_mac,
    );
    let cpu_cores = c.take(
        "cpu_cores",
        input.cpu_cores.as_ref(),
        base.map(|m| m.cpu_cores),
        Some(0),
        "",
        |v| parse_int(v, 0, MAX_CPU_CORES.into()).map(|n| u32::try_from(n).unwrap_or(0)),
    );
    let role = c.take(
        "role",
        input.role.as_ref(),
        base.map(|m| m.role),
        Some(MachineRole::Worker),
        "",
        |v| parse_enum(v, MachineRole::EXPECTED),
    );
    let os_type = c.take(
        "os_type",
        input.os_type.as_ref(),
        base.map(|m| m.os_type),
        Some(OsType::Linux),
        "",
        |v| parse_enum(v, OsType::EXPECTED),
    );
    let status = c.take(
        "status",
        input.status.as_ref(),
        base.map(|m| m.status),
        Some(MachineStatus::Inactive),
        "",
        |v| parse_enum(v, MachineStatus::EXPECTED),
    );
    let health = c.take(
        "health",
        input.health.as_ref(),
        base.map(|m| m.health),
        Some(Health::Unknown),
        "",
        |v| parse_enum(v, Health::EXPECTED),
    );
    let boot_profile = c.take(
        "boot_profile",
        input.boot_profile.as_ref(),
        base.map(|m| m.boot_profile_id.map(NameOrId::Id)),
        Some(None),
        "",
        |v| parse_ref(v, "boot profile"),
    );
    let netboot = c.take(
        "netboot",
        input.netboot.as_ref(),
        base.map(|m| m.netboot),
        Some(true),
        "",
        parse_bool,
    );

    let mut cluster_id = None;
    if let Some(r) = &cluster {
        cluster_id = cluster_store::find(&mut *conn, r).await?;
        if cluster_id.is_none() {
            c.error(
                "cluster",
                format!(
                    "no cluster has {}; create it first or give another",
                    describe(r)
                ),
            );
        }
    }
    let mut boot_profile_id = Some(None);
    if let Some(Some(r)) = &boot_profile {
        let found = store::find_boot_profile(&mut *conn, r).await?;
        if found.is_none() {
            c.error(
                "boot_profile",
                format!(
                    "no boot profile has {}; give an existing one or null",
                    describe(r)
                ),
            );
        }
        boot_profile_id = found.map(Some);
    }
    let (
        Some(cluster_id),
        Some(hostname),
        Some(ip),
        Some(mac),
        Some(cpu_cores),
        Some(role),
        Some(os_type),
        Some(status),
        Some(health),
        Some(boot_profile_id),
        Some(netboot),
    ) = (
        cluster_id,
        hostname,
        ip,
        mac,
        cpu_cores,
        role,
        os_type,
        status,
        health,
        boot_profile_id,
        netboot,
    )
    else {
        c.finish()?;
        return Err(ApiError::bad_request("invalid machine"));
    };
    c.finish()?;
    Ok(MachineFields {
        cluster_id,
        hostname,
        ip,
        mac,
        cpu_cores,
        role,
        os_type,
        status,
        health,
        boot_profile_id,
        netboot,
    })
}

/// A machine as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MachineView {
    /// Id.
    pub id: i64,
    /// Cluster id.
    pub cluster: i64,
    /// Cluster name.
    pub cluster_name: String,
    /// RFC 1123 host name.
    pub hostname: String,
    /// Fixed IPv4 address, or null.
    #[schema(example = "10.0.0.5")]
    pub ip: Option<String>,
    /// Boot interface MAC, `XX:XX:XX:XX:XX:XX`.
    #[schema(example = "52:54:00:12:34:56")]
    pub mac: String,
    /// CPU cores.
    pub cpu_cores: u32,
    /// Role.
    pub role: MachineRole,
    /// Operating system.
    pub os_type: OsType,
    /// Lifecycle status.
    pub status: MachineStatus,
    /// Health.
    pub health: Health,
    /// Boot profile id, or null.
    pub boot_profile: Option<i64>,
    /// Boot profile name, or null.
    pub boot_profile_name: Option<String>,
    /// Whether edges answer its netboot requests.
    pub netboot: bool,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

impl From<&Machine> for MachineView {
    fn from(m: &Machine) -> Self {
        Self {
            id: m.id,
            cluster: m.cluster_id,
            cluster_name: m.cluster_name.clone(),
            hostname: m.hostname.clone(),
            ip: m.ip.map(|ip| ip.to_string()),
            mac: m.mac.to_string(),
            cpu_cores: m.cpu_cores,
            role: m.role,
            os_type: m.os_type,
            status: m.status,
            health: m.health,
            boot_profile: m.boot_profile_id,
            boot_profile_name: m.boot_profile_name.clone(),
            netboot: m.netboot,
            created_at: format_ts(m.created_at),
            updated_at: format_ts(m.updated_at),
        }
    }
}

/// Filters and pagination of machine lists.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct MachineQuery {
    /// Cluster id or name.
    pub(crate) cluster: Option<String>,
    /// Site id or name (of the machine's cluster).
    pub(crate) site: Option<String>,
    /// Status (ACTIVE, INACTIVE, …).
    pub(crate) status: Option<String>,
    /// Role (MASTER, WORKER, STORAGE, GATEWAY).
    pub(crate) role: Option<String>,
    /// Health (HEALTHY, WARNING, CRITICAL, UNKNOWN).
    pub(crate) health: Option<String>,
    /// MAC address, any spelling.
    pub(crate) mac: Option<String>,
    /// IPv4 address.
    pub(crate) ip: Option<String>,
    /// Host name (case-insensitive).
    pub(crate) hostname: Option<String>,
    /// Page number, from 1 (default 1).
    pub(crate) page: Option<u32>,
    /// Items per page, 1–10000 (default 100).
    pub(crate) page_size: Option<u32>,
}

impl MachineQuery {
    /// The validated filter and page.
    pub(crate) fn filter(&self) -> Result<(MachineFilter, PageRequest), ApiError> {
        let mut c = Checker::default();
        let filter = MachineFilter {
            cluster: query_value(self.cluster.as_ref()).and_then(NameOrId::parse),
            site: query_value(self.site.as_ref()).and_then(NameOrId::parse),
            status: enum_filter(&mut c, "status", self.status.as_ref()),
            role: enum_filter(&mut c, "role", self.role.as_ref()),
            health: enum_filter(&mut c, "health", self.health.as_ref()),
            mac: query_value(self.mac.as_ref()).and_then(|s| {
                s.parse::<MacAddr>()
                    .map_err(|e| c.error("mac", e.to_string()))
                    .ok()
            }),
            ip: query_value(self.ip.as_ref()).and_then(|s| match s.parse::<Ipv4Addr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    c.error(
                        "ip",
                        format!("`{s}` is not an IPv4 address such as 10.0.0.5"),
                    );
                    None
                }
            }),
            hostname: query_value(self.hostname.as_ref()).map(str::to_owned),
        };
        c.finish()?;
        let page = PageParams {
            page: self.page,
            page_size: self.page_size,
        }
        .request()?;
        Ok((filter, page))
    }
}

/// One page of machines.
pub(crate) async fn list_page(
    state: &AppState,
    filter: &MachineFilter,
    page: PageRequest,
) -> Result<Page<MachineView>, ApiError> {
    let (count, machines) = store::list(&state.db, filter, page).await?;
    Ok(Page::new(
        page,
        count,
        machines.iter().map(MachineView::from).collect(),
    ))
}

/// Machine `id`, which must be in `cluster` when given (else 404).
pub(crate) async fn load(
    conn: &mut AnyConnection,
    id: i64,
    cluster: Option<i64>,
) -> Result<Machine, ApiError> {
    match (store::get(&mut *conn, id).await?, cluster) {
        (Some(m), Some(cid)) if m.cluster_id != cid => Err(ApiError::not_found(format!(
            "machine {id} in cluster {cid}"
        ))),
        (Some(m), _) => Ok(m),
        (None, Some(cid)) => Err(ApiError::not_found(format!(
            "machine {id} in cluster {cid}"
        ))),
        (None, None) => Err(ApiError::not_found(format!("machine {id}"))),
    }
}

/// Which machine a write addresses and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    /// The machine (none: create).
    pub(crate) id: Option<i64>,
    /// The cluster of the URL, on cluster routes.
    pub(crate) cluster: Option<i64>,
    /// PATCH (only the given fields change) rather than POST/PUT.
    pub(crate) patch: bool,
}

/// Creates or updates (in place) a machine from `input`, in one transaction.
pub(crate) async fn save(
    state: &AppState,
    target: Target,
    input: &MachineInput,
) -> Result<MachineView, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let current = match target.id {
        Some(id) => Some(load(&mut tx, id, target.cluster).await?),
        None => None,
    };
    if let (None, Some(cid)) = (target.id, target.cluster) {
        if cluster_store::find(&mut *tx, &NameOrId::Id(cid))
            .await?
            .is_none()
        {
            return Err(ApiError::not_found(format!("cluster {cid}")));
        }
    }
    let base = if target.patch { current.as_ref() } else { None };
    let fields = build_fields(&mut tx, input, base, target.cluster).await?;
    let now = now_ms();
    let id = match target.id {
        Some(id) => {
            store::update(&mut tx, id, &fields, now).await?;
            id
        }
        None => {
            if let Some(cid) = target.cluster.filter(|cid| *cid != fields.cluster_id) {
                return Err(ApiError::validation(vec![FieldError::new(
                    "cluster",
                    format!(
                        "add_machine adds to cluster {cid} of the URL; leave `cluster` out, or \
                         POST /api/machines to choose another"
                    ),
                )]));
            }
            store::create(&mut tx, &fields, now).await?
        }
    };
    let machine = load(&mut tx, id, None).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(MachineView::from(&machine))
}

/// Deletes machine `id` (which must be in `cluster` when given).
pub(crate) async fn remove(
    state: &AppState,
    id: i64,
    cluster: Option<i64>,
) -> Result<(), ApiError> {
    let mut tx = state.db.begin_write().await?;
    load(&mut tx, id, cluster).await?;
    store::delete(&mut *tx, id).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}

/// List machines.
#[utoipa::path(get, path = "/api/machines", tag = "machines", params(MachineQuery),
    responses(
        (status = 200, description = "One page of machines, ordered by id",
            body = Page<MachineView>),
        (status = 400, description = "Invalid filter or page", body = Problem),
        (status = 401, description = "Not authenticated", body = Problem)),
    security(("bearer" = [])))]
async fn list_machines(
    _user: AuthUser,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<MachineQuery>,
) -> Result<Json<Page<MachineView>>, ApiError> {
    let (filter, page) = query.filter()?;
    Ok(Json(list_page(&state, &filter, page).await?))
}

/// Create a machine.
#[utoipa::path(post, path = "/api/machines", tag = "machines", request_body = MachineInput,
    responses(
        (status = 201, description = "Created", body = MachineView),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 409, description = "MAC or IP already used", body = Problem)),
    security(("bearer" = [])))]
async fn create_machine(
    _admin: AdminUser,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<MachineInput>,
) -> Result<(StatusCode, Json<MachineView>), ApiError> {
    let target = Target {
        id: None,
        cluster: None,
        patch: false,
    };
    Ok((
        StatusCode::CREATED,
        Json(save(&state, target, &input).await?),
    ))
}

/// Read a machine.
#[utoipa::path(get, path = "/api/machines/{id}", tag = "machines",
    params(("id" = i64, Path, description = "Machine id")),
    responses(
        (status = 200, description = "The machine", body = MachineView),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 404, description = "No such machine", body = Problem)),
    security(("bearer" = [])))]
async fn get_machine(
    _user: AuthUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<MachineView>, ApiError> {
    let m = store::get(state.db.pool(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("machine {id}")))?;
    Ok(Json(MachineView::from(&m)))
}

/// Replace a machine (fields left out get their defaults).
#[utoipa::path(put, path = "/api/machines/{id}", tag = "machines",
    params(("id" = i64, Path, description = "Machine id")), request_body = MachineInput,
    responses(
        (status = 200, description = "Updated", body = MachineView),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such machine", body = Problem),
        (status = 409, description = "MAC or IP already used", body = Problem)),
    security(("bearer" = [])))]
async fn put_machine(
    _admin: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<MachineInput>,
) -> Result<Json<MachineView>, ApiError> {
    let target = Target {
        id: Some(id),
        cluster: None,
        patch: false,
    };
    Ok(Json(save(&state, target, &input).await?))
}

/// Change some fields of a machine.
#[utoipa::path(patch, path = "/api/machines/{id}", tag = "machines",
    params(("id" = i64, Path, description = "Machine id")), request_body = MachineInput,
    responses(
        (status = 200, description = "Updated", body = MachineView),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such machine", body = Problem),
        (status = 409, description = "MAC or IP already used", body = Problem)),
    security(("bearer" = [])))]
async fn patch_machine(
    _admin: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<MachineInput>,
) -> Result<Json<MachineView>, ApiError> {
    let target = Target {
        id: Some(id),
        cluster: None,
        patch: true,
    };
    Ok(Json(save(&state, target, &input).await?))
}

/// Delete a machine (with its metrics and events).
#[utoipa::path(delete, path = "/api/machines/{id}", tag = "machines",
    params(("id" = i64, Path, description = "Machine id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not authenticated", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such machine", body = Problem)),
    security(("bearer" = [])))]
async fn delete_machine(
    _admin: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    remove(&state, id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_machines, create_machine))
        .routes(routes!(
            get_machine,
            put_machine,
            patch_machine,
            delete_machine
        ))
        .merge(telemetry::routes())
}
