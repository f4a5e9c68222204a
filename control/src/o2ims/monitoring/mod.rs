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
use serde::Serialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::inventory::ListQuery;
use super::query::{self, QueryError, SelectorParams};
use super::{ApiVersion, ApiVersionInformation};
use crate::auth::scope::ScopeRead;
use crate::db::Db;
use crate::error::{ApiError, FieldError};
use crate::state::AppState;

/// The monitoring API's names: the implementations' (canonical) and the spec's.
pub const MONITORING_NAMES: [&str; 2] = [
    "/o2ims-infrastructureMonitoring",
    "/O2ims_infrastructureMonitoring",
];

/// The monitoring API's major versions served, with the full version each stands for.
pub const MONITORING_VERSIONS: [(&str, &str); 1] = [("v1", "1.1.0")];

fn query_error(e: QueryError) -> ApiError {
    ApiError::validation(vec![FieldError::new(e.parameter, e.message)])
}

/// Serialises, filters and selects a list (`attrs`: the attribute names; `id`: the
/// identifier attribute).
pub(crate) fn answer<T: Serialize>(
    items: &[T],
    q: &ListQuery,
    attrs: &[&str],
    id: &str,
) -> Result<Json<Vec<Value>>, ApiError> {
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
    Ok(Json(out))
}

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

/// The alarm tasks of one process (the evaluator and notification delivery); dropping it stops
/// them.
#[derive(Debug)]
pub struct Tasks {
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

/// Starts the alarm evaluator and the alarm notification delivery on the current Tokio
/// runtime.
#[must_use]
pub fn spawn(db: &Db) -> Tasks {
    Tasks {
        handles: vec![
            tokio::spawn(evaluator::run_evaluator(db.clone())),
            tokio::spawn(notify::run_delivery(db.clone())),
        ],
    }
}
