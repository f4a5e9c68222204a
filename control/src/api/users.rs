//! User accounts: `/api/users` (list, create), `/api/users/{id}` (read, change password or role,
//! delete) for admins, and `/api/users/me` for any logged-in user. Password hashes are never
//! sent. The last admin can be neither deleted nor demoted (409 on `role`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::page::{Page, PageParams};
use crate::auth::{AdminUser, AuthUser, password};
use crate::db::{StoreError, format_ts, now_ms};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, FieldError};
use crate::model::UserRole;
use crate::state::AppState;
use crate::store::users::{self, User, UserChange};

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_me))
        .routes(routes!(get_user, patch_user, delete_user))
}

/// A user (never with its password).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserOut {
    /// Id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// `admin` (reads and writes) or `viewer` (reads).
    pub role: UserRole,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
}

impl From<User> for UserOut {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            username: u.username,
            role: u.role,
            created_at: format_ts(u.created_at),
            updated_at: format_ts(u.updated_at),
        }
    }
}

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 1–150 characters of letters, digits and `@ . + _ -`; unique (case-insensitively).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String)]
    pub username: Option<Value>,
    /// At least 8 characters.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String)]
    pub password: Option<Value>,
    /// `admin` or `viewer`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String)]
    pub role: Option<Value>,
}

/// Changes to a user; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// A new password (at least 8 characters).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub password: Option<Value>,
    /// A new role: `admin` or `viewer`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub role: Option<Value>,
}

/// Filters and pagination of the user list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// Page number, from 1 (default 1).
    pub page: Option<u32>,
    /// Items per page, 1–10000 (default 100).
    pub page_size: Option<u32>,
    /// Only users with this role (`admin` or `viewer`).
    pub role: Option<String>,
}

/// List users.
#[utoipa::path(get, path = "/api/users", tag = "users", params(UserQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of users", body = Page<UserOut>),
        (status = 400, description = "Invalid query", body = crate::error::Problem),
        (status = 401, description = "Not logged in", body = crate::error::Problem),
        (status = 403, description = "Not an admin", body = crate::error::Problem),
    ))]
async fn list_users(
    _: AdminUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> Result<Json<Page<UserOut>>, ApiError> {
    let page = PageParams {
        page: q.page,
        page_size: q.page_size,
    }
    .request();
    let role = q.role.as_deref().map(str::parse::<UserRole>).transpose();
    let (page, role) = match (page, role) {
        (Ok(p), Ok(r)) => (p, r),
        (page, role) => {
            let mut errors = match page {
                Err(e) => e.problem().errors,
                Ok(_) => Vec::new(),
            };
            if let Err(e) = role {
                errors.push(FieldError::new("role", e.to_string()));
            }
            return Err(ApiError::validation(errors));
        }
    };
    let (count, list) = users::list(&state.db, role, page.limit(), page.offset()).await?;
    Ok(Json(Page::new(
        page,
        count,
        list.into_iter().map(UserOut::from).collect(),
    )))
}

/// Create a user.
#[utoipa::path(post, path = "/api/users", tag = "users", request_body = NewUser,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = UserOut),
        (status = 400, description = "Invalid fields", body = crate::error::Problem),
        (status = 401, description = "Not logged in", body = crate::error::Problem),
        (status = 403, description = "Not an admin", body = crate::error::Problem),
        (status = 409, description = "The username is taken", body = crate::error::Problem),
    ))]
async fn create_user(
    _: AdminUser,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<UserOut>), ApiError> {
    let mut errors = Vec::new();
    let username = required_string(&mut errors, "username", body.username.as_ref());
    if let Some(name) = &username {
        if let Err(m) = users::validate_username(name) {
            errors.push(FieldError::new("username", m));
        }
    }
    let pass = required_string(&mut errors, "password", body.password.as_ref());
    if let Some(p) = &pass {
        if let Err(m) = users::validate_password(p) {
            errors.push(FieldError::new("password", m));
        }
    }
    let role = match body.role.as_ref() {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(
                "role",
                format!("required: one of {}", UserRole::EXPECTED),
            ));
            None
        }
        Some(v) => parse_role(&mut errors, v),
    };
    let (Some(username), Some(pass), Some(role), true) = (username, pass, role, errors.is_empty())
    else {
        return Err(ApiError::validation(errors));
    };
    let hash = hash(pass).await?;
    let mut tx = state.db.begin_write().await?;
    let user = users::create(&mut tx, &username, &hash, role, now_ms()).await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(username = %user.username, role = %user.role, "user created");
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// The logged-in user.
#[utoipa::path(get, path = "/api/users/me", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = UserOut),
        (status = 401, description = "Not logged in, or the user is gone", body = crate::error::Problem),
    ))]
async fn get_me(user: AuthUser, State(state): State<AppState>) -> Result<Json<UserOut>, ApiError> {
    match users::get(&state.db, user.user_id).await {
        Ok(u) => Ok(Json(u.into())),
        Err(StoreError::NotFound(_)) => Err(ApiError::unauthorized(
            "the user of this token no longer exists; log in again",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Read a user.
#[utoipa::path(get, path = "/api/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = UserOut),
        (status = 401, description = "Not logged in", body = crate::error::Problem),
        (status = 403, description = "Not an admin", body = crate::error::Problem),
        (status = 404, description = "No such user", body = crate::error::Problem),
    ))]
async fn get_user(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<UserOut>, ApiError> {
    Ok(Json(users::get(&state.db, id).await?.into()))
}

/// Change a user's password or role.
#[utoipa::path(patch, path = "/api/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    request_body = UserPatch,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The changed user", body = UserOut),
        (status = 400, description = "Invalid fields", body = crate::error::Problem),
        (status = 401, description = "Not logged in", body = crate::error::Problem),
        (status = 403, description = "Not an admin", body = crate::error::Problem),
        (status = 404, description = "No such user", body = crate::error::Problem),
        (status = 409, description = "Would demote the last admin", body = crate::error::Problem),
    ))]
async fn patch_user(
    AdminUser(caller): AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UserPatch>,
) -> Result<Json<UserOut>, ApiError> {
    let mut errors = Vec::new();
    let pass = match body.password.as_ref() {
        None => None,
        Some(v) => {
            let p = required_string(&mut errors, "password", Some(v));
            if let Some(p) = &p {
                if let Err(m) = users::validate_password(p) {
                    errors.push(FieldError::new("password", m));
                }
            }
            p
        }
    };
    let role = body.role.as_ref().and_then(|v| parse_role(&mut errors, v));
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let password_hash = match pass {
        Some(p) => Some(hash(p).await?),
        None => None,
    };
    let mut tx = state.db.begin_write().await?;
    let user = users::update(
        &mut tx,
        id,
        UserChange {
            password_hash,
            role,
        },
        now_ms(),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(username = %user.username, role = %user.role, by = %caller.username, "user changed");
    Ok(Json(user.into()))
}

/// Delete a user.
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not logged in", body = crate::error::Problem),
        (status = 403, description = "Not an admin", body = crate::error::Problem),
        (status = 404, description = "No such user", body = crate::error::Problem),
        (status = 409, description = "The last admin", body = crate::error::Problem),
    ))]
async fn delete_user(
    AdminUser(caller): AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let user = users::delete(&mut tx, id).await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(username = %user.username, by = %caller.username, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Keeps an explicit `null` as `Some(Value::Null)` (absent stays `None`), so it can be refused.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A required string field: records an error when absent, null or not a string.
fn required_string(errors: &mut Vec<FieldError>, field: &str, v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => {
            errors.push(FieldError::new(field, "required"));
            None
        }
        Some(_) => {
            errors.push(FieldError::new(field, "must be a string"));
            None
        }
    }
}

fn parse_role(errors: &mut Vec<FieldError>, v: &Value) -> Option<UserRole> {
    match v.as_str().map(str::parse::<UserRole>) {
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            errors.push(FieldError::new("role", e.to_string()));
            None
        }
        None => {
            errors.push(FieldError::new(
                "role",
                format!("must be a string: one of {}", UserRole::EXPECTED),
            ));
            None
        }
    }
}

/// Hashes a password off the async threads.
async fn hash(password: String) -> Result<String, ApiError> {
    password::hash_password_async(password)
        .await
        .map_err(|e| ApiError::internal(&e))
}
