//! Inventory subscriptions (`InventorySubscriptionInfo`): the routes under each inventory
//! prefix (`POST`/`GET /subscriptions`, `GET`/`DELETE /subscriptions/{subscriptionId}`) and
//! their store.
//!
//! A subscription's `callback` must be an absolute `http://` or `https://` URL (HTTPS
//! callbacks are verified against the system roots and `--callback-ca`; see
//! [`super::delivery`]). Its optional
//! `filter` uses the SOL013 filter syntax ([`super::query`]) and selects the events that are
//! reported: it is evaluated against the changed object (its state after the change, or before
//! a delete) with two added attributes, `objectType` (`resource`, `resourcePool` or
//! `deploymentManager`) and `notificationEventType` (0 create, 1 modify, 2 delete). Without a
//! filter every event is reported. Creating and deleting needs the `o2ims:subscribe` scope
//! ([`ScopeSubscribe`]: an OAuth2 client granted it, or an admin); reading, `o2ims:read`. Deleting a subscription drops its undelivered notifications.

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, Uri};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::inventory::{ListQuery, Paged, answer};
use super::query::{self, Filter};
use crate::auth::scope::{ScopeRead, ScopeSubscribe};
use crate::db::{Db, StoreError, now_ms};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, FieldError};
use crate::state::AppState;

/// Longest accepted callback URL, consumer id or filter.
pub const MAX_FIELD_LEN: usize = 2048;

/// `InventorySubscriptionInfo` as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// Server-assigned id.
    pub subscription_id: Uuid,
    /// The consumer's own id for it, echoed in every notification.
    pub consumer_subscription_id: Option<String>,
    /// Where notifications are POSTed (`http://…` or `https://…`).
    pub callback: String,
    /// SOL013 filter selecting the reported events (absent: all).
    pub filter: Option<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

/// The body of `POST /subscriptions`. A client-supplied `subscriptionId` is ignored (as the
/// spec says); other unknown fields are refused.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSubscription {
    /// Ignored (the server assigns the id).
    #[schema(value_type = Option<String>)]
    pub subscription_id: Option<Value>,
    /// The consumer's own id (optional).
    #[schema(value_type = Option<String>)]
    pub consumer_subscription_id: Option<Value>,
    /// Absolute `http://` or `https://` URL notifications are POSTed to (required).
    #[schema(value_type = String)]
    pub callback: Option<Value>,
    /// SOL013 filter selecting the reported events (optional).
    #[schema(value_type = Option<String>)]
    pub filter: Option<Value>,
}

/// Checks a callback URL: absolute, `http` or `https`, with a host.
///
/// # Errors
/// What is wrong and what is accepted.
pub fn validate_callback(s: &str) -> Result<Uri, String> {
    const FORM: &str = "give an absolute http:// or https:// URL such as \
                        https://smo.example:8443/notify";
    if s.len() > MAX_FIELD_LEN {
        return Err(format!("is longer than {MAX_FIELD_LEN} characters"));
    }
    let uri: Uri = s
        .parse()
        .map_err(|e| format!("is not a URL ({e}); {FORM}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(format!("has scheme `{other}`; {FORM}")),
        None => return Err(format!("is not absolute; {FORM}")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("has no host; {FORM}"));
    }
    Ok(uri)
}

/// Parses a stored or given subscription filter.
///
/// # Errors
/// The filter is malformed (the message says how to write one).
pub fn parse_filter(s: &str) -> Result<Filter, String> {
    if s.len() > MAX_FIELD_LEN {
        return Err(format!("is longer than {MAX_FIELD_LEN} characters"));
    }
    query::parse_filter(s).map_err(|e| e.message)
}

/// An optional text field of a subscription body: absent or null is `None`; anything but a
/// string of at most [`MAX_FIELD_LEN`] bytes adds a field error. Shared by the inventory and
/// alarm subscriptions.
pub(crate) fn optional_text(
    field: &str,
    v: Option<Value>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= MAX_FIELD_LEN => Some(s),
        Some(Value::String(_)) => {
            errors.push(FieldError::new(
                field,
                format!("is longer than {MAX_FIELD_LEN} characters"),
            ));
            None
        }
        Some(_) => {
            errors.push(FieldError::new(field, "must be a string"));
            None
        }
    }
}

/// The required `callback` field of a subscription body, checked with
/// [`validate_callback`]; a missing or invalid one adds a field error. Shared by the inventory
/// and alarm subscriptions.
pub(crate) fn required_callback(v: Option<Value>, errors: &mut Vec<FieldError>) -> Option<String> {
    match v {
        Some(Value::String(s)) => match validate_callback(&s) {
            Ok(_) => Some(s),
            Err(m) => {
                errors.push(FieldError::new("callback", m));
                None
            }
        },
        None | Some(Value::Null) => {
            errors.push(FieldError::new(
                "callback",
                "is required: the http:// or https:// URL notifications are POSTed to",
            ));
            None
        }
        Some(_) => {
            errors.push(FieldError::new("callback", "must be a string (a URL)"));
            None
        }
    }
}

type Row = (String, Option<String>, String, Option<String>, i64);

const COLUMNS: &str = "id, consumer_subscription_id, callback, filter, created_at";

fn from_row((id, consumer, callback, filter, created_at): Row) -> Result<Subscription, StoreError> {
    let subscription_id = id.parse().map_err(|e| StoreError::InvalidReference {
        field: "subscriptionId".to_owned(),
        message: format!("stored subscription id `{id}` is not a UUID: {e}"),
    })?;
    Ok(Subscription {
        subscription_id,
        consumer_subscription_id: consumer,
        callback,
        filter,
        created_at: crate::db::format_ts(created_at),
    })
}

/// Every subscription, oldest first.
///
/// # Errors
/// The store failed.
pub async fn list(db: &Db) -> Result<Vec<Subscription>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM o2ims_subscriptions ORDER BY created_at, id"
    ))
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(from_row).collect()
}

/// One subscription.
///
/// # Errors
/// The store failed.
pub async fn get(db: &Db, id: Uuid) -> Result<Option<Subscription>, StoreError> {
    let row: Option<Row> = get_row(db, "o2ims_subscriptions", COLUMNS, id).await?;
    row.map(from_row).transpose()
}

/// The `columns` of subscription `id` in `table` (fixed names, never input), if any. Shared by
/// the inventory and alarm subscriptions.
///
/// # Errors
/// The store failed.
pub(crate) async fn get_row<R>(
    db: &Db,
    table: &str,
    columns: &str,
    id: Uuid,
) -> Result<Option<R>, StoreError>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    Ok(
        sqlx::query_as(&format!("SELECT {columns} FROM {table} WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(db.pool())
            .await?,
    )
}

/// Stores a new subscription (fields already validated).
///
/// # Errors
/// The store failed.
pub async fn create(
    db: &Db,
    consumer: Option<String>,
    callback: String,
    filter: Option<String>,
) -> Result<Subscription, StoreError> {
    let id = Uuid::new_v4();
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO o2ims_subscriptions \
         (id, consumer_subscription_id, callback, filter, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.to_string())
    .bind(consumer.clone())
    .bind(callback.clone())
    .bind(filter.clone())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    from_row((id.to_string(), consumer, callback, filter, now))
}

/// Deletes a subscription and its queued notifications; false when there was none.
///
/// # Errors
/// The store failed.
pub async fn delete(db: &Db, id: Uuid) -> Result<bool, StoreError> {
    delete_with_queue(db, "o2ims_subscriptions", "o2ims_notifications", id).await
}

/// Deletes subscription `id` from table `subscriptions` and its queued notifications from
/// table `notifications` (fixed names, never input), in one transaction; false when there was
/// none. Shared by the inventory and alarm subscriptions.
///
/// # Errors
/// The store failed.
pub(crate) async fn delete_with_queue(
    db: &Db,
    subscriptions: &str,
    notifications: &str,
    id: Uuid,
) -> Result<bool, StoreError> {
    let mut tx = db.begin_write().await?;
    // Explicit as well as ON DELETE CASCADE: SQLite connections opened without
    // `foreign_keys = ON` (e.g. by an operator's sqlite3 shell) would not cascade.
    sqlx::query(&format!(
        "DELETE FROM {notifications} WHERE subscription_id = $1"
    ))
    .bind(id.to_string())
    .execute(&mut *tx)
    .await?;
    let done = sqlx::query(&format!("DELETE FROM {subscriptions} WHERE id = $1"))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("subscription {id}"))
}

/// Answers `GET …/{id}` of a subscription read with `get`: 404 (`not_found`) when `id` is not
/// a UUID or there is no such subscription. Shared by the inventory and alarm subscriptions.
pub(crate) async fn get_answer<T, F>(
    id: &str,
    not_found: fn(&str) -> ApiError,
    get: impl FnOnce(Uuid) -> F,
) -> Result<Json<T>, ApiError>
where
    F: Future<Output = Result<Option<T>, StoreError>>,
{
    let uuid: Uuid = id.parse().map_err(|_| not_found(id))?;
    get(uuid).await?.map(Json).ok_or_else(|| not_found(id))
}

/// Answers `DELETE …/{id}` of a subscription removed with `delete`: 204, or 404 (`not_found`)
/// when `id` is not a UUID or there was no such subscription. Shared by the inventory and
/// alarm subscriptions.
pub(crate) async fn delete_answer<F>(
    id: &str,
    not_found: fn(&str) -> ApiError,
    delete: impl FnOnce(Uuid) -> F,
) -> Result<StatusCode, ApiError>
where
    F: Future<Output = Result<bool, StoreError>>,
{
    let uuid: Uuid = id.parse().map_err(|_| not_found(id))?;
    if delete(uuid).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(id))
    }
}

/// Creates a subscription.
#[utoipa::path(post, path = "/subscriptions", tag = "o2ims", security(("bearer" = [])),
    request_body = NewSubscription,
    responses(
        (status = 201, description = "The stored subscription", body = Subscription),
        (status = 400, description = "Invalid callback or filter", body = crate::error::Problem),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 403, description = "The caller lacks the o2ims:subscribe scope", body = crate::error::Problem)))]
async fn create_subscription(
    _caller: ScopeSubscribe,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewSubscription>,
) -> Result<(StatusCode, Json<Subscription>), ApiError> {
    let mut errors = Vec::new();
    let consumer = optional_text(
        "consumerSubscriptionId",
        body.consumer_subscription_id,
        &mut errors,
    );
    let callback = required_callback(body.callback, &mut errors);
    let filter = optional_text("filter", body.filter, &mut errors).filter(|f| !f.is_empty());
    if let Some(f) = &filter {
        if let Err(m) = parse_filter(f) {
            errors.push(FieldError::new("filter", m));
        }
    }
    let Some(callback) = callback.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let sub = create(&state.db, consumer, callback, filter).await?;
    Ok((StatusCode::CREATED, Json(sub)))
}

const ATTRS: &[&str] = &[
    "subscriptionId",
    "consumerSubscriptionId",
    "callback",
    "filter",
    "createdAt",
];

/// Lists the subscriptions (SOL013 filter, selectors and paging as the inventory lists).
#[utoipa::path(get, path = "/subscriptions", tag = "o2ims", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "The subscriptions", body = Vec<Subscription>,
            headers(("Link" = String, description = "`<…?nextpage_opaque_marker=…>; rel=\"next\"` when more objects follow"))),
        (status = 400, description = "Malformed filter, selector, limit or nextpage_opaque_marker", body = crate::error::Problem),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 403, description = "The caller lacks the o2ims:read scope", body = crate::error::Problem)))]
async fn list_subscriptions(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
    OriginalUri(uri): OriginalUri,
) -> Result<Paged, ApiError> {
    answer(&list(&state.db).await?, &q, ATTRS, "subscriptionId", &uri)
}

/// One subscription.
#[utoipa::path(get, path = "/subscriptions/{subscriptionId}", tag = "o2ims",
    security(("bearer" = [])),
    params(("subscriptionId" = String, Path, description = "Subscription id (UUID)")),
    responses(
        (status = 200, description = "The subscription", body = Subscription),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 404, description = "No such subscription", body = crate::error::Problem)))]
async fn get_subscription(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Subscription>, ApiError> {
    get_answer(&id, not_found, |uuid| get(&state.db, uuid)).await
}

/// Deletes a subscription and its undelivered notifications.
#[utoipa::path(delete, path = "/subscriptions/{subscriptionId}", tag = "o2ims",
    security(("bearer" = [])),
    params(("subscriptionId" = String, Path, description = "Subscription id (UUID)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 403, description = "The caller lacks the o2ims:subscribe scope", body = crate::error::Problem),
        (status = 404, description = "No such subscription", body = crate::error::Problem)))]
async fn delete_subscription(
    _caller: ScopeSubscribe,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    delete_answer(&id, not_found, |uuid| delete(&state.db, uuid)).await
}

/// The subscription routes of one version prefix.
#[must_use]
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_subscription, list_subscriptions))
        .routes(routes!(get_subscription, delete_subscription))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks() {
        assert!(validate_callback("http://127.0.0.1:9/x").is_ok());
        assert!(validate_callback("http://smo.example/notify?a=b").is_ok());
        assert!(validate_callback("https://smo.example/").is_ok());
        assert!(validate_callback("https:///x").is_err());
        assert!(validate_callback("ftp://smo.example/").is_err());
        assert!(validate_callback("/relative").is_err());
        assert!(validate_callback("not a url").is_err());
    }
}
