//! IP pools: `/api/ippools` (list, filter `site`; create) and `/api/ippools/{id}` (read,
//! replace, change, delete). A pool is an IPv4 network of a site (or global) with its gateway,
//! dynamic range, DNS servers and lease time; pools of one site never overlap (409 on `cidr`).

use std::net::Ipv4Addr;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::AnyConnection;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::page::Page;
use crate::api::sites::{
    Fields, commit, page_request, present, read_conn, resolve_site, site_filter,
};
use crate::auth::{AdminUser, AuthUser};
use crate::db::now_ms;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, Problem};
use crate::state::AppState;
use crate::store::ippools::{
    self, DEFAULT_LEASE_TIME, IpPool, IpPoolValues, MAX_LEASE_TIME, MIN_LEASE_TIME,
};

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_pools, create_pool))
        .routes(routes!(get_pool, put_pool, patch_pool, delete_pool))
}

/// Longest prefix of a pool: a /31 or /32 leaves no address to hand out.
pub const MAX_PREFIX: u8 = 30;
/// Most DNS servers per pool.
pub const MAX_DNS: usize = 8;

/// A pool to create or replace (PUT), or changes to one (PATCH: absent fields stay; null
/// clears an optional field).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IpPoolInput {
    /// The site's id or name; null (the default) makes a global pool.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    site: Option<Value>,
    /// The IPv4 network, host bits clear, prefix /30 or shorter (`10.77.0.0/24`). Required for
    /// POST and PUT.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String)]
    cidr: Option<Value>,
    /// Default gateway: a host address of the network.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    gateway: Option<Value>,
    /// First address of the dynamic range (with `range_end`, inside the network).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    range_start: Option<Value>,
    /// Last address of the dynamic range (not before `range_start`).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    range_end: Option<Value>,
    /// DNS servers: a list of IPv4 addresses (at most 8).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Vec<String>>)]
    dns: Option<Value>,
    /// Lease time in seconds, 60–31536000 (default 3600).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    lease_time: Option<Value>,
    /// Free text.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    description: Option<Value>,
}

/// Whether `a` is a host address of `net` (not its network or broadcast address).
fn is_host(net: Ipv4Net, a: Ipv4Addr) -> bool {
    net.contains(&a) && a != net.network() && a != net.broadcast()
}

fn parse_cidr(f: &mut Fields) -> Option<Ipv4Net> {
    let text = f.text("cidr", 64, "an IPv4 network such as 10.77.0.0/24");
    if text.is_empty() {
        return None;
    }
    let Ok(net) = text.trim().parse::<Ipv4Net>() else {
        f.error(
            "cidr",
            format!("`{text}` is not an IPv4 network in CIDR form such as 10.77.0.0/24"),
        );
        return None;
    };
    if net != net.trunc() {
        f.error(
            "cidr",
            format!(
                "`{net}` has host bits set: the network is {}; give that",
                net.trunc()
            ),
        );
        return None;
    }
    if net.prefix_len() > MAX_PREFIX {
        f.error(
            "cidr",
            format!(
                "`{net}` has no room for DHCP clients: use a prefix of /{MAX_PREFIX} or shorter"
            ),
        );
        return None;
    }
    Some(net)
}

fn parse_dns(f: &mut Fields) -> Vec<Ipv4Addr> {
    let Some(value) = f.value("dns").cloned() else {
        return Vec::new();
    };
    let Value::Array(items) = value else {
        f.error(
            "dns",
            "must be a list of IPv4 addresses such as [\"192.0.2.53\"]",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in &items {
        match item.as_str().map(|s| s.trim().parse::<Ipv4Addr>()) {
            Some(Ok(a)) => out.push(a),
            _ => {
                f.error(
                    "dns",
                    format!("{item} is not an IPv4 address such as \"192.0.2.53\""),
                );
                return Vec::new();
            }
        }
    }
    if out.len() > MAX_DNS {
        f.error(
            "dns",
            format!(
                "lists {} servers: at most {MAX_DNS} are accepted",
                out.len()
            ),
        );
    }
    out
}

/// Validates a pool body (laid over `base` for PATCH) and resolves its site.
async fn pool_values(
    conn: &mut AnyConnection,
    base: Option<&IpPool>,
    input: &IpPoolInput,
) -> Result<IpPoolValues, ApiError> {
    let mut f = Fields::merge(base, input);
    let site = f.site("site", false);
    let cidr = parse_cidr(&mut f);
    let gateway = f.opt_ipv4("gateway");
    let start = f.opt_ipv4("range_start");
    let end = f.opt_ipv4("range_end");
    let dns = parse_dns(&mut f);
    let lease_time = f.integer(
        "lease_time",
        Some(DEFAULT_LEASE_TIME),
        MIN_LEASE_TIME,
        MAX_LEASE_TIME,
    );
    let description = f.description();
    if let Some(net) = cidr {
        if let Some(g) = gateway.filter(|g| !is_host(net, *g)) {
            f.error(
                "gateway",
                format!(
                    "{g} is not a host address of {net}: give an address between {} and {}",
                    Ipv4Addr::from(u32::from(net.network()).saturating_add(1)),
                    Ipv4Addr::from(u32::from(net.broadcast()).saturating_sub(1)),
                ),
            );
        }
        for (field, a) in [("range_start", start), ("range_end", end)] {
            if let Some(a) = a.filter(|a| !is_host(net, *a)) {
                f.error(field, format!("{a} is not a host address of {net}"));
            }
        }
    }
    let range = match (start, end) {
        (Some(s), Some(e)) if s > e && !f.has_error("range_start") && !f.has_error("range_end") => {
            f.error("range_end", format!("{e} is before range_start {s}"));
            None
        }
        (Some(s), Some(e)) => Some((s, e)),
        (Some(_), None) if !f.has_error("range_end") => {
            f.error(
                "range_end",
                "is required with range_start: give both or neither",
            );
            None
        }
        (None, Some(_)) if !f.has_error("range_start") => {
            f.error(
                "range_start",
                "is required with range_end: give both or neither",
            );
            None
        }
        _ => None,
    };
    let site_id = resolve_site(&mut f, conn, "site", site.as_deref()).await?;
    f.finish()?;
    let Some(cidr) = cidr else {
        // `finish` reported the missing or invalid network.
        return Err(ApiError::bad_request("invalid fields: cidr"));
    };
    Ok(IpPoolValues {
        site_id,
        cidr,
        gateway,
        range,
        dns,
        lease_time,
        description,
    })
}

/// Filters and pagination of the pool list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct IpPoolQuery {
    /// Page number, from 1 (default 1).
    page: Option<u32>,
    /// Items per page, 1–10000 (default 100).
    page_size: Option<u32>,
    /// Only the pools of this site (id or name).
    site: Option<String>,
}

/// List IP pools.
#[utoipa::path(get, path = "/api/ippools", tag = "ippools", params(IpPoolQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of pools, ordered by id", body = Page<IpPool>),
        (status = 400, description = "Invalid page parameters or unknown site", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
    ))]
async fn list_pools(
    _: AuthUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<IpPoolQuery>,
) -> Result<Json<Page<IpPool>>, ApiError> {
    let page = page_request(q.page, q.page_size)?;
    let mut conn = read_conn(&state).await?;
    let site = site_filter(&mut conn, q.site.as_deref()).await?;
    let (count, list) = ippools::list(&mut conn, site, page).await?;
    Ok(Json(Page::new(page, count, list)))
}

/// Create an IP pool.
#[utoipa::path(post, path = "/api/ippools", tag = "ippools", request_body = IpPoolInput,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = IpPool),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 409, description = "It overlaps another pool of the site (field `cidr`)", body = Problem),
    ))]
async fn create_pool(
    _: AdminUser,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<IpPoolInput>,
) -> Result<(StatusCode, Json<IpPool>), ApiError> {
    let mut tx = state.db.begin_write().await?;
    let values = pool_values(&mut tx, None, &input).await?;
    let pool = ippools::create(&mut tx, &values, now_ms()).await?;
    commit(tx).await?;
    Ok((StatusCode::CREATED, Json(pool)))
}

/// Read an IP pool.
#[utoipa::path(get, path = "/api/ippools/{id}", tag = "ippools",
    params(("id" = i64, Path, description = "Pool id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The pool", body = IpPool),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 404, description = "No such pool", body = Problem),
    ))]
async fn get_pool(
    _: AuthUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<IpPool>, ApiError> {
    let mut conn = read_conn(&state).await?;
    Ok(Json(ippools::get(&mut conn, id).await?))
}

/// Shared by PUT and PATCH: `patch` lays the input over the stored pool.
async fn write_pool(
    state: &AppState,
    id: i64,
    input: &IpPoolInput,
    patch: bool,
) -> Result<Json<IpPool>, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let current = ippools::get(&mut tx, id).await?;
    let values = pool_values(&mut tx, patch.then_some(&current), input).await?;
    let pool = ippools::update(&mut tx, id, &values, now_ms()).await?;
    commit(tx).await?;
    Ok(Json(pool))
}

/// Replace an IP pool (absent optional fields reset to their defaults).
#[utoipa::path(put, path = "/api/ippools/{id}", tag = "ippools",
    params(("id" = i64, Path, description = "Pool id")),
    request_body = IpPoolInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The replaced pool", body = IpPool),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such pool", body = Problem),
        (status = 409, description = "It overlaps another pool of the site (field `cidr`)", body = Problem),
    ))]
async fn put_pool(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<IpPoolInput>,
) -> Result<Json<IpPool>, ApiError> {
    write_pool(&state, id, &input, false).await
}

/// Change an IP pool (absent fields stay; null clears an optional one).
#[utoipa::path(patch, path = "/api/ippools/{id}", tag = "ippools",
    params(("id" = i64, Path, description = "Pool id")),
    request_body = IpPoolInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The changed pool", body = IpPool),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such pool", body = Problem),
        (status = 409, description = "It overlaps another pool of the site (field `cidr`)", body = Problem),
    ))]
async fn patch_pool(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<IpPoolInput>,
) -> Result<Json<IpPool>, ApiError> {
    write_pool(&state, id, &input, true).await
}

/// Delete an IP pool.
#[utoipa::path(delete, path = "/api/ippools/{id}", tag = "ippools",
    params(("id" = i64, Path, description = "Pool id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such pool", body = Problem),
    ))]
async fn delete_pool(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    ippools::delete(&mut tx, id).await?;
    commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
