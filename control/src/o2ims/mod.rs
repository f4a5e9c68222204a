//! The O-RAN O2ims API (toward the SMO/FOCOM): the infrastructure inventory, its
//! subscriptions ([`subscriptions`]) and their change notifications ([`changes`] detects,
//! [`delivery`] sends them through a durable queue).
//!
//! Served under `/o2ims-infrastructureInventory/v1` (the implementations' spelling, canonical),
//! `/o2ims-infrastructureInventory/v2` (inventory API 2.x; the objects are the same superset),
//! and the spec's spelling `/O2ims_infrastructureInventory/{v1,v2}`; `api_versions` at both
//! levels. Objects are camelCase as in O-RAN.WG6.O2IMS-INTERFACE; list endpoints take the ETSI
//! SOL013 `filter` and attribute selectors ([`query`]) and pages. Callers need a bearer token
//! with the route's scope ([`crate::auth::scope`]: an OAuth2 client token from
//! `POST /oauth/token`, or a user's access token — an admin holds every scope, a viewer
//! `o2ims:read`); errors are `application/problem+json`. The O2ims routes' own OpenAPI document
//! is [`openapi`]; the O-Cloud registration with the SMO is [`registration`].
//!
//! Mapping ([`objects`]): the installation is the O-Cloud (its `oCloudId` is a random UUID
//! stored in `settings` on first use); each site is a resource pool, an O-Cloud site and a
//! location; each machine (of a cluster at the site) is a resource; each cluster is a
//! deployment manager. Ids are name-based UUIDs (v5) in the O-Cloud's namespace from the row
//! ids, so every replica and every restart shows the same ids.

pub mod changes;
pub mod delivery;
pub mod inventory;
pub mod monitoring;
pub mod objects;
pub mod openapi;
pub mod query;
pub mod registration;
pub mod subscriptions;

use axum::Json;
use axum::extract::MatchedPath;
use serde::Serialize;
use sqlx::AnyConnection;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::scope::ScopeRead;
use crate::db::{Db, StoreError};
use crate::error::ApiError;
use crate::state::AppState;

/// The inventory API's names: the implementations' (canonical) and the spec's.
pub const INVENTORY_NAMES: [&str; 2] = [
    "/o2ims-infrastructureInventory",
    "/O2ims_infrastructureInventory",
];

/// The inventory API's major versions served, with the full version each stands for.
pub const INVENTORY_VERSIONS: [(&str, &str); 2] = [("v1", "1.0.0"), ("v2", "2.0.0")];

/// `settings` key of the O-Cloud id.
pub const OCLOUD_ID_KEY: &str = "o2ims_ocloud_id";
/// `settings` key of the SMO-assigned global cloud id.
pub const GLOBAL_CLOUD_ID_KEY: &str = "o2ims_global_cloud_id";
/// `settings` key of the O-Cloud's name.
pub const NAME_KEY: &str = "o2ims_name";
/// `settings` key of the O-Cloud's description.
pub const DESCRIPTION_KEY: &str = "o2ims_description";
/// `settings` key of the public API root (`serviceUri`); without it the request's host is used.
pub const SERVICE_URI_KEY: &str = "o2ims_service_uri";

/// One API version (`ApiVersionInformation.apiVersions[]`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiVersion {
    /// Semantic version.
    pub version: String,
    /// Whether it is deprecated.
    pub is_deprecated: bool,
}

/// `ApiVersionInformation`: the versions served under a prefix.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiVersionInformation {
    /// The URI prefix the versions are served under.
    pub uri_prefix: String,
    /// The versions.
    pub api_versions: Vec<ApiVersion>,
}

/// The O-Cloud's identity and description as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudSettings {
    /// `oCloudId` (also the namespace of every other id).
    pub ocloud_id: Uuid,
    /// `globalCloudId` (nil until the SMO assigns one).
    pub global_cloud_id: Uuid,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Configured `serviceUri`, if any.
    pub service_uri: Option<String>,
}

impl CloudSettings {
    /// The id of the object `kind` made from row `row` (name-based, stable).
    #[must_use]
    pub fn id(&self, kind: &str, row: i64) -> Uuid {
        Uuid::new_v5(&self.ocloud_id, format!("{kind}/{row}").as_bytes())
    }

    /// The id of a named object (resource types).
    #[must_use]
    pub fn named_id(&self, kind: &str, name: &str) -> Uuid {
        Uuid::new_v5(&self.ocloud_id, format!("{kind}/{name}").as_bytes())
    }
}

fn bad_setting(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::InvalidReference {
        field: key.to_owned(),
        message: format!("stored setting `{key}` is not a UUID: {e}"),
    }
}

/// Loads the O-Cloud settings, creating the O-Cloud id on first use (race-free across
/// replicas: the first insert wins and everyone reads it back).
///
/// # Errors
/// The store failed or holds a malformed id.
pub async fn cloud_settings(db: &Db) -> Result<CloudSettings, StoreError> {
    let mut rows = load_settings(db).await?;
    if !rows.iter().any(|(k, _)| k == OCLOUD_ID_KEY) {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(OCLOUD_ID_KEY)
        .bind(Uuid::new_v4().to_string())
        .execute(db.pool())
        .await?;
        rows = load_settings(db).await?;
    }
    let get = |key: &str| rows.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let ocloud_id = get(OCLOUD_ID_KEY)
        .unwrap_or_default()
        .parse()
        .map_err(|e| bad_setting(OCLOUD_ID_KEY, e))?;
    let global_cloud_id = match get(GLOBAL_CLOUD_ID_KEY) {
        Some(v) => v.parse().map_err(|e| bad_setting(GLOBAL_CLOUD_ID_KEY, e))?,
        None => Uuid::nil(),
    };
    Ok(CloudSettings {
        ocloud_id,
        global_cloud_id,
        name: get(NAME_KEY).unwrap_or_else(|| "ims-control".to_owned()),
        description: get(DESCRIPTION_KEY)
            .unwrap_or_else(|| "O-Cloud of edge sites provisioned by ims-control".to_owned()),
        service_uri: get(SERVICE_URI_KEY),
    })
}

async fn load_settings(db: &Db) -> Result<Vec<(String, String)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT key, value FROM settings WHERE key IN ($1, $2, $3, $4, $5)")
            .bind(OCLOUD_ID_KEY)
            .bind(GLOBAL_CLOUD_ID_KEY)
            .bind(NAME_KEY)
            .bind(DESCRIPTION_KEY)
            .bind(SERVICE_URI_KEY)
            .fetch_all(db.pool())
            .await?,
    )
}

/// Stores the SMO-assigned global cloud id.
///
/// # Errors
/// The store failed.
pub async fn set_global_cloud_id(db: &Db, id: Uuid) -> Result<(), StoreError> {
    let mut tx = db.begin_write().await?;
    put_setting(&mut tx, GLOBAL_CLOUD_ID_KEY, &id.to_string()).await?;
    tx.commit().await?;
    Ok(())
}

/// Stores `value` under `key` in `settings` (inserted or replaced) on `conn`.
///
/// Inside a write transaction the row also serves as a lock row: a concurrent transaction
/// (on another replica) writing the same key waits here until this one commits.
///
/// # Errors
/// The store failed.
pub(crate) async fn put_setting(
    conn: &mut AnyConnection,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(conn)
    .await?;
    Ok(())
}

/// Background tasks of one process (e.g. change detection and delivery, or the alarm
/// evaluator and alarm notification delivery); dropping it stops them.
#[derive(Debug)]
pub struct Tasks {
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Tasks {
    /// Owns `handles`: they are aborted when the returned value is dropped.
    pub(crate) fn new(handles: Vec<tokio::task::JoinHandle<()>>) -> Self {
        Self { handles }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

/// The versions of the inventory API (every major version).
#[utoipa::path(get, path = "/api_versions", tag = "o2ims",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every version served", body = ApiVersionInformation),
        (status = 401, description = "No or invalid token", body = crate::error::Problem)))]
async fn all_versions(
    _caller: ScopeRead,
    path: MatchedPath,
) -> Result<Json<ApiVersionInformation>, ApiError> {
    let prefix = path.as_str().trim_end_matches("/api_versions").to_owned();
    Ok(Json(ApiVersionInformation {
        uri_prefix: prefix,
        api_versions: INVENTORY_VERSIONS
            .iter()
            .map(|(_, v)| ApiVersion {
                version: (*v).to_owned(),
                is_deprecated: false,
            })
            .collect(),
    }))
}

/// Every O2ims route: the inventory under each spelling and major version, and the
/// monitoring API ([`monitoring`]).
#[must_use]
pub fn routes() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new();
    for name in INVENTORY_NAMES {
        router = router.nest(name, OpenApiRouter::new().routes(routes!(all_versions)));
        for (major, _) in INVENTORY_VERSIONS {
            router = router.nest(
                &format!("{name}/{major}"),
                inventory::routes()
                    .merge(subscriptions::routes())
                    .merge(monitoring::inventory_routes())
                    .merge(openapi::routes()),
            );
        }
    }
    router.merge(monitoring::routes())
}
