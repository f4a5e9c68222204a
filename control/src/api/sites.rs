//! Edge sites: `/api/sites` (list, create) and `/api/sites/{id}` (read, replace, change,
//! delete), where `{id}` is a site's id or its name.
//!
//! Also the request-reading helpers every site-side module shares (`Fields`, `present`,
//! `check_name`, `resolve_site`, `read_conn`): bodies are read into JSON values so a bad
//! value becomes a field error, PATCH bodies are laid over the stored object, and all invalid
//! fields are reported at once.

use std::net::Ipv4Addr;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::de::Deserializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::page::{Page, PageParams, PageRequest};
use crate::auth::{AdminUser, AuthUser};
use crate::db::{StoreError, now_ms};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, FieldError, Problem};
use crate::state::AppState;
use crate::store::sites::{self, Site, SiteValues};

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sites, create_site))
        .routes(routes!(get_site, put_site, patch_site, delete_site))
}

// ---------------------------------------------------------------------------------------------
// Shared request helpers.

/// Longest name of a site or boot profile.
pub(crate) const MAX_NAME: usize = 63;
/// Longest description (bytes).
pub(crate) const MAX_DESCRIPTION: usize = 4096;

/// Deserialises a body field that may be absent (`None`, through `#[serde(default)]`), null
/// (`Some(Value::Null)`) or any value (`Some(v)`).
pub(crate) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Whether `name` is a usable site or boot-profile name; the message says what is accepted.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let accepted = "use 1–63 letters, digits, `.`, `_` or `-`, starting with a letter or digit \
                    and not all digits (for example `edge-tokyo-1`)";
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > MAX_NAME || !first_ok || !chars_ok {
        return Err(format!("`{name}` is not a valid name: {accepted}"));
    }
    if sites::is_id(name) {
        return Err(format!(
            "`{name}` is all digits and would read as an id: {accepted}"
        ));
    }
    Ok(())
}

/// A request body read field by field, collecting every invalid field.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    map: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields {
    /// The fields present in `input` laid over `base` (the stored object for PATCH, `None` for
    /// POST and PUT, whose absent fields take their defaults).
    pub(crate) fn merge(base: Option<&impl Serialize>, input: &impl Serialize) -> Self {
        let object = |v: Option<Value>| match v {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let mut map = object(base.and_then(|b| serde_json::to_value(b).ok()));
        map.extend(object(serde_json::to_value(input).ok()));
        Self {
            map,
            errors: Vec::new(),
        }
    }

    /// The fields of `input` alone (an object; anything else reads as no fields).
    pub(crate) fn of(input: &impl Serialize) -> Self {
        Self::merge(None::<&Value>, input)
    }

    /// The keys present (null included).
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Takes over the errors of `inner`, a nested object's fields, as `prefix.field`.
    pub(crate) fn absorb(&mut self, prefix: &str, inner: Self) {
        for e in inner.errors {
            self.errors
                .push(FieldError::new(format!("{prefix}.{}", e.field), e.message));
        }
    }

    /// The value of `key`; `None` when absent or null.
    pub(crate) fn value(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Records an invalid field.
    pub(crate) fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// Whether `field` already has an error.
    pub(crate) fn has_error(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }

    /// An optional string of at most `max` bytes without control characters (other than tab
    /// and, with `multiline`, newlines); empty counts as absent.
    pub(crate) fn opt_text(&mut self, key: &str, max: usize, multiline: bool) -> Option<String> {
        let s = match self.value(key)? {
            Value::String(s) => s.clone(),
            _ => {
                self.error(key, "must be a string or null");
                return None;
            }
        };
        if s.is_empty() {
            return None;
        }
        let bad = |c: char| c.is_control() && c != '\t' && !(multiline && matches!(c, '\n' | '\r'));
        if s.len() > max {
            self.error(
                key,
                format!("is {} bytes long: at most {max} are accepted", s.len()),
            );
            return None;
        }
        if s.chars().any(bad) {
            let what = if multiline {
                "control characters other than tabs and newlines"
            } else {
                "control characters or line breaks"
            };
            self.error(key, format!("contains {what}; remove them"));
            return None;
        }
        Some(s)
    }

    /// A required string (see [`Self::opt_text`]).
    pub(crate) fn text(&mut self, key: &str, max: usize, what: &str) -> String {
        let present = self.value(key).is_some();
        match self.opt_text(key, max, false) {
            Some(s) => s,
            None => {
                if !self.has_error(key) {
                    let why = if present { "is empty" } else { "is required" };
                    self.error(key, format!("{why}: give {what}"));
                }
                String::new()
            }
        }
    }

    /// A required site or boot-profile name ([`check_name`]).
    pub(crate) fn name(&mut self, key: &str) -> String {
        let name = self.text(key, 4 * MAX_NAME, "a name such as `edge-tokyo-1`");
        if !name.is_empty() {
            if let Err(message) = check_name(&name) {
                self.error(key, message);
            }
        }
        name
    }

    /// The `description` field (default empty).
    pub(crate) fn description(&mut self) -> String {
        self.opt_text("description", MAX_DESCRIPTION, true)
            .unwrap_or_default()
    }

    /// A boolean (default `default`).
    pub(crate) fn boolean(&mut self, key: &str, default: bool) -> bool {
        match self.value(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.error(key, "must be true or false");
                default
            }
        }
    }

    /// An integer in `min..=max` (a JSON number or a string of digits), `default` when absent;
    /// without a default it is required.
    pub(crate) fn integer(&mut self, key: &str, default: Option<i64>, min: i64, max: i64) -> i64 {
        let fallback = default.unwrap_or(min);
        let parsed = match self.value(key) {
            None => match default {
                Some(d) => return d,
                None => {
                    self.error(
                        key,
                        format!("is required: give an integer from {min} to {max}"),
                    );
                    return fallback;
                }
            },
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
            Some(_) => None,
        };
        match parsed {
            Some(n) if (min..=max).contains(&n) => n,
            _ => {
                let shown = self.value(key).map(ToString::to_string).unwrap_or_default();
                self.error(
                    key,
                    format!("{shown} is not an integer from {min} to {max}"),
                );
                fallback
            }
        }
    }

    /// An optional IPv4 address (null, absent or empty: none).
    pub(crate) fn opt_ipv4(&mut self, key: &str) -> Option<Ipv4Addr> {
        let v = self.value(key)?;
        match v.as_str().map(str::trim) {
            Some("") => None,
            Some(s) => match s.parse::<Ipv4Addr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.error(
                        key,
                        format!("`{s}` is not an IPv4 address such as 192.0.2.10"),
                    );
                    None
                }
            },
            None => {
                self.error(key, "must be an IPv4 address string such as \"192.0.2.10\"");
                None
            }
        }
    }

    /// An IPv4 address, `default` when absent or null.
    pub(crate) fn ipv4_or(&mut self, key: &str, default: Ipv4Addr) -> Ipv4Addr {
        self.opt_ipv4(key).unwrap_or(default)
    }

    /// A site reference: an id (number or digits) or a name; `None` when absent, null or
    /// empty. With `required`, a missing site is an error.
    pub(crate) fn site(&mut self, key: &str, required: bool) -> Option<String> {
        let site = match self.value(key) {
            None => None,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(id) => Some(id.to_string()),
                None => {
                    self.error(key, format!("{n} is not a site id"));
                    return None;
                }
            },
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.trim().to_owned()),
            Some(_) => {
                self.error(key, "must be a site id or name");
                return None;
            }
        };
        if site.is_none() && required {
            self.error(key, "is required: give the site's id or name");
        }
        site
    }

    /// `Ok` when no field was invalid, else a 400 listing them all.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}

/// Resolves a site reference read by [`Fields::site`], recording an error on `field` when no
/// site matches.
///
/// # Errors
/// The store failed.
pub(crate) async fn resolve_site(
    fields: &mut Fields,
    conn: &mut AnyConnection,
    field: &str,
    key: Option<&str>,
) -> Result<Option<i64>, ApiError> {
    let Some(key) = key else { return Ok(None) };
    let id = sites::find_id(conn, key).await?;
    if id.is_none() {
        fields.error(
            field,
            format!(
                "no site has the id or name `{key}`: create it with POST /api/sites or give an \
                 existing one"
            ),
        );
    }
    Ok(id)
}

/// Resolves the `site` query filter (id or name): a 400 naming `site` when no site matches.
///
/// # Errors
/// No such site; the store failed.
pub(crate) async fn site_filter(
    conn: &mut AnyConnection,
    site: Option<&str>,
) -> Result<Option<i64>, ApiError> {
    let mut fields = Fields::default();
    let id = resolve_site(
        &mut fields,
        conn,
        "site",
        site.filter(|s| !s.trim().is_empty()),
    )
    .await?;
    fields.finish()?;
    Ok(id)
}

/// Validates the page parameters.
///
/// # Errors
/// `page` or `page_size` is out of range.
pub(crate) fn page_request(
    page: Option<u32>,
    page_size: Option<u32>,
) -> Result<PageRequest, ApiError> {
    PageParams { page, page_size }.request()
}

/// A pooled connection for reads.
///
/// # Errors
/// The store is unreachable.
pub(crate) async fn read_conn(state: &AppState) -> Result<PoolConnection<Any>, ApiError> {
    Ok(state.db.pool().acquire().await.map_err(StoreError::from)?)
}

/// Commits a write transaction.
///
/// # Errors
/// The commit failed.
pub(crate) async fn commit(tx: crate::db::WriteTx) -> Result<(), ApiError> {
    Ok(tx.commit().await.map_err(StoreError::from)?)
}

// ---------------------------------------------------------------------------------------------
// Sites.

/// A site to create or replace (PUT), or changes to one (PATCH: absent fields stay).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiteInput {
    /// 1–63 letters, digits, `.`, `_` or `-`, starting with a letter or digit, not all digits;
    /// unique ignoring case. Required for POST and PUT.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String)]
    name: Option<Value>,
    /// Free text (default empty).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    description: Option<Value>,
}

fn site_values(base: Option<&Site>, input: &SiteInput) -> Result<SiteValues, ApiError> {
    let mut f = Fields::merge(base, input);
    let name = f.name("name");
    let description = f.description();
    f.finish()?;
    Ok(SiteValues { name, description })
}

/// Pagination of the site list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SiteQuery {
    /// Page number, from 1 (default 1).
    page: Option<u32>,
    /// Items per page, 1–10000 (default 100).
    page_size: Option<u32>,
}

/// The id of the site `key` (id or name) names, or 404.
async fn site_id(conn: &mut AnyConnection, key: &str) -> Result<i64, ApiError> {
    sites::find_id(conn, key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("site `{key}`")))
}

/// List sites.
#[utoipa::path(get, path = "/api/sites", tag = "sites", params(SiteQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of sites, ordered by id", body = Page<Site>),
        (status = 400, description = "Invalid page parameters", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
    ))]
async fn list_sites(
    _: AuthUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SiteQuery>,
) -> Result<Json<Page<Site>>, ApiError> {
    let page = page_request(q.page, q.page_size)?;
    let mut conn = read_conn(&state).await?;
    let (count, list) = sites::list(&mut conn, page).await?;
    Ok(Json(Page::new(page, count, list)))
}

/// Create a site.
#[utoipa::path(post, path = "/api/sites", tag = "sites", request_body = SiteInput,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Site),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 409, description = "The name is taken (field `name`)", body = Problem),
    ))]
async fn create_site(
    _: AdminUser,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<SiteInput>,
) -> Result<(StatusCode, Json<Site>), ApiError> {
    let values = site_values(None, &input)?;
    let mut tx = state.db.begin_write().await?;
    let site = sites::create(&mut tx, &values, now_ms()).await?;
    commit(tx).await?;
    Ok((StatusCode::CREATED, Json(site)))
}

/// Read a site.
#[utoipa::path(get, path = "/api/sites/{id}", tag = "sites",
    params(("id" = String, Path, description = "Site id or name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The site", body = Site),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 404, description = "No such site", body = Problem),
    ))]
async fn get_site(
    _: AuthUser,
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Site>, ApiError> {
    let mut conn = read_conn(&state).await?;
    let id = site_id(&mut conn, &key).await?;
    Ok(Json(sites::get(&mut conn, id).await?))
}

/// Shared by PUT and PATCH: `patch` lays the input over the stored site.
async fn write_site(
    state: &AppState,
    key: &str,
    input: &SiteInput,
    patch: bool,
) -> Result<Json<Site>, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let id = site_id(&mut tx, key).await?;
    let current = if patch {
        Some(sites::get(&mut tx, id).await?)
    } else {
        None
    };
    let values = site_values(current.as_ref(), input)?;
    let site = sites::update(&mut tx, id, &values, now_ms()).await?;
    commit(tx).await?;
    Ok(Json(site))
}

/// Replace a site (absent optional fields reset to their defaults).
#[utoipa::path(put, path = "/api/sites/{id}", tag = "sites",
    params(("id" = String, Path, description = "Site id or name")),
    request_body = SiteInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The replaced site", body = Site),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such site", body = Problem),
        (status = 409, description = "The name is taken (field `name`)", body = Problem),
    ))]
async fn put_site(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
    ApiJson(input): ApiJson<SiteInput>,
) -> Result<Json<Site>, ApiError> {
    write_site(&state, &key, &input, false).await
}

/// Change a site (absent fields stay as they are).
#[utoipa::path(patch, path = "/api/sites/{id}", tag = "sites",
    params(("id" = String, Path, description = "Site id or name")),
    request_body = SiteInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The changed site", body = Site),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such site", body = Problem),
        (status = 409, description = "The name is taken (field `name`)", body = Problem),
    ))]
async fn patch_site(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
    ApiJson(input): ApiJson<SiteInput>,
) -> Result<Json<Site>, ApiError> {
    write_site(&state, &key, &input, true).await
}

/// Delete a site. Its IP pools, boot profiles and DHCP/TFTP configs are deleted with it; its
/// clusters, workers and leases remain, with no site (`site` null).
#[utoipa::path(delete, path = "/api/sites/{id}", tag = "sites",
    params(("id" = String, Path, description = "Site id or name")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted, with its IP pools, boot profiles and DHCP/TFTP \
                                      configs; its clusters, workers and leases remain without \
                                      a site"),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such site", body = Problem),
    ))]
async fn delete_site(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let id = site_id(&mut tx, &key).await?;
    sites::delete(&mut tx, id).await?;
    commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        for ok in ["edge-1", "a", "1st-floor", "x.y_z", &"a".repeat(63)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "123", &"a".repeat(64), "é"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patch_fields_lay_over_the_base() {
        #[derive(Serialize)]
        struct Base {
            name: &'static str,
            description: &'static str,
        }
        let input: SiteInput = serde_json::from_str(r#"{"description": null}"#).unwrap();
        let mut f = Fields::merge(
            Some(&Base {
                name: "edge",
                description: "old",
            }),
            &input,
        );
        assert_eq!(f.name("name"), "edge");
        assert_eq!(f.description(), "");
        assert!(f.finish().is_ok());
        let bad: Result<SiteInput, _> = serde_json::from_str(r#"{"nam": "x"}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn integers_booleans_and_addresses_report_their_field() {
        let mut f = Fields::default();
        f.map.insert("port".into(), Value::from(70_000));
        f.map.insert("flag".into(), Value::from("yes"));
        f.map.insert("ip".into(), Value::from("10.0.0.300"));
        f.map.insert("n".into(), Value::from("42"));
        assert_eq!(f.integer("n", None, 1, 100), 42);
        assert_eq!(f.integer("port", Some(69), 1, 65535), 69);
        assert!(f.boolean("flag", true));
        assert_eq!(f.opt_ipv4("ip"), None);
        assert_eq!(f.integer("absent", Some(5), 1, 9), 5);
        let fields: Vec<String> = f.errors.iter().map(|e| e.field.clone()).collect();
        assert_eq!(fields, ["port", "flag", "ip"]);
    }
}
