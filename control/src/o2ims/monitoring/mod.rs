//! The O2ims infrastructure monitoring API (alarms), served under
//! `/o2ims-infrastructureMonitoring/v1` (the implementations' spelling, canonical) and the
//! spec's `/O2ims_infrastructureMonitoring/v1`, with `api_versions` at both levels:
//!
//! - [`alarms`]: `GET /alarms` (SOL013 filter and selectors), `GET`/`PATCH
//!   /alarms/{alarmEventRecordId}` (acknowledge or clear);
//! - [`alarm_subscriptions`]: `GET`/`POST /alarmSubscriptions`, `GET`/`DELETE
//!   /alarmSubscriptions/{alarmSubscriptionId}`;
//! - [`service_config`]: `GET`/`PUT`/`PATCH /alarmServiceConfiguration` (retention);
//! - [`dictionary`]: `GET /alarmDictionaries[/{alarmDictionaryId}]`, and
//!   `GET /resourceTypes/{resourceTypeId}/alarmDictionary` under the inventory prefixes.
//!
//! Alarms are raised and cleared by the [`evaluator`] (a pass every second, replicas taking
//! turns); each raise, change, clear and acknowledgement queues notifications that [`notify`]
//! delivers with retries. [`spawn`] starts both tasks. Reads need `o2ims:read`; subscription
//! writes `o2ims:subscribe`; alarm modifications and configuration writes `o2ims:alarms`.

pub mod alarm_subscriptions;
pub mod alarms;
pub mod dictionary;
pub mod evaluator;
pub mod notify;
pub mod service_config;

use axum::Json;
use axum::extract::MatchedPath;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiVersion, ApiVersionInformation};
use crate::auth::scope::ScopeRead;
use crate::db::Db;
use crate::state::AppState;

/// The monitoring API's names: the implementations' (canonical) and the spec's.
pub const MONITORING_NAMES: [&str; 2] = [
    "/o2ims-infrastructureMonitoring",
    "/O2ims_infrastructureMonitoring",
];

/// The monitoring API's major versions served, with the full version each stands for.
pub const MONITORING_VERSIONS: [(&str, &str); 1] = [("v1", "1.1.0")];

fn version_info(path: &MatchedPath, major: Option<&str>) -> ApiVersionInformation {
    let prefix = path.as_str().trim_end_matches("/api_versions").to_owned();
    ApiVersionInformation {
        uri_prefix: prefix,
        api_versions: MONITORING_VERSIONS
            .iter()
            .filter(|(m, _)| major.is_none_or(|want| want == *m))
            .map(|(_, v)| ApiVersion {
                version: (*v).to_owned(),
                is_deprecated: false,
            })
            .collect(),
    }
}

/// The versions of the monitoring API (every major version).
#[utoipa::path(get, path = "/api_versions", tag = "o2ims-monitoring",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every version served", body = ApiVersionInformation),
        (status = 401, description = "No or invalid token", body = crate::error::Problem)))]
async fn all_versions(_caller: ScopeRead, path: MatchedPath) -> Json<ApiVersionInformation> {
    Json(version_info(&path, None))
}

/// The versions served under this major version.
#[utoipa::path(get, path = "/api_versions", tag = "o2ims-monitoring",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The versions of this major version", body = ApiVersionInformation),
        (status = 401, description = "No or invalid token", body = crate::error::Problem)))]
async fn major_versions(_caller: ScopeRead, path: MatchedPath) -> Json<ApiVersionInformation> {
    let major = path
        .as_str()
        .trim_end_matches("/api_versions")
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    Json(version_info(&path, Some(&major)))
}

/// The routes of one monitoring version prefix.
fn version_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(major_versions))
        .merge(alarms::routes())
        .merge(alarm_subscriptions::routes())
        .merge(service_config::routes())
        .merge(dictionary::routes())
}

/// Every monitoring route, under each spelling and major version.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new();
    for name in MONITORING_NAMES {
        router = router.nest(name, OpenApiRouter::new().routes(routes!(all_versions)));
        for (major, _) in MONITORING_VERSIONS {
            router = router.nest(&format!("{name}/{major}"), version_routes());
        }
    }
    router
}

/// The monitoring routes served under each inventory version prefix
/// (`/resourceTypes/{resourceTypeId}/alarmDictionary`).
pub(crate) fn inventory_routes() -> OpenApiRouter<AppState> {
    dictionary::inventory_routes()
}

pub use super::Tasks;

/// Starts the alarm evaluator and the alarm notification delivery on the current Tokio
/// runtime.
#[must_use]
pub fn spawn(db: &Db) -> Tasks {
    Tasks::new(vec![
        tokio::spawn(evaluator::run_evaluator(db.clone())),
        tokio::spawn(notify::run_delivery(db.clone())),
    ])
}
