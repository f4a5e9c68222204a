//! The inventory handlers, with paths relative to a version prefix
//! (`/o2ims-infrastructureInventory/v1` and the others; see [`crate::o2ims::routes()`]).
//!
//! Lists answer a JSON array after the SOL013 filter and selectors ([`super::query`]), at most
//! `limit` (default and maximum 1000) objects per page with a `Link: <…>; rel="next"` header
//! carrying the `nextpage_opaque_marker` of the next page ([`page`]); one object is looked up
//! by its UUID (an unknown or malformed id is 404).

use axum::Json;
use axum::extract::{MatchedPath, OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::objects::{
    self, CloudInfo, DeploymentManagerInfo, LocationInfo, OCloudSiteInfo, ResourceInfo,
    ResourcePoolInfo, ResourceTypeInfo,
};
use super::query::{self, QueryError, SelectorParams};
use super::{ApiVersion, ApiVersionInformation, CloudSettings, INVENTORY_VERSIONS, cloud_settings};
use crate::auth::scope::ScopeRead;
use crate::error::{ApiError, ApiPath, ApiQuery, FieldError};
use crate::state::AppState;
use crate::store::sites::Site;

/// The SOL013 query parameters of every list.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `(op,attr,value[,value…])` terms joined with `;` (all must hold); `attr` may be a path
    /// such as `extensions/role`; operators eq, neq, gt, lt, gte, lte, cont, ncont, in, nin.
    pub filter: Option<String>,
    /// Only these attributes (comma-separated paths), plus the identifier.
    pub fields: Option<String>,
    /// Leave these attributes out (comma-separated paths).
    pub exclude_fields: Option<String>,
    /// Every attribute (a flag).
    pub all_fields: Option<String>,
    /// Leave out the attributes excluded by default (a flag; the default).
    pub exclude_default: Option<String>,
    /// The page to answer: the marker from the previous page's `Link: <…>; rel="next"`
    /// header (opaque; absent for the first page).
    pub nextpage_opaque_marker: Option<String>,
    /// Most objects per page, 1 to 1000 (default 1000).
    pub limit: Option<String>,
}

/// A page of a list: its `Link` header (when more follow) and the objects.
pub type Paged = (HeaderMap, Json<Vec<Value>>);

/// Cuts the page `q` asks for out of `items` (already filtered and selected, in a stable
/// order) and adds the `Link: <…>; rel="next"` header when more follow.
///
/// # Errors
/// A malformed `nextpage_opaque_marker` or `limit` (400).
pub fn page(items: Vec<Value>, q: &ListQuery, uri: &Uri) -> Result<Paged, ApiError> {
    let paging = query::parse_paging(q.nextpage_opaque_marker.as_deref(), q.limit.as_deref())
        .map_err(query_error)?;
    let total = items.len();
    let mut headers = HeaderMap::new();
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path(), |pq| pq.as_str());
    if let Some(link) = query::next_link(path, paging, total) {
        if let Ok(v) = HeaderValue::from_str(&link) {
            headers.insert(header::LINK, v);
        }
    }
    let items = items
        .into_iter()
        .skip(paging.start)
        .take(paging.limit)
        .collect();
    Ok((headers, Json(items)))
}

fn query_error(e: QueryError) -> ApiError {
    ApiError::validation(vec![FieldError::new(e.parameter, e.message)])
}

/// Serialises, filters, selects and pages a list. `attrs` are the type's attribute names,
/// `id` its identifier attribute.
pub(crate) fn answer<T: Serialize>(
    items: &[T],
    q: &ListQuery,
    attrs: &[&str],
    id: &str,
    uri: &Uri,
) -> Result<Paged, ApiError> {
    let filter = match &q.filter {
        Some(f) => {
            let f = query::parse_filter(f).map_err(query_error)?;
            f.check_attributes(attrs).map_err(query_error)?;
            Some(f)
        }
        None => None,
    };
    let selector = SelectorParams {
        all_fields: q.all_fields.clone(),
        fields: q.fields.clone(),
        exclude_fields: q.exclude_fields.clone(),
        exclude_default: q.exclude_default.clone(),
    }
    .selector(attrs)
    .map_err(query_error)?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let v = serde_json::to_value(item).map_err(|e| ApiError::internal(&e))?;
        if filter.as_ref().is_none_or(|f| f.matches(&v)) {
            out.push(selector.apply(v, id, &[]));
        }
    }
    page(out, q, uri)
}

const TYPE_ATTRS: &[&str] = &[
    "resourceTypeId",
    "name",
    "description",
    "vendor",
    "model",
    "version",
    "resourceKind",
    "resourceClass",
    "alarmDictionary",
    "extensions",
];
const POOL_ATTRS: &[&str] = &[
    "resourcePoolId",
    "oCloudSiteId",
    "oCloudId",
    "globalLocationId",
    "name",
    "description",
    "location",
    "extensions",
];
const RESOURCE_ATTRS: &[&str] = &[
    "resourceId",
    "resourcePoolId",
    "resourceTypeId",
    "globalAssetId",
    "description",
    "tags",
    "groups",
    "elements",
    "extensions",
];
const DM_ATTRS: &[&str] = &[
    "deploymentManagerId",
    "name",
    "description",
    "oCloudId",
    "serviceUri",
    "supportedLocations",
    "capabilities",
    "capacity",
    "extensions",
];
const LOCATION_ATTRS: &[&str] = &[
    "globalLocationId",
    "name",
    "description",
    "oCloudSiteIds",
    "address",
    "extensions",
];
const SITE_ATTRS: &[&str] = &[
    "oCloudSiteId",
    "globalLocationId",
    "name",
    "description",
    "resourcePools",
    "extensions",
];

async fn settings(state: &AppState) -> Result<CloudSettings, ApiError> {
    Ok(cloud_settings(&state.db).await?)
}

async fn sites(state: &AppState) -> Result<Vec<Site>, ApiError> {
    let mut conn = state
        .db
        .pool()
        .acquire()
        .await
        .map_err(crate::db::StoreError::from)?;
    Ok(objects::all_sites(&mut conn).await?)
}

/// The site whose `kind` id is `id`.
async fn site_by(
    state: &AppState,
    cloud: &CloudSettings,
    kind: &str,
    id: &str,
    what: &str,
) -> Result<Site, ApiError> {
    let not_found = || ApiError::not_found(format!("{what} {id}"));
    let uuid: Uuid = id.parse().map_err(|_| not_found())?;
    sites(state)
        .await?
        .into_iter()
        .find(|s| cloud.id(kind, s.id) == uuid)
        .ok_or_else(not_found)
}

/// The O-Cloud.
#[utoipa::path(get, path = "/", tag = "o2ims", security(("bearer" = [])),
    responses(
        (status = 200, description = "The O-Cloud", body = CloudInfo),
        (status = 401, description = "No or invalid token", body = crate::error::Problem)))]
async fn get_cloud(
    _caller: ScopeRead,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<CloudInfo>, ApiError> {
    let cloud = settings(&state).await?;
    let uri = cloud.service_uri.clone().unwrap_or_else(|| {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    });
    Ok(Json(cloud.cloud_info(uri)))
}

/// The versions served under this major version.
#[utoipa::path(get, path = "/api_versions", tag = "o2ims", security(("bearer" = [])),
    responses(
        (status = 200, description = "The versions of this major version", body = ApiVersionInformation),
        (status = 401, description = "No or invalid token", body = crate::error::Problem)))]
async fn versions(_caller: ScopeRead, path: MatchedPath) -> Json<ApiVersionInformation> {
    let prefix = path.as_str().trim_end_matches("/api_versions").to_owned();
    let major = prefix.rsplit('/').next().unwrap_or_default();
    let api_versions = INVENTORY_VERSIONS
        .iter()
        .filter(|(m, _)| *m == major)
        .map(|(_, v)| ApiVersion {
            version: (*v).to_owned(),
            is_deprecated: false,
        })
        .collect();
    Json(ApiVersionInformation {
        uri_prefix: prefix,
        api_versions,
    })
}

/// Resource types.
#[utoipa::path(get, path = "/resourceTypes", tag = "o2ims", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "Resource types", body = Vec<ResourceTypeInfo>,
            headers(("Link" = String, description = "`<…?nextpage_opaque_marker=…>; rel=\"next\"` when more objects follow"))),
        (status = 400, description = "Malformed filter, selector, limit or nextpage_opaque_marker", body = crate::error::Problem),
        (status = 401, description = "No or invalid token", body = crate::error::Problem)))]
async fn list_types(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
    OriginalUri(uri): OriginalUri,
) -> Result<Paged, ApiError> {
    let cloud = settings(&state).await?;
    answer(
        &cloud.resource_types(),
        &q,
        TYPE_ATTRS,
        "resourceTypeId",
        &uri,
    )
}

/// One resource type.
#[utoipa::path(get, path = "/resourceTypes/{resourceTypeId}", tag = "o2ims",
    security(("bearer" = [])),
    params(("resourceTypeId" = String, Path, description = "Resource type id (UUID)")),
    responses(
        (status = 200, description = "The resource type", body = ResourceTypeInfo),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 404, description = "No such resource type", body = crate::error::Problem)))]
async fn get_type(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ResourceTypeInfo>, ApiError> {
    let cloud = settings(&state).await?;
    cloud
        .resource_types()
        .into_iter()
        .find(|t| t.resource_type_id.to_string() == id.to_ascii_lowercase())
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("resource type {id}")))
}

/// Resource pools (one per site).
#[utoipa::path(get, path = "/resourcePools", tag = "o2ims", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "Resource pools", body = Vec<ResourcePoolInfo>,
            headers(("Link" = String, description = "`<…?nextpage_opaque_marker=…>; rel=\"next\"` when more objects follow"))),
        (status = 400, description = "Malformed filter, selector, limit or nextpage_opaque_marker", body = crate::error::Problem),
        (status = 401, description = "No or invalid token", body = crate::error::Problem)))]
async fn list_pools(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
    OriginalUri(uri): OriginalUri,
) -> Result<Paged, ApiError> {
    let cloud = settings(&state).await?;
    let pools: Vec<_> = sites(&state).await?.iter().map(|s| cloud.pool(s)).collect();
    answer(&pools, &q, POOL_ATTRS, "resourcePoolId", &uri)
}

/// One resource pool.
#[utoipa::path(get, path = "/resourcePools/{resourcePoolId}", tag = "o2ims",
    security(("bearer" = [])),
    params(("resourcePoolId" = String, Path, description = "Resource pool id (UUID)")),
    responses(
        (status = 200, description = "The pool", body = ResourcePoolInfo),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 404, description = "No such pool", body = crate::error::Problem)))]
async fn get_pool(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ResourcePoolInfo>, ApiError> {
    let cloud = settings(&state).await?;
    let site = site_by(&state, &cloud, "pool", &id, "resource pool").await?;
    Ok(Json(cloud.pool(&site)))
}

/// The resources (machines) of a pool.
#[utoipa::path(get, path = "/resourcePools/{resourcePoolId}/resources", tag = "o2ims",
    security(("bearer" = [])),
    params(("resourcePoolId" = String, Path, description = "Resource pool id (UUID)"), ListQuery),
    responses(
        (status = 200, description = "The pool's resources", body = Vec<ResourceInfo>,
            headers(("Link" = String, description = "`<…?nextpage_opaque_marker=…>; rel=\"next\"` when more objects follow"))),
        (status = 400, description = "Malformed filter, selector, limit or nextpage_opaque_marker", body = crate::error::Problem),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 404, description = "No such pool", body = crate::error::Problem)))]
async fn list_resources(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
    OriginalUri(uri): OriginalUri,
) -> Result<Paged, ApiError> {
    let cloud = settings(&state).await?;
    let site = site_by(&state, &cloud, "pool", &id, "resource pool").await?;
    let machines = objects::site_machines(&state.db, site.id).await?;
    let resources: Vec<_> = machines
        .iter()
        .map(|m| cloud.resource(site.id, m))
        .collect();
    answer(&resources, &q, RESOURCE_ATTRS, "resourceId", &uri)
}

/// One resource of a pool.
#[utoipa::path(get, path = "/resourcePools/{resourcePoolId}/resources/{resourceId}",
    tag = "o2ims", security(("bearer" = [])),
    params(("resourcePoolId" = String, Path, description = "Resource pool id (UUID)"),
        ("resourceId" = String, Path, description = "Resource id (UUID)")),
    responses(
        (status = 200, description = "The resource", body = ResourceInfo),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 404, description = "No such pool or resource", body = crate::error::Problem)))]
async fn get_resource(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiPath((pool, id)): ApiPath<(String, String)>,
) -> Result<Json<ResourceInfo>, ApiError> {
    let cloud = settings(&state).await?;
    let site = site_by(&state, &cloud, "pool", &pool, "resource pool").await?;
    let not_found = || ApiError::not_found(format!("resource {id} in pool {pool}"));
    let uuid: Uuid = id.parse().map_err(|_| not_found())?;
    objects::site_machines(&state.db, site.id)
        .await?
        .iter()
        .find(|m| cloud.id("machine", m.id) == uuid)
        .map(|m| Json(cloud.resource(site.id, m)))
        .ok_or_else(not_found)
}

async fn deployment_managers(
    state: &AppState,
    cloud: &CloudSettings,
) -> Result<Vec<DeploymentManagerInfo>, ApiError> {
    let clusters = objects::all_clusters(&state.db).await?;
    let cores = objects::cores_per_cluster(&state.db).await?;
    Ok(clusters
        .iter()
        .map(|c| {
            let n = cores
                .binary_search_by_key(&c.id, |(id, _)| *id)
                .map_or(0, |i| cores[i].1);
            cloud.deployment_manager(c, n)
        })
        .collect())
}

/// Deployment managers (clusters).
#[utoipa::path(get, path = "/deploymentManagers", tag = "o2ims", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "Deployment managers", body = Vec<DeploymentManagerInfo>,
            headers(("Link" = String, description = "`<…?nextpage_opaque_marker=…>; rel=\"next\"` when more objects follow"))),
        (status = 400, description = "Malformed filter, selector, limit or nextpage_opaque_marker", body = crate::error::Problem),
        (status = 401, description = "No or invalid token", body = crate::error::Problem)))]
async fn list_dms(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
    OriginalUri(uri): OriginalUri,
) -> Result<Paged, ApiError> {
    let cloud = settings(&state).await?;
    let dms = deployment_managers(&state, &cloud).await?;
    answer(&dms, &q, DM_ATTRS, "deploymentManagerId", &uri)
}

/// One deployment manager.
#[utoipa::path(get, path = "/deploymentManagers/{deploymentManagerId}", tag = "o2ims",
    security(("bearer" = [])),
    params(("deploymentManagerId" = String, Path, description = "Deployment manager id (UUID)")),
    responses(
        (status = 200, description = "The deployment manager", body = DeploymentManagerInfo),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 404, description = "No such deployment manager", body = crate::error::Problem)))]
async fn get_dm(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DeploymentManagerInfo>, ApiError> {
    let cloud = settings(&state).await?;
    let not_found = || ApiError::not_found(format!("deployment manager {id}"));
    let uuid: Uuid = id.parse().map_err(|_| not_found())?;
    deployment_managers(&state, &cloud)
        .await?
        .into_iter()
        .find(|d| d.deployment_manager_id == uuid)
        .map(Json)
        .ok_or_else(not_found)
}

/// Locations (one per site).
#[utoipa::path(get, path = "/locations", tag = "o2ims", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "Locations", body = Vec<LocationInfo>,
            headers(("Link" = String, description = "`<…?nextpage_opaque_marker=…>; rel=\"next\"` when more objects follow"))),
        (status = 400, description = "Malformed filter, selector, limit or nextpage_opaque_marker", body = crate::error::Problem),
        (status = 401, description = "No or invalid token", body = crate::error::Problem)))]
async fn list_locations(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
    OriginalUri(uri): OriginalUri,
) -> Result<Paged, ApiError> {
    let cloud = settings(&state).await?;
    let list: Vec<_> = sites(&state)
        .await?
        .iter()
        .map(|s| cloud.location(s))
        .collect();
    answer(&list, &q, LOCATION_ATTRS, "globalLocationId", &uri)
}

/// One location.
#[utoipa::path(get, path = "/locations/{globalLocationId}", tag = "o2ims",
    security(("bearer" = [])),
    params(("globalLocationId" = String, Path, description = "Global location id")),
    responses(
        (status = 200, description = "The location", body = LocationInfo),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 404, description = "No such location", body = crate::error::Problem)))]
async fn get_location(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<LocationInfo>, ApiError> {
    let cloud = settings(&state).await?;
    let site = site_by(&state, &cloud, "location", &id, "location").await?;
    Ok(Json(cloud.location(&site)))
}

/// O-Cloud sites.
#[utoipa::path(get, path = "/oCloudSites", tag = "o2ims", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "O-Cloud sites", body = Vec<OCloudSiteInfo>,
            headers(("Link" = String, description = "`<…?nextpage_opaque_marker=…>; rel=\"next\"` when more objects follow"))),
        (status = 400, description = "Malformed filter, selector, limit or nextpage_opaque_marker", body = crate::error::Problem),
        (status = 401, description = "No or invalid token", body = crate::error::Problem)))]
async fn list_sites(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
    OriginalUri(uri): OriginalUri,
) -> Result<Paged, ApiError> {
    let cloud = settings(&state).await?;
    let list: Vec<_> = sites(&state).await?.iter().map(|s| cloud.site(s)).collect();
    answer(&list, &q, SITE_ATTRS, "oCloudSiteId", &uri)
}

/// One O-Cloud site.
#[utoipa::path(get, path = "/oCloudSites/{oCloudSiteId}", tag = "o2ims",
    security(("bearer" = [])),
    params(("oCloudSiteId" = String, Path, description = "O-Cloud site id (UUID)")),
    responses(
        (status = 200, description = "The site", body = OCloudSiteInfo),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 404, description = "No such site", body = crate::error::Problem)))]
async fn get_site(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OCloudSiteInfo>, ApiError> {
    let cloud = settings(&state).await?;
    let site = site_by(&state, &cloud, "site", &id, "O-Cloud site").await?;
    Ok(Json(cloud.site(&site)))
}

/// The inventory routes of one version prefix.
#[must_use]
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_cloud))
        .routes(routes!(versions))
        .routes(routes!(list_types))
        .routes(routes!(get_type))
        .routes(routes!(list_pools))
        .routes(routes!(get_pool))
        .routes(routes!(list_resources))
        .routes(routes!(get_resource))
        .routes(routes!(list_dms))
        .routes(routes!(get_dm))
        .routes(routes!(list_locations))
        .routes(routes!(get_location))
        .routes(routes!(list_sites))
        .routes(routes!(get_site))
}
