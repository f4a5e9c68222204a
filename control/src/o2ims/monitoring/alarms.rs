//! Alarm event records: their store (`o2ims_alarms`), their JSON form and the routes
//! `GET /alarms`, `GET /alarms/{alarmEventRecordId}` and `PATCH /alarms/{alarmEventRecordId}`.
//! The list takes the SOL013 filter, selectors and paging of the inventory lists
//! ([`crate::o2ims::inventory`]), oldest alarm first.
//!
//! An `AlarmEventRecord` carries the monitoring 2.x names (`objectTypeId`, `objectId`,
//! `objectClass`, `alarmDefinitionId`, `probableCauseId`, `alarmAcknowledgeTime`) and, in the
//! same object, the 1.x implementations' names (`resourceTypeID`, `resourceID`,
//! `alarmDefinitionID`, `probableCauseID`, `alarmAcknowledgedTime`). `perceivedSeverity` is
//! an integer (0 CRITICAL … 3 WARNING, 5 CLEARED once cleared). Time fields are always
//! present (null when not set). `extensions` holds `alarmName`, `severity` (its name),
//! `objectName` and what the evaluator saw (`details`).
//!
//! `PATCH` (`application/merge-patch+json` or `application/json`) takes exactly one of
//! `{"alarmAcknowledged": true}` and `{"perceivedSeverity": 5}` and answers the modifications.
//! An operator's clear of an alarm whose condition still holds is kept: the evaluator does not
//! raise it again until the condition has ended once.

use axum::Json;
use axum::extract::{OriginalUri, State};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sqlx::AnyConnection;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::dictionary::{self, ObjectKind, severity};
use super::notify::{self, EventType};
use crate::auth::scope::{ScopeAlarms, ScopeRead};
use crate::db::{Db, StoreError, format_ts, now_ms};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, FieldError};
use crate::o2ims::inventory::{ListQuery, Paged, answer};
use crate::o2ims::{CloudSettings, cloud_settings};
use crate::state::AppState;

/// The attributes of an `AlarmEventRecord` (for filters and selectors).
pub const ALARM_ATTRS: &[&str] = &[
    "alarmEventRecordId",
    "objectTypeId",
    "objectId",
    "objectClass",
    "alarmDefinitionId",
    "probableCauseId",
    "alarmRaisedTime",
    "alarmChangedTime",
    "alarmAcknowledgeTime",
    "alarmAcknowledged",
    "alarmClearedTime",
    "perceivedSeverity",
    "extensions",
    "resourceTypeID",
    "resourceID",
    "alarmDefinitionID",
    "probableCauseID",
    "alarmAcknowledgedTime",
];

/// `AlarmEventRecord` (spec and alias names).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlarmEventRecord {
    /// Id.
    pub alarm_event_record_id: Uuid,
    /// The alarmed object's type.
    pub object_type_id: Uuid,
    /// The alarmed object.
    pub object_id: Uuid,
    /// The alarmed object's class.
    pub object_class: String,
    /// The alarm definition.
    pub alarm_definition_id: Uuid,
    /// The probable cause.
    pub probable_cause_id: Uuid,
    /// When it was raised (RFC 3339).
    pub alarm_raised_time: String,
    /// When it last changed.
    pub alarm_changed_time: Option<String>,
    /// When it was acknowledged.
    pub alarm_acknowledge_time: Option<String>,
    /// Whether it was acknowledged.
    pub alarm_acknowledged: bool,
    /// When it was cleared.
    pub alarm_cleared_time: Option<String>,
    /// 0 CRITICAL, 1 MAJOR, 2 MINOR, 3 WARNING, 4 INDETERMINATE, 5 CLEARED.
    pub perceived_severity: i64,
    /// `{alarmName, severity, objectName, details}`.
    #[schema(value_type = Object)]
    pub extensions: Value,
    /// Alias of `objectTypeId` (monitoring 1.x).
    #[serde(rename = "resourceTypeID")]
    pub resource_type_id_v1: Uuid,
    /// Alias of `objectId`.
    #[serde(rename = "resourceID")]
    pub resource_id_v1: Uuid,
    /// Alias of `alarmDefinitionId`.
    #[serde(rename = "alarmDefinitionID")]
    pub alarm_definition_id_v1: Uuid,
    /// Alias of `probableCauseId`.
    #[serde(rename = "probableCauseID")]
    pub probable_cause_id_v1: Uuid,
    /// Alias of `alarmAcknowledgeTime`.
    #[serde(rename = "alarmAcknowledgedTime")]
    pub alarm_acknowledged_time_v1: Option<String>,
}

/// An `o2ims_alarms` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmRow {
    /// Id (UUID text).
    pub id: String,
    /// Definition name.
    pub definition: String,
    /// Object kind key.
    pub object_kind: String,
    /// Object row id.
    pub object_row: i64,
    /// Object's O2ims id.
    pub object_id: String,
    /// Severity while open.
    pub severity: i64,
    /// Raised (Unix ms).
    pub raised_at: i64,
    /// Last change.
    pub changed_at: i64,
    /// Acknowledged.
    pub acknowledged: bool,
    /// When acknowledged.
    pub acknowledged_at: Option<i64>,
    /// When cleared.
    pub cleared_at: Option<i64>,
    /// `{objectName, …}` as JSON text.
    pub details: String,
}

type Row = (
    String,
    String,
    String,
    i64,
    String,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    String,
);

/// The columns of [`AlarmRow`], in order.
pub const COLUMNS: &str = "id, definition, object_kind, object_row, object_id, severity, \
     raised_at, changed_at, acknowledged, acknowledged_at, cleared_at, details";

fn from_row(r: Row) -> AlarmRow {
    AlarmRow {
        id: r.0,
        definition: r.1,
        object_kind: r.2,
        object_row: r.3,
        object_id: r.4,
        severity: r.5,
        raised_at: r.6,
        changed_at: r.7,
        acknowledged: r.8 != 0,
        acknowledged_at: r.9,
        cleared_at: r.10,
        details: r.11,
    }
}

fn uuid_or_nil(s: &str) -> Uuid {
    s.parse().unwrap_or_else(|_| Uuid::nil())
}

impl AlarmRow {
    /// The record as the API shows it.
    #[must_use]
    pub fn record(&self, cloud: &CloudSettings) -> AlarmEventRecord {
        let def = dictionary::definition(&self.definition);
        let kind = ObjectKind::from_key(&self.object_kind).unwrap_or(ObjectKind::Edge);
        let type_id = kind.type_id(cloud);
        let def_id = def.map_or_else(Uuid::nil, |d| d.id(cloud));
        let cause_id = def.map_or_else(Uuid::nil, |d| d.probable_cause_id(cloud));
        let object_id = uuid_or_nil(&self.object_id);
        let ack_time = self.acknowledged_at.map(format_ts);
        let perceived = if self.cleared_at.is_some() {
            severity::CLEARED
        } else {
            self.severity
        };
        let details: Value = serde_json::from_str(&self.details).unwrap_or_else(|_| json!({}));
        let object_name = details.get("objectName").cloned().unwrap_or(Value::Null);
        AlarmEventRecord {
            alarm_event_record_id: uuid_or_nil(&self.id),
            object_type_id: type_id,
            object_id,
            object_class: kind.object_class().to_owned(),
            alarm_definition_id: def_id,
            probable_cause_id: cause_id,
            alarm_raised_time: format_ts(self.raised_at),
            alarm_changed_time: Some(format_ts(self.changed_at)),
            alarm_acknowledge_time: ack_time.clone(),
            alarm_acknowledged: self.acknowledged,
            alarm_cleared_time: self.cleared_at.map(format_ts),
            perceived_severity: perceived,
            extensions: json!({
                "alarmName": self.definition,
                "severity": severity::name(perceived),
                "raisedSeverity": severity::name(self.severity),
                "objectName": object_name,
                "details": details,
            }),
            resource_type_id_v1: type_id,
            resource_id_v1: object_id,
            alarm_definition_id_v1: def_id,
            probable_cause_id_v1: cause_id,
            alarm_acknowledged_time_v1: ack_time,
        }
    }

    /// The record as JSON.
    #[must_use]
    pub fn json(&self, cloud: &CloudSettings) -> Value {
        serde_json::to_value(self.record(cloud)).unwrap_or(Value::Null)
    }
}

/// Every alarm, oldest first.
///
/// # Errors
/// The store failed.
pub async fn list(db: &Db) -> Result<Vec<AlarmRow>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM o2ims_alarms ORDER BY raised_at, id"
    ))
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// One alarm, read on `conn`.
///
/// # Errors
/// The store failed.
pub async fn get_on(conn: &mut AnyConnection, id: &str) -> Result<Option<AlarmRow>, StoreError> {
    let row: Option<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM o2ims_alarms WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.map(from_row))
}

/// The open alarms, read on `conn`.
///
/// # Errors
/// The store failed.
pub async fn open_on(conn: &mut AnyConnection) -> Result<Vec<AlarmRow>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM o2ims_alarms WHERE open_key IS NOT NULL ORDER BY id"
    ))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// The key of an open alarm (and of an operator's latch).
#[must_use]
pub fn open_key(definition: &str, kind: &str, row: i64) -> String {
    format!("{definition}/{kind}/{row}")
}

/// What an operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modification {
    /// `alarmAcknowledged: true`.
    Acknowledge,
    /// `perceivedSeverity: 5`.
    Clear,
}

/// Why a modification was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModifyError {
    /// No such alarm.
    #[error("no such alarm")]
    NotFound,
    /// It is cleared already.
    #[error("the alarm is cleared already")]
    AlreadyCleared,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ModifyError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// Acknowledges or clears alarm `id` at `now` and queues its notification (ACKNOWLEDGE or
/// CLEAR), in one transaction. Acknowledging twice changes nothing the second time.
///
/// # Errors
/// Unknown alarm, clearing a cleared one, or the store failed.
pub async fn modify(
    db: &Db,
    cloud: &CloudSettings,
    id: &str,
    what: Modification,
    now: i64,
) -> Result<AlarmRow, ModifyError> {
    let mut tx = db.begin_write().await?;
    let row = get_on(&mut tx, id).await?.ok_or(ModifyError::NotFound)?;
    match what {
        Modification::Acknowledge if row.acknowledged => {
            tx.commit().await?;
            return Ok(row);
        }
        Modification::Acknowledge => {
            let done = sqlx::query(
                "UPDATE o2ims_alarms SET acknowledged = 1, acknowledged_at = $1, \
                 changed_at = $1 WHERE id = $2 AND acknowledged = 0",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                tx.commit().await?;
                return Ok(row);
            }
        }
        Modification::Clear if row.cleared_at.is_some() => {
            return Err(ModifyError::AlreadyCleared);
        }
        Modification::Clear => {
            // Latched: the evaluator does not raise it again while the condition holds.
            let done = sqlx::query(
                "UPDATE o2ims_alarms SET cleared_at = $1, changed_at = $1, \
                 latch_key = open_key, open_key = NULL WHERE id = $2 AND cleared_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(ModifyError::AlreadyCleared);
            }
        }
    }
    let row = get_on(&mut tx, id).await?.ok_or(ModifyError::NotFound)?;
    let event = match what {
        Modification::Acknowledge => EventType::Acknowledge,
        Modification::Clear => EventType::Clear,
    };
    notify::enqueue(&mut tx, cloud, &row.json(cloud), event, now).await?;
    tx.commit().await?;
    Ok(row)
}

/// Parses a PATCH body: exactly one of `alarmAcknowledged: true` and `perceivedSeverity: 5`.
///
/// # Errors
/// The problem to answer (400), naming the offending fields.
pub fn parse_modification(body: &Map<String, Value>) -> Result<Modification, ApiError> {
    let mut errors = Vec::new();
    for key in body.keys() {
        if key != "alarmAcknowledged" && key != "perceivedSeverity" {
            errors.push(FieldError::new(
                key.as_str(),
                "is not modifiable; send alarmAcknowledged or perceivedSeverity",
            ));
        }
    }
    let ack = body.get("alarmAcknowledged");
    let sev = body.get("perceivedSeverity");
    if let Some(v) = ack {
        if v != &Value::Bool(true) {
            errors.push(FieldError::new(
                "alarmAcknowledged",
                format!("must be true (got {v}); an acknowledgement cannot be withdrawn"),
            ));
        }
    }
    if let Some(v) = sev {
        if v.as_i64() != Some(severity::CLEARED) {
            errors.push(FieldError::new(
                "perceivedSeverity",
                format!("must be 5 (CLEARED) (got {v}); only clearing is allowed"),
            ));
        }
    }
    match (ack, sev) {
        (Some(_), Some(_)) => errors.push(FieldError::new(
            "alarmAcknowledged",
            "cannot be combined with perceivedSeverity: acknowledge or clear, not both",
        )),
        (None, None) if errors.is_empty() => errors.push(FieldError::new(
            "alarmAcknowledged",
            "give exactly one of {\"alarmAcknowledged\": true} (acknowledge) and \
             {\"perceivedSeverity\": 5} (clear)",
        )),
        _ => {}
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    Ok(if ack.is_some() {
        Modification::Acknowledge
    } else {
        Modification::Clear
    })
}

/// `AlarmEventRecordModifications`: what was changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlarmEventRecordModifications {
    /// `true` for an acknowledgement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm_acknowledged: Option<bool>,
    /// `5` for a clear.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perceived_severity: Option<i64>,
}

/// The alarms (every record kept: open ones, and cleared ones within the retention period),
/// oldest first, paged like the inventory lists.
#[utoipa::path(get, path = "/alarms", tag = "o2ims-monitoring", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "Alarm event records", body = Vec<AlarmEventRecord>,
            headers(("Link" = String, description = "`<…?nextpage_opaque_marker=…>; rel=\"next\"` when more alarms follow"))),
        (status = 400, description = "Malformed filter, selector, limit or nextpage_opaque_marker", body = crate::error::Problem),
        (status = 401, description = "No or invalid token", body = crate::error::Problem)))]
async fn list_alarms(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
    OriginalUri(uri): OriginalUri,
) -> Result<Paged, ApiError> {
    let cloud = cloud_settings(&state.db).await?;
    let records: Vec<_> = list(&state.db)
        .await?
        .iter()
        .map(|r| r.record(&cloud))
        .collect();
    answer(&records, &q, ALARM_ATTRS, "alarmEventRecordId", &uri)
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("alarm {id}"))
}

/// One alarm.
#[utoipa::path(get, path = "/alarms/{alarmEventRecordId}", tag = "o2ims-monitoring",
    security(("bearer" = [])),
    params(("alarmEventRecordId" = String, Path, description = "Alarm id (UUID)")),
    responses(
        (status = 200, description = "The alarm", body = AlarmEventRecord),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 404, description = "No such alarm", body = crate::error::Problem)))]
async fn get_alarm(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AlarmEventRecord>, ApiError> {
    let uuid: Uuid = id.parse().map_err(|_| not_found(&id))?;
    let cloud = cloud_settings(&state.db).await?;
    let mut conn = state.db.pool().acquire().await.map_err(StoreError::from)?;
    get_on(&mut conn, &uuid.to_string())
        .await?
        .map(|r| Json(r.record(&cloud)))
        .ok_or_else(|| not_found(&id))
}

/// Acknowledges (`{"alarmAcknowledged": true}`) or clears (`{"perceivedSeverity": 5}`) an
/// alarm; the body is `application/merge-patch+json` (or `application/json`).
#[utoipa::path(patch, path = "/alarms/{alarmEventRecordId}", tag = "o2ims-monitoring",
    security(("bearer" = [])),
    params(("alarmEventRecordId" = String, Path, description = "Alarm id (UUID)")),
    request_body(content = AlarmEventRecordModifications,
        content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "The modifications made", body = AlarmEventRecordModifications),
        (status = 400, description = "Not exactly one of the two modifications", body = crate::error::Problem),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 403, description = "No o2ims:alarms scope", body = crate::error::Problem),
        (status = 404, description = "No such alarm", body = crate::error::Problem),
        (status = 409, description = "The alarm is cleared already", body = crate::error::Problem)))]
async fn patch_alarm(
    _caller: ScopeAlarms,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<AlarmEventRecordModifications>, ApiError> {
    let uuid: Uuid = id.parse().map_err(|_| not_found(&id))?;
    let Value::Object(map) = body else {
        return Err(ApiError::bad_request(
            "the body must be a JSON object: {\"alarmAcknowledged\": true} or \
             {\"perceivedSeverity\": 5}",
        ));
    };
    let what = parse_modification(&map)?;
    let cloud = cloud_settings(&state.db).await?;
    match modify(&state.db, &cloud, &uuid.to_string(), what, now_ms()).await {
        Ok(_) => Ok(Json(match what {
            Modification::Acknowledge => AlarmEventRecordModifications {
                alarm_acknowledged: Some(true),
                perceived_severity: None,
            },
            Modification::Clear => AlarmEventRecordModifications {
                alarm_acknowledged: None,
                perceived_severity: Some(severity::CLEARED),
            },
        })),
        Err(ModifyError::NotFound) => Err(not_found(&id)),
        Err(ModifyError::AlreadyCleared) => Err(ApiError::conflict(
            "perceivedSeverity",
            format!("alarm {id} is cleared already"),
        )),
        Err(ModifyError::Store(e)) => Err(e.into()),
    }
}

/// The alarm routes.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_alarms))
        .routes(routes!(get_alarm, patch_alarm))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn modifications() {
        assert_eq!(
            parse_modification(&body(json!({"alarmAcknowledged": true}))).ok(),
            Some(Modification::Acknowledge)
        );
        assert_eq!(
            parse_modification(&body(json!({"perceivedSeverity": 5}))).ok(),
            Some(Modification::Clear)
        );
        for bad in [
            json!({}),
            json!({"alarmAcknowledged": true, "perceivedSeverity": 5}),
            json!({"alarmAcknowledged": false}),
            json!({"perceivedSeverity": 3}),
            json!({"perceivedSeverity": "5"}),
            json!({"alarmAcknowledged": true, "extra": 1}),
        ] {
            assert!(parse_modification(&body(bad.clone())).is_err(), "{bad}");
        }
    }
}
