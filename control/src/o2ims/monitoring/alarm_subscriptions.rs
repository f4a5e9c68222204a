//! Alarm subscriptions (`AlarmSubscriptionInfo`): `GET`/`POST /alarmSubscriptions`,
//! `GET`/`DELETE /alarmSubscriptions/{alarmSubscriptionId}`, and their store.
//!
//! - `callback` (required): an absolute `http://` or `https://` URL.
//! - `consumerSubscriptionId` (optional): echoed in every notification.
//! - `eventFilter` (optional, monitoring 2.2): the notification event types reported, a list
//!   of `NEW`, `CHANGE`, `CLEAR`, `ACKNOWLEDGE` (a JSON array, or one comma-separated string);
//!   absent or empty: all.
//! - `filter` (optional): either one event type name (the Red Hat implementation's reading of
//!   this field) or a SOL013 filter over the `AlarmEventRecord` attributes
//!   (`(eq,perceivedSeverity,1)`, `(eq,objectTypeId,…)`); a notification is sent when the
//!   alarm matches (an inclusion filter, as for inventory subscriptions).
//!
//! Reading needs `o2ims:read`; creating and deleting `o2ims:subscribe`. Deleting a
//! subscription drops its undelivered notifications.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::AnyConnection;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::alarms::ALARM_ATTRS;
use super::notify::EventType;
use crate::auth::scope::{ScopeRead, ScopeSubscribe};
use crate::db::{Db, StoreError, format_ts, now_ms};
use crate::error::{ApiError, ApiJson, ApiPath, FieldError};
use crate::o2ims::query::{self, Filter};
use crate::o2ims::subscriptions::{
    delete_answer, delete_with_queue, get_answer, get_row, optional_text, required_callback,
};
use crate::state::AppState;

pub use crate::o2ims::subscriptions::{MAX_FIELD_LEN, validate_callback};

/// `AlarmSubscriptionInfo` as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlarmSubscription {
    /// Server-assigned id.
    pub alarm_subscription_id: Uuid,
    /// The consumer's own id for it.
    pub consumer_subscription_id: Option<String>,
    /// Where notifications are POSTed.
    pub callback: String,
    /// An event type name or a SOL013 filter over the alarm (absent: all).
    pub filter: Option<String>,
    /// The event types reported (absent: all).
    pub event_filter: Option<Vec<String>>,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

/// What a subscription's `filter` is.
enum Selection {
    All,
    Event(EventType),
    Sol013(Filter),
}

fn selection(filter: Option<&str>) -> Result<Selection, String> {
    let Some(f) = filter.map(str::trim).filter(|f| !f.is_empty()) else {
        return Ok(Selection::All);
    };
    if let Some(e) = EventType::parse(f) {
        return Ok(Selection::Event(e));
    }
    if f.len() > MAX_FIELD_LEN {
        return Err(format!("is longer than {MAX_FIELD_LEN} characters"));
    }
    let parsed = query::parse_filter(f).map_err(|e| {
        format!(
            "{}; give NEW, CHANGE, CLEAR or ACKNOWLEDGE, or a SOL013 filter such as \
             (eq,perceivedSeverity,1)",
            e.message
        )
    })?;
    parsed
        .check_attributes(ALARM_ATTRS)
        .map_err(|e| e.message)?;
    Ok(Selection::Sol013(parsed))
}

impl AlarmSubscription {
    /// Whether this subscription reports `event` on `record` (an `AlarmEventRecord` as JSON).
    #[must_use]
    pub fn wants(&self, event: EventType, record: &Value) -> bool {
        let by_event = self.event_filter.as_ref().is_none_or(|list| {
            list.is_empty() || list.iter().any(|e| EventType::parse(e) == Some(event))
        });
        let by_filter = match selection(self.filter.as_deref()) {
            Ok(Selection::All) => true,
            Ok(Selection::Event(e)) => e == event,
            Ok(Selection::Sol013(f)) => f.matches(record),
            Err(e) => {
                tracing::warn!(subscription = %self.alarm_subscription_id,
                    "stored alarm filter is invalid ({e}); sending every event");
                true
            }
        };
        by_event && by_filter
    }
}

/// The body of `POST /alarmSubscriptions`. A client-supplied `alarmSubscriptionId` is
/// ignored; other unknown fields are refused.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewAlarmSubscription {
    /// Ignored (the server assigns the id).
    #[schema(value_type = Option<String>)]
    pub alarm_subscription_id: Option<Value>,
    /// The consumer's own id (optional).
    #[schema(value_type = Option<String>)]
    pub consumer_subscription_id: Option<Value>,
    /// Absolute `http://` or `https://` URL notifications are POSTed to (required).
    #[schema(value_type = String)]
    pub callback: Option<Value>,
    /// An event type name or a SOL013 filter (optional).
    #[schema(value_type = Option<String>)]
    pub filter: Option<Value>,
    /// Event types reported: `NEW`, `CHANGE`, `CLEAR`, `ACKNOWLEDGE` (optional).
    #[schema(value_type = Option<Vec<String>>)]
    pub event_filter: Option<Value>,
}

fn parse_event_filter(v: Option<Value>) -> Result<Option<Vec<String>>, String> {
    const FORM: &str = "give a list of NEW, CHANGE, CLEAR and ACKNOWLEDGE";
    let names: Vec<String> = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.split(',').map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => Ok(s),
                other => Err(format!("has the non-string item {other}; {FORM}")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(format!("must be a list; {FORM}")),
    };
    let mut out = Vec::new();
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let e =
            EventType::parse(n).ok_or_else(|| format!("has the unknown event `{n}`; {FORM}"))?;
        if !out.iter().any(|o| o == e.name()) {
            out.push(e.name().to_owned());
        }
    }
    Ok(Some(out))
}

type Row = (
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    i64,
);

const COLUMNS: &str = "id, consumer_subscription_id, callback, filter, event_filter, created_at";

fn from_row(
    (id, consumer, callback, filter, events, created_at): Row,
) -> Result<AlarmSubscription, StoreError> {
    let alarm_subscription_id = id.parse().map_err(|e| StoreError::InvalidReference {
        field: "alarmSubscriptionId".to_owned(),
        message: format!("stored alarm subscription id `{id}` is not a UUID: {e}"),
    })?;
    Ok(AlarmSubscription {
        alarm_subscription_id,
        consumer_subscription_id: consumer,
        callback,
        filter,
        event_filter: events.map(|e| {
            e.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        }),
        created_at: format_ts(created_at),
    })
}

/// Every alarm subscription, oldest first, read on `conn`.
///
/// # Errors
/// The store failed.
pub async fn list_on(conn: &mut AnyConnection) -> Result<Vec<AlarmSubscription>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM o2ims_alarm_subscriptions ORDER BY created_at, id"
    ))
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(from_row).collect()
}

/// Every alarm subscription, oldest first.
///
/// # Errors
/// The store failed.
pub async fn list(db: &Db) -> Result<Vec<AlarmSubscription>, StoreError> {
    let mut conn = db.pool().acquire().await?;
    list_on(&mut conn).await
}

/// One alarm subscription.
///
/// # Errors
/// The store failed.
pub async fn get(db: &Db, id: Uuid) -> Result<Option<AlarmSubscription>, StoreError> {
    let row: Option<Row> = get_row(db, "o2ims_alarm_subscriptions", COLUMNS, id).await?;
    row.map(from_row).transpose()
}

/// Stores a new alarm subscription (fields already validated).
///
/// # Errors
/// The store failed.
pub async fn create(
    db: &Db,
    consumer: Option<String>,
    callback: String,
    filter: Option<String>,
    event_filter: Option<Vec<String>>,
) -> Result<AlarmSubscription, StoreError> {
    let id = Uuid::new_v4().to_string();
    let now = now_ms();
    let events = event_filter.map(|e| e.join(","));
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO o2ims_alarm_subscriptions \
         (id, consumer_subscription_id, callback, filter, event_filter, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(consumer.clone())
    .bind(callback.clone())
    .bind(filter.clone())
    .bind(events.clone())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    from_row((id, consumer, callback, filter, events, now))
}

/// Deletes an alarm subscription and its queued notifications; false when there was none.
///
/// # Errors
/// The store failed.
pub async fn delete(db: &Db, id: Uuid) -> Result<bool, StoreError> {
    delete_with_queue(
        db,
        "o2ims_alarm_subscriptions",
        "o2ims_alarm_notifications",
        id,
    )
    .await
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("alarm subscription {id}"))
}

/// Creates an alarm subscription.
#[utoipa::path(post, path = "/alarmSubscriptions", tag = "o2ims-monitoring",
    security(("bearer" = [])),
    request_body = NewAlarmSubscription,
    responses(
        (status = 201, description = "The stored subscription", body = AlarmSubscription),
        (status = 400, description = "Invalid callback or filter", body = crate::error::Problem),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 403, description = "No o2ims:subscribe scope", body = crate::error::Problem)))]
async fn create_subscription(
    _caller: ScopeSubscribe,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewAlarmSubscription>,
) -> Result<(StatusCode, Json<AlarmSubscription>), ApiError> {
    let mut errors = Vec::new();
    let consumer = optional_text(
        "consumerSubscriptionId",
        body.consumer_subscription_id,
        &mut errors,
    );
    let callback = required_callback(body.callback, &mut errors);
    let filter = optional_text("filter", body.filter, &mut errors)
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty());
    if let Err(m) = selection(filter.as_deref()) {
        errors.push(FieldError::new("filter", m));
    }
    let event_filter = match parse_event_filter(body.event_filter) {
        Ok(e) => e,
        Err(m) => {
            errors.push(FieldError::new("eventFilter", m));
            None
        }
    };
    let Some(callback) = callback.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let sub = create(&state.db, consumer, callback, filter, event_filter).await?;
    Ok((StatusCode::CREATED, Json(sub)))
}

/// Lists the alarm subscriptions.
#[utoipa::path(get, path = "/alarmSubscriptions", tag = "o2ims-monitoring",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every alarm subscription", body = Vec<AlarmSubscription>),
        (status = 401, description = "No or invalid token", body = crate::error::Problem)))]
async fn list_subscriptions(
    _caller: ScopeRead,
    State(state): State<AppState>,
) -> Result<Json<Vec<AlarmSubscription>>, ApiError> {
    Ok(Json(list(&state.db).await?))
}

/// One alarm subscription.
#[utoipa::path(get, path = "/alarmSubscriptions/{alarmSubscriptionId}",
    tag = "o2ims-monitoring", security(("bearer" = [])),
    params(("alarmSubscriptionId" = String, Path, description = "Alarm subscription id (UUID)")),
    responses(
        (status = 200, description = "The subscription", body = AlarmSubscription),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 404, description = "No such subscription", body = crate::error::Problem)))]
async fn get_subscription(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AlarmSubscription>, ApiError> {
    get_answer(&id, not_found, |uuid| get(&state.db, uuid)).await
}

/// Deletes an alarm subscription and its undelivered notifications.
#[utoipa::path(delete, path = "/alarmSubscriptions/{alarmSubscriptionId}",
    tag = "o2ims-monitoring", security(("bearer" = [])),
    params(("alarmSubscriptionId" = String, Path, description = "Alarm subscription id (UUID)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 403, description = "No o2ims:subscribe scope", body = crate::error::Problem),
        (status = 404, description = "No such subscription", body = crate::error::Problem)))]
async fn delete_subscription(
    _caller: ScopeSubscribe,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    delete_answer(&id, not_found, |uuid| delete(&state.db, uuid)).await
}

/// The alarm subscription routes.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_subscription, list_subscriptions))
        .routes(routes!(get_subscription, delete_subscription))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_and_event_filters() {
        assert!(validate_callback("http://127.0.0.1:9/x").is_ok());
        assert!(validate_callback("https://smo.example/notify").is_ok());
        assert!(validate_callback("ftp://smo.example/").is_err());
        assert!(validate_callback("/relative").is_err());
        assert_eq!(
            parse_event_filter(Some(serde_json::json!(["new", "CLEAR", "new"]))),
            Ok(Some(vec!["NEW".to_owned(), "CLEAR".to_owned()]))
        );
        assert!(parse_event_filter(Some(serde_json::json!("NEW,BOGUS"))).is_err());
        assert!(matches!(
            selection(Some("clear")),
            Ok(Selection::Event(EventType::Clear))
        ));
        assert!(selection(Some("(eq,perceivedSeverity,1)")).is_ok());
        assert!(selection(Some("(eq,nope,1)")).is_err());
    }
}
