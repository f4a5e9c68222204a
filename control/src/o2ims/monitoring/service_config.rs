//! `AlarmServiceConfiguration`: `GET`, `PUT` and `PATCH /alarmServiceConfiguration`.
//!
//! `retentionPeriod` is how many days cleared alarms are kept (an integer, at least
//! [`MIN_RETENTION_DAYS`], default [`DEFAULT_RETENTION_DAYS`]); the evaluator purges older ones
//! ([`super::evaluator`]). `extensions` is any JSON object, stored as given. Both are kept in
//! `settings`. `PUT` replaces the configuration (`retentionPeriod` required, `extensions`
//! reset to `{}` when absent); `PATCH` (merge-patch) changes the fields present. Writes need
//! `o2ims:alarms`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sqlx::AnyConnection;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::scope::{ScopeAlarms, ScopeRead};
use crate::db::{Db, StoreError};
use crate::error::{ApiError, ApiJson, FieldError};
use crate::state::AppState;

/// `settings` key of `retentionPeriod`.
pub const RETENTION_KEY: &str = "o2ims_alarm_retention_days";
/// `settings` key of `extensions`.
pub const EXTENSIONS_KEY: &str = "o2ims_alarm_extensions";
/// The default retention (days).
pub const DEFAULT_RETENTION_DAYS: i64 = 14;
/// The shortest retention accepted (days).
pub const MIN_RETENTION_DAYS: i64 = 1;
/// The longest retention accepted (days; 100 years).
pub const MAX_RETENTION_DAYS: i64 = 36_500;

/// `AlarmServiceConfiguration`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlarmServiceConfiguration {
    /// Days cleared alarms are kept.
    pub retention_period: i64,
    /// Vendor data.
    #[schema(value_type = Object)]
    pub extensions: Value,
}

/// The configuration, read on `conn`.
///
/// # Errors
/// The store failed.
pub async fn load_on(conn: &mut AnyConnection) -> Result<AlarmServiceConfiguration, StoreError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT key, value FROM settings WHERE key IN ($1, $2)")
            .bind(RETENTION_KEY)
            .bind(EXTENSIONS_KEY)
            .fetch_all(&mut *conn)
            .await?;
    let get = |k: &str| {
        rows.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    Ok(AlarmServiceConfiguration {
        retention_period: get(RETENTION_KEY)
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_RETENTION_DAYS)
            .max(MIN_RETENTION_DAYS),
        extensions: get(EXTENSIONS_KEY)
            .and_then(|v| serde_json::from_str::<Value>(v).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({})),
    })
}

/// The configuration.
///
/// # Errors
/// The store failed.
pub async fn load(db: &Db) -> Result<AlarmServiceConfiguration, StoreError> {
    let mut conn = db.pool().acquire().await?;
    load_on(&mut conn).await
}

async fn store(db: &Db, c: &AlarmServiceConfiguration) -> Result<(), StoreError> {
    let mut tx = db.begin_write().await?;
    for (key, value) in [
        (RETENTION_KEY, c.retention_period.to_string()),
        (EXTENSIONS_KEY, c.extensions.to_string()),
    ] {
        crate::o2ims::put_setting(&mut tx, key, &value).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Lays `body` over `base`; `full` (PUT) requires `retentionPeriod` and resets absent
/// `extensions`.
///
/// # Errors
/// Every invalid field.
pub fn apply(
    base: &AlarmServiceConfiguration,
    body: &Value,
    full: bool,
) -> Result<AlarmServiceConfiguration, ApiError> {
    let Value::Object(map) = body else {
        return Err(ApiError::bad_request(
            "the body must be a JSON object such as {\"retentionPeriod\": 14}",
        ));
    };
    let mut errors = Vec::new();
    let mut out = base.clone();
    if full {
        out.extensions = json!({});
    }
    check_keys(map, &mut errors);
    match map.get("retentionPeriod") {
        None | Some(Value::Null) if full => errors.push(FieldError::new(
            "retentionPeriod",
            format!(
                "is required: the days cleared alarms are kept (at least {MIN_RETENTION_DAYS})"
            ),
        )),
        None => {}
        Some(v) => match v.as_i64() {
            Some(d) if (MIN_RETENTION_DAYS..=MAX_RETENTION_DAYS).contains(&d) => {
                out.retention_period = d;
            }
            _ => errors.push(FieldError::new(
                "retentionPeriod",
                format!(
                    "must be a whole number of days from {MIN_RETENTION_DAYS} to \
                     {MAX_RETENTION_DAYS} (got {v})"
                ),
            )),
        },
    }
    match map.get("extensions") {
        None => {}
        Some(Value::Null) => out.extensions = json!({}),
        Some(v @ Value::Object(_)) => out.extensions = v.clone(),
        Some(v) => errors.push(FieldError::new(
            "extensions",
            format!("must be a JSON object (got {v})"),
        )),
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::validation(errors))
    }
}

fn check_keys(map: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    for key in map.keys() {
        if key != "retentionPeriod" && key != "extensions" {
            errors.push(FieldError::new(
                key.as_str(),
                "is not a field of the alarm service configuration (retentionPeriod, extensions)",
            ));
        }
    }
}

/// The alarm service configuration.
#[utoipa::path(get, path = "/alarmServiceConfiguration", tag = "o2ims-monitoring",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The configuration", body = AlarmServiceConfiguration),
        (status = 401, description = "No or invalid token", body = crate::error::Problem)))]
async fn get_config(
    _caller: ScopeRead,
    State(state): State<AppState>,
) -> Result<Json<AlarmServiceConfiguration>, ApiError> {
    Ok(Json(load(&state.db).await?))
}

/// Replaces the alarm service configuration.
#[utoipa::path(put, path = "/alarmServiceConfiguration", tag = "o2ims-monitoring",
    security(("bearer" = [])),
    request_body = AlarmServiceConfiguration,
    responses(
        (status = 200, description = "The stored configuration", body = AlarmServiceConfiguration),
        (status = 400, description = "Invalid fields", body = crate::error::Problem),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 403, description = "No o2ims:alarms scope", body = crate::error::Problem)))]
async fn put_config(
    _caller: ScopeAlarms,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<AlarmServiceConfiguration>, ApiError> {
    let next = apply(&load(&state.db).await?, &body, true)?;
    store(&state.db, &next).await?;
    Ok(Json(next))
}

/// Changes the fields given of the alarm service configuration (merge-patch).
#[utoipa::path(patch, path = "/alarmServiceConfiguration", tag = "o2ims-monitoring",
    security(("bearer" = [])),
    request_body(content = AlarmServiceConfiguration,
        content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "The stored configuration", body = AlarmServiceConfiguration),
        (status = 400, description = "Invalid fields", body = crate::error::Problem),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 403, description = "No o2ims:alarms scope", body = crate::error::Problem)))]
async fn patch_config(
    _caller: ScopeAlarms,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<AlarmServiceConfiguration>, ApiError> {
    let next = apply(&load(&state.db).await?, &body, false)?;
    store(&state.db, &next).await?;
    Ok(Json(next))
}

/// The configuration routes.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_config, put_config, patch_config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_and_patch() {
        let base = AlarmServiceConfiguration {
            retention_period: 14,
            extensions: json!({"a": 1}),
        };
        let put = apply(&base, &json!({"retentionPeriod": 3}), true).ok();
        assert_eq!(
            put.map(|c| (c.retention_period, c.extensions)),
            Some((3, json!({})))
        );
        let patch = apply(&base, &json!({"extensions": {"b": 2}}), false).ok();
        assert_eq!(
            patch.map(|c| (c.retention_period, c.extensions)),
            Some((14, json!({"b": 2})))
        );
        assert!(apply(&base, &json!({}), true).is_err());
        assert!(apply(&base, &json!({"retentionPeriod": 0}), false).is_err());
        assert!(apply(&base, &json!({"retentionPeriod": 1.5}), false).is_err());
        assert!(apply(&base, &json!({"retention": 3}), false).is_err());
        assert!(apply(&base, &json!({"extensions": 3}), false).is_err());
    }
}
