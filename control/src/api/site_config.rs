//! A site's DHCP and TFTP server settings: `/api/dhcp-config`, `/api/dhcp-config/{id}`,
//! `/api/tftp-config` and `/api/tftp-config/{id}` (full CRUD, lists filter on `site`). Each site
//! has at most one of each (a second is 409 on `site`).
//!
//! The handlers are one-liners over generic functions (`ConfigApi`): only the reading of each
//! kind's own fields differs.

use std::fmt::Display;
use std::net::Ipv4Addr;
use std::str::FromStr;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
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
use crate::store::ippools::{DEFAULT_LEASE_TIME, MAX_LEASE_TIME, MIN_LEASE_TIME};
use crate::store::site_config::{
    self as store, DhcpConfig, DhcpMode, DhcpValues, SiteConfig, TftpConfig, TftpValues,
};

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_dhcp, create_dhcp))
        .routes(routes!(get_dhcp, put_dhcp, patch_dhcp, delete_dhcp))
        .routes(routes!(list_tftp, create_tftp))
        .routes(routes!(get_tftp, put_tftp, patch_tftp, delete_tftp))
}

/// Default TFTP block size: the largest that fits a 1500-byte Ethernet frame.
pub const DEFAULT_BLOCK_SIZE: i64 = 1468;
/// Default TFTP root.
pub const DEFAULT_ROOT: &str = "/srv/netboot";
/// Longest interface name (Linux `IFNAMSIZ` - 1).
pub const MAX_IFNAME: usize = 15;
/// Longest root directory (bytes, Linux `PATH_MAX`).
pub const MAX_ROOT: usize = 4096;

/// How one kind of site config reads its own fields (everything but `site`).
trait ConfigApi: SiteConfig + Serialize {
    /// Reads and validates the kind's fields, recording errors in `f`.
    fn values(f: &mut Fields) -> Self::Values;
}

/// A value parsed with `FromStr` (case-insensitive enumerations), `default` when absent.
fn parsed<T: FromStr>(f: &mut Fields, key: &str, default: T) -> T
where
    T::Err: Display,
{
    match f.value(key).cloned() {
        None => default,
        Some(Value::String(s)) => s.parse().unwrap_or_else(|e: T::Err| {
            f.error(key, e.to_string());
            default
        }),
        Some(_) => {
            f.error(key, "must be a string");
            default
        }
    }
}

/// A Linux interface name (1–15 bytes, no `/`, `:` or whitespace, not `.` or `..`), or empty.
fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Ok(());
    }
    if name.len() > MAX_IFNAME
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "`{name}` is not a Linux interface name: 1–{MAX_IFNAME} bytes without `/`, `:` or \
             spaces (such as `eth1`), or empty for every interface"
        ));
    }
    Ok(())
}

/// An absolute directory without `..` segments.
fn check_root(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!(
            "`{path}` is not an absolute path: give one such as {DEFAULT_ROOT}"
        ));
    }
    if path.split('/').any(|segment| segment == "..") {
        return Err(format!(
            "`{path}` has a `..` segment: give the directory itself, such as {DEFAULT_ROOT}"
        ));
    }
    Ok(())
}

impl ConfigApi for DhcpConfig {
    fn values(f: &mut Fields) -> DhcpValues {
        let bind_interface = f
            .opt_text("bind_interface", 4 * MAX_IFNAME, false)
            .unwrap_or_default();
        if let Err(message) = check_ifname(&bind_interface) {
            f.error("bind_interface", message);
        }
        DhcpValues {
            enabled: f.boolean("enabled", true),
            mode: parsed(f, "mode", DhcpMode::Server),
            bind_address: f.ipv4_or("bind_address", Ipv4Addr::UNSPECIFIED),
            bind_interface,
            tftp_ip: f.opt_ipv4("tftp_ip"),
            tftp_port: f.integer("tftp_port", Some(69), 1, 65_535),
            lease_time: f.integer(
                "lease_time",
                Some(DEFAULT_LEASE_TIME),
                MIN_LEASE_TIME,
                MAX_LEASE_TIME,
            ),
            allow_unknown: f.boolean("allow_unknown", false),
        }
    }
}

impl ConfigApi for TftpConfig {
    fn values(f: &mut Fields) -> TftpValues {
        let root_directory = f
            .opt_text("root_directory", MAX_ROOT, false)
            .unwrap_or_else(|| DEFAULT_ROOT.to_owned());
        if let Err(message) = check_root(&root_directory) {
            f.error("root_directory", message);
        }
        TftpValues {
            enabled: f.boolean("enabled", true),
            bind_address: f.ipv4_or("bind_address", Ipv4Addr::UNSPECIFIED),
            bind_port: f.integer("bind_port", Some(69), 1, 65_535),
            block_size: f.integer("block_size", Some(DEFAULT_BLOCK_SIZE), 8, 65_464),
            max_windowsize: f.integer("max_windowsize", Some(64), 1, 64),
            max_transfers: f.integer(
                "max_transfers",
                Some(256),
                1,
                i64::try_from(ims_proto::MAX_TFTP_TRANSFERS).unwrap_or(i64::MAX),
            ),
            root_directory,
        }
    }
}

/// Validates a body (laid over `base` for PATCH): the site and the kind's fields.
async fn values<C: ConfigApi>(
    conn: &mut sqlx::AnyConnection,
    base: Option<&C>,
    input: &impl Serialize,
) -> Result<(i64, C::Values), ApiError> {
    let mut f = Fields::merge(base, input);
    let site = f.site("site", true);
    let values = C::values(&mut f);
    let site_id = resolve_site(&mut f, conn, "site", site.as_deref()).await?;
    f.finish()?;
    let Some(site_id) = site_id else {
        // `finish` reported the missing site.
        return Err(ApiError::bad_request("invalid fields: site"));
    };
    Ok((site_id, values))
}

async fn list<C: ConfigApi>(state: &AppState, q: ConfigQuery) -> Result<Json<Page<C>>, ApiError> {
    let page = page_request(q.page, q.page_size)?;
    let mut conn = read_conn(state).await?;
    let site = site_filter(&mut conn, q.site.as_deref()).await?;
    let (count, items) = store::list::<C>(&mut conn, site, page).await?;
    Ok(Json(Page::new(page, count, items)))
}

async fn create<C: ConfigApi>(
    state: &AppState,
    input: &impl Serialize,
) -> Result<(StatusCode, Json<C>), ApiError> {
    let mut tx = state.db.begin_write().await?;
    let (site_id, v) = values::<C>(&mut tx, None, input).await?;
    let config = store::create::<C>(&mut tx, site_id, &v, now_ms()).await?;
    commit(tx).await?;
    Ok((StatusCode::CREATED, Json(config)))
}

async fn get<C: ConfigApi>(state: &AppState, id: i64) -> Result<Json<C>, ApiError> {
    let mut conn = read_conn(state).await?;
    Ok(Json(store::get::<C>(&mut conn, id).await?))
}

async fn write<C: ConfigApi>(
    state: &AppState,
    id: i64,
    input: &impl Serialize,
    patch: bool,
) -> Result<Json<C>, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let current = store::get::<C>(&mut tx, id).await?;
    let (site_id, v) = values::<C>(&mut tx, patch.then_some(&current), input).await?;
    let config = store::update::<C>(&mut tx, id, site_id, &v, now_ms()).await?;
    commit(tx).await?;
    Ok(Json(config))
}

async fn delete<C: ConfigApi>(state: &AppState, id: i64) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    store::delete::<C>(&mut tx, id).await?;
    commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Filters and pagination of the config lists.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConfigQuery {
    /// Page number, from 1 (default 1).
    page: Option<u32>,
    /// Items per page, 1–10000 (default 100).
    page_size: Option<u32>,
    /// Only this site's config (id or name).
    site: Option<String>,
}

/// A site's DHCP config to create or replace (PUT), or changes to it (PATCH: absent fields
/// stay).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DhcpConfigInput {
    /// The site's id or name (one DHCP config per site). Required for POST and PUT.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String)]
    site: Option<Value>,
    /// Serve DHCP (default true).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<bool>)]
    enabled: Option<Value>,
    /// `server` (default) or `proxy`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    mode: Option<Value>,
    /// IPv4 address to bind (default 0.0.0.0).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    bind_address: Option<Value>,
    /// Interface to bind: 1–15 bytes without `/`, `:` or spaces; empty (default) for all.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    bind_interface: Option<Value>,
    /// TFTP server to announce (IPv4; null, the default, for the edge itself).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    tftp_ip: Option<Value>,
    /// Its port, 1–65535 (default 69).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    tftp_port: Option<Value>,
    /// Lease time in seconds, 60–31536000 (default 3600).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    lease_time: Option<Value>,
    /// Give unknown MACs an address (default false).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<bool>)]
    allow_unknown: Option<Value>,
}

/// A site's TFTP config to create or replace (PUT), or changes to it (PATCH: absent fields
/// stay).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TftpConfigInput {
    /// The site's id or name (one TFTP config per site). Required for POST and PUT.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String)]
    site: Option<Value>,
    /// Serve TFTP (default true).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<bool>)]
    enabled: Option<Value>,
    /// IPv4 address to bind (default 0.0.0.0).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    bind_address: Option<Value>,
    /// UDP port, 1–65535 (default 69).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    bind_port: Option<Value>,
    /// Largest block size offered, 8–65464 (default 1468).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    block_size: Option<Value>,
    /// Largest window size offered, 1–64 (default 64).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    max_windowsize: Option<Value>,
    /// Concurrent transfers at most, 1–16384, the edge's bound (default 256).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    max_transfers: Option<Value>,
    /// Absolute directory without `..` (default /srv/netboot).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    root_directory: Option<Value>,
}

/// List DHCP configs.
#[utoipa::path(get, path = "/api/dhcp-config", tag = "dhcp-config", params(ConfigQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of DHCP configs, ordered by id", body = Page<DhcpConfig>),
        (status = 400, description = "Invalid page parameters or unknown site", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
    ))]
async fn list_dhcp(
    _: AuthUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ConfigQuery>,
) -> Result<Json<Page<DhcpConfig>>, ApiError> {
    list(&state, q).await
}

/// Create a site's DHCP config.
#[utoipa::path(post, path = "/api/dhcp-config", tag = "dhcp-config",
    request_body = DhcpConfigInput,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = DhcpConfig),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 409, description = "The site has a DHCP config already (field `site`)", body = Problem),
    ))]
async fn create_dhcp(
    _: AdminUser,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<DhcpConfigInput>,
) -> Result<(StatusCode, Json<DhcpConfig>), ApiError> {
    create(&state, &input).await
}

/// Read a DHCP config.
#[utoipa::path(get, path = "/api/dhcp-config/{id}", tag = "dhcp-config",
    params(("id" = i64, Path, description = "Config id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The config", body = DhcpConfig),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 404, description = "No such config", body = Problem),
    ))]
async fn get_dhcp(
    _: AuthUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<DhcpConfig>, ApiError> {
    get(&state, id).await
}

/// Replace a DHCP config (absent optional fields reset to their defaults).
#[utoipa::path(put, path = "/api/dhcp-config/{id}", tag = "dhcp-config",
    params(("id" = i64, Path, description = "Config id")),
    request_body = DhcpConfigInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The replaced config", body = DhcpConfig),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such config", body = Problem),
        (status = 409, description = "The site has a DHCP config already (field `site`)", body = Problem),
    ))]
async fn put_dhcp(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<DhcpConfigInput>,
) -> Result<Json<DhcpConfig>, ApiError> {
    write(&state, id, &input, false).await
}

/// Change a DHCP config (absent fields stay).
#[utoipa::path(patch, path = "/api/dhcp-config/{id}", tag = "dhcp-config",
    params(("id" = i64, Path, description = "Config id")),
    request_body = DhcpConfigInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The changed config", body = DhcpConfig),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such config", body = Problem),
        (status = 409, description = "The site has a DHCP config already (field `site`)", body = Problem),
    ))]
async fn patch_dhcp(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<DhcpConfigInput>,
) -> Result<Json<DhcpConfig>, ApiError> {
    write(&state, id, &input, true).await
}

/// Delete a DHCP config.
#[utoipa::path(delete, path = "/api/dhcp-config/{id}", tag = "dhcp-config",
    params(("id" = i64, Path, description = "Config id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such config", body = Problem),
    ))]
async fn delete_dhcp(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    delete::<DhcpConfig>(&state, id).await
}

/// List TFTP configs.
#[utoipa::path(get, path = "/api/tftp-config", tag = "tftp-config", params(ConfigQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of TFTP configs, ordered by id", body = Page<TftpConfig>),
        (status = 400, description = "Invalid page parameters or unknown site", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
    ))]
async fn list_tftp(
    _: AuthUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ConfigQuery>,
) -> Result<Json<Page<TftpConfig>>, ApiError> {
    list(&state, q).await
}

/// Create a site's TFTP config.
#[utoipa::path(post, path = "/api/tftp-config", tag = "tftp-config",
    request_body = TftpConfigInput,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = TftpConfig),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 409, description = "The site has a TFTP config already (field `site`)", body = Problem),
    ))]
async fn create_tftp(
    _: AdminUser,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<TftpConfigInput>,
) -> Result<(StatusCode, Json<TftpConfig>), ApiError> {
    create(&state, &input).await
}

/// Read a TFTP config.
#[utoipa::path(get, path = "/api/tftp-config/{id}", tag = "tftp-config",
    params(("id" = i64, Path, description = "Config id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The config", body = TftpConfig),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 404, description = "No such config", body = Problem),
    ))]
async fn get_tftp(
    _: AuthUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<TftpConfig>, ApiError> {
    get(&state, id).await
}

/// Replace a TFTP config (absent optional fields reset to their defaults).
#[utoipa::path(put, path = "/api/tftp-config/{id}", tag = "tftp-config",
    params(("id" = i64, Path, description = "Config id")),
    request_body = TftpConfigInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The replaced config", body = TftpConfig),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such config", body = Problem),
        (status = 409, description = "The site has a TFTP config already (field `site`)", body = Problem),
    ))]
async fn put_tftp(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<TftpConfigInput>,
) -> Result<Json<TftpConfig>, ApiError> {
    write(&state, id, &input, false).await
}

/// Change a TFTP config (absent fields stay).
#[utoipa::path(patch, path = "/api/tftp-config/{id}", tag = "tftp-config",
    params(("id" = i64, Path, description = "Config id")),
    request_body = TftpConfigInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The changed config", body = TftpConfig),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such config", body = Problem),
        (status = 409, description = "The site has a TFTP config already (field `site`)", body = Problem),
    ))]
async fn patch_tftp(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<TftpConfigInput>,
) -> Result<Json<TftpConfig>, ApiError> {
    write(&state, id, &input, true).await
}

/// Delete a TFTP config.
#[utoipa::path(delete, path = "/api/tftp-config/{id}", tag = "tftp-config",
    params(("id" = i64, Path, description = "Config id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such config", body = Problem),
    ))]
async fn delete_tftp(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    delete::<TftpConfig>(&state, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_and_roots() {
        for ok in ["", "eth0", "enp0s31f6", "br-prov.100", &"x".repeat(15)] {
            assert!(check_ifname(ok).is_ok(), "{ok}");
        }
        for bad in [&"x".repeat(16), "a/b", "eth0:1", "a b", ".", ".."] {
            assert!(check_ifname(bad).is_err(), "{bad}");
        }
        assert!(check_root("/srv/netboot").is_ok());
        assert!(check_root("srv/netboot").is_err());
        assert!(check_root("/srv/../etc").is_err());
    }
}
