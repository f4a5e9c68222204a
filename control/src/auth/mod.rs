//! Authentication and roles: argon2 password hashes, JWT access and refresh tokens signed with
//! a key kept in the store, and the extractors every protected handler takes.
//!
//! - [`AuthUser`]: any valid access token (admin or viewer) — for reads.
//! - [`AdminUser`]: an access token of an `admin` — for writes; a viewer gets 403.

pub mod clients;
pub mod jwt;
pub mod password;
pub mod rotation;
pub mod scope;

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::model::UserRole;
use crate::state::AppState;

pub use jwt::{Claims, Keys, TokenKind};

/// Token lifetimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthSettings {
    /// Access-token lifetime (default 15 minutes).
    pub access_ttl: Duration,
    /// Refresh-token lifetime (default 1 day).
    pub refresh_ttl: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// What the authentication layer needs at run time.
#[derive(Debug)]
pub struct AuthState {
    /// Signing keys (reloadable: see [`rotation`]).
    pub keys: rotation::KeyRing,
    /// Token lifetimes.
    pub settings: AuthSettings,
}

/// The caller, from a valid access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    /// `users.id`.
    pub user_id: i64,
    /// `users.username`.
    pub username: String,
    /// The role the token was issued with.
    pub role: UserRole,
}

impl AuthUser {
    /// 403 unless the caller is an admin.
    ///
    /// # Errors
    /// The caller is a viewer.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == UserRole::Admin {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "user `{}` has the viewer role, which is read-only; ask an admin",
                self.username
            )))
        }
    }
}

/// The bearer token of a request, if it has one.
#[must_use]
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(token) = bearer_token(parts) else {
            return Err(ApiError::unauthorized(
                "this route needs `Authorization: Bearer <access token>`; get one from POST /api/token/",
            ));
        };
        let claims = state
            .auth
            .keys
            .verify_or_reload(&state.db, token, TokenKind::Access)
            .await
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        claims.user()
    }
}

/// The caller, who must be an admin (403 for a viewer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUser(pub AuthUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        user.require_admin()?;
        Ok(Self(user))
    }
}
