//! Logging in: `POST /api/token` trades a username and password for an access token and a
//! refresh token; `POST /api/token/refresh` trades a refresh token for a new access token.
//!
//! An unknown user and a wrong password get the same 401 (and take about the same time: an
//! unknown user is checked against a dummy hash). Failed logins are throttled per username and
//! per client address ([`crate::ratelimit`]); a throttled caller gets 429 with `Retry-After`.
//! A refresh re-reads the user, so a deleted user cannot refresh and a role change applies to
//! the next access token.

use std::net::IpAddr;
use std::sync::OnceLock;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthUser, Claims, TokenKind, password};
use crate::db::now_ms;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use crate::store::users;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(obtain_token))
        .routes(routes!(refresh_token))
}

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The username (matched case-insensitively).
    pub username: String,
    /// The password.
    pub password: String,
}

/// A token pair.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    /// Access token (JWT): send as `Authorization: Bearer <access>`.
    pub access: String,
    /// Refresh token (JWT): trade it at `POST /api/token/refresh` for a new access token.
    pub refresh: String,
}

/// A refresh request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// A refresh token from `POST /api/token`.
    pub refresh: String,
}

/// A new access token.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessToken {
    /// Access token (JWT).
    pub access: String,
}

/// The client's address, when the server provides it (`ConnectInfo`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

const BAD_CREDENTIALS: &str = "invalid username or password";

/// Log in.
///
/// Answers the same 401 for an unknown user and a wrong password. After 5 failures for one
/// username, or 20 from one address, within 5 minutes, answers 429 with `Retry-After`.
#[utoipa::path(post, path = "/api/token", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Tokens", body = TokenPair),
        (status = 400, description = "Malformed body", body = crate::error::Problem),
        (status = 401, description = "Invalid username or password", body = crate::error::Problem),
        (status = 429, description = "Too many failed logins; see Retry-After", body = crate::error::Problem),
    ))]
async fn obtain_token(
    axum::extract::State(state): axum::extract::State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    if let Err(wait) = state.login.check(&body.username, addr) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Err(ApiError::too_many_requests(
            format!("too many failed logins; try again in {secs} s"),
            secs,
        ));
    }
    let found = users::by_username(&state.db, &body.username).await?;
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        None => (None, dummy_hash().await?),
    };
    let password = body.password;
    let matches = password::verify_password_async(password, hash).await;
    let user = match user {
        Some(user) if matches => user,
        _ => {
            state.login.record_failure(&body.username, addr);
            tracing::warn!(username = %truncate(&body.username), client = ?addr, "failed login");
            return Err(ApiError::unauthorized(BAD_CREDENTIALS));
        }
    };
    state.login.record_success(&body.username);
    tracing::info!(username = %user.username, client = ?addr, "login");
    let auth_user = AuthUser {
        user_id: user.id,
        username: user.username,
        role: user.role,
    };
    let now = now_ms();
    let settings = state.auth.settings;
    let access = Claims::new(
        &auth_user,
        TokenKind::Access,
        now,
        secs(settings.access_ttl),
    );
    let refresh = Claims::new(
        &auth_user,
        TokenKind::Refresh,
        now,
        secs(settings.refresh_ttl),
    );
    Ok(Json(TokenPair {
        access: state.auth.keys.issue(&access),
        refresh: state.auth.keys.issue(&refresh),
    }))
}

/// Get a new access token.
///
/// The user is read again, so a deleted user gets 401 and a changed role is in the new token.
/// An invalid or expired refresh token counts as a failed login of the client address (20
/// within 5 minutes: 429 with `Retry-After`).
#[utoipa::path(post, path = "/api/token/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new access token", body = AccessToken),
        (status = 400, description = "Malformed body", body = crate::error::Problem),
        (status = 401, description = "Invalid or expired refresh token, or the user is gone", body = crate::error::Problem),
        (status = 429, description = "Too many failed logins or refreshes from this address; see Retry-After", body = crate::error::Problem),
    ))]
async fn refresh_token(
    axum::extract::State(state): axum::extract::State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<AccessToken>, ApiError> {
    // Bad refresh tokens count against the client address like failed logins.
    if let Err(wait) = state.login.check_addr(addr) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Err(ApiError::too_many_requests(
            format!("too many failed logins or refreshes from this address; try again in {secs} s"),
            secs,
        ));
    }
    let claims = match state
        .auth
        .keys
        .verify_or_reload(&state.db, &body.refresh, TokenKind::Refresh)
        .await
    {
        Ok(claims) => claims,
        Err(e) => {
            state.login.record_addr_failure(addr);
            return Err(ApiError::unauthorized(e.to_string()));
        }
    };
    let id = claims.user()?.user_id;
    let user = match users::get(&state.db, id).await {
        Ok(user) => user,
        Err(crate::db::StoreError::NotFound(_)) => {
            return Err(ApiError::unauthorized(
                "the user of this token no longer exists; log in again",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let auth_user = AuthUser {
        user_id: user.id,
        username: user.username,
        role: user.role,
    };
    let ttl = secs(state.auth.settings.access_ttl);
    let access = Claims::new(&auth_user, TokenKind::Access, now_ms(), ttl);
    Ok(Json(AccessToken {
        access: state.auth.keys.issue(&access),
    }))
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// A username for a log line (attacker-chosen: bounded).
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A hash to verify against when the user does not exist, so that both failures cost the same.
async fn dummy_hash() -> Result<String, ApiError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h.clone());
    }
    let hash = password::hash_password_async("no such user, no login".to_owned())
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(DUMMY.get_or_init(|| hash).clone())
}
