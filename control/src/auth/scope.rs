//! OAuth2 scopes of the O2ims API and the extractors its handlers take.
//!
//! A caller is either a user (a control-plane access token: an admin holds every scope, a
//! viewer only [`Scope::Read`]) or an OAuth2 client (a client-credentials token from
//! `POST /oauth/token`, holding the scopes it was granted).
//!
//! - [`ScopeRead`]: inventory and alarm reads (`o2ims:read`).
//! - [`ScopeSubscribe`]: create and delete inventory and alarm subscriptions (`o2ims:subscribe`).
//! - [`ScopeAlarms`]: acknowledge and clear alarms, change the alarm service configuration
//!   (`o2ims:alarms`).

use std::fmt;
use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::auth::{AuthUser, bearer_token, clients};
use crate::error::ApiError;
use crate::model::UserRole;
use crate::state::AppState;

/// One O2ims scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// `o2ims:read` — read the inventory, alarms and subscriptions.
    Read,
    /// `o2ims:subscribe` — create and delete subscriptions.
    Subscribe,
    /// `o2ims:alarms` — acknowledge and clear alarms, configure the alarm service.
    Alarms,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Self; 3] = [Self::Read, Self::Subscribe, Self::Alarms];

    /// The scope's wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "o2ims:read",
            Self::Subscribe => "o2ims:subscribe",
            Self::Alarms => "o2ims:alarms",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is not one of [`Scope::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}`; the scopes are o2ims:read, o2ims:subscribe and o2ims:alarms")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, UnknownScope> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownScope(s.trim().to_owned()))
    }
}

/// Who is calling an O2ims route, with the scopes they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A control-plane user.
    User(AuthUser),
    /// An OAuth2 client (client-credentials grant).
    Client {
        /// The client id.
        client_id: String,
        /// The scopes granted to the token.
        scopes: Vec<Scope>,
    },
}

impl Caller {
    /// Whether the caller holds `scope`.
    #[must_use]
    pub fn has(&self, scope: Scope) -> bool {
        match self {
            Self::User(user) => user.role == UserRole::Admin || scope == Scope::Read,
            Self::Client { scopes, .. } => scopes.contains(&scope),
        }
    }

    /// A readable name for logs and audit fields.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Self::User(user) => user.username.clone(),
            Self::Client { client_id, .. } => format!("client:{client_id}"),
        }
    }

    /// 403 unless the caller holds `scope`.
    ///
    /// # Errors
    /// The caller lacks the scope.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            return Ok(());
        }
        Err(match self {
            Self::User(user) => ApiError::forbidden(format!(
                "user `{}` has the viewer role, which is read-only; ask an admin",
                user.username
            )),
            Self::Client { client_id, .. } => ApiError::forbidden(format!(
                "client `{client_id}` lacks the `{scope}` scope; an admin can delete the client \
                 and add it again with `ims-control client add {client_id} --scope {scope}` (and \
                 its other scopes), or request the scope in POST /oauth/token if it is granted"
            )),
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    /// A user's access token (`POST /api/token`) or an OAuth2 client token
    /// (`POST /oauth/token`). A client is read again from the store on every request, so a
    /// deleted client's tokens stop working at once and its scopes are those still granted.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(token) = bearer_token(parts) else {
            return Err(ApiError::unauthorized(
                "this route needs `Authorization: Bearer <token>`: an OAuth2 client token from \
                 POST /oauth/token (client credentials) or a user's access token from \
                 POST /api/token",
            ));
        };
        let claims = state
            .auth
            .keys
            .verify_o2ims_or_reload(&state.db, token)
            .await
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        if !claims.is_client() {
            return claims.user().map(Self::User);
        }
        let Some(client) = clients::get(&state.db, &claims.name).await? else {
            return Err(ApiError::unauthorized(format!(
                "OAuth2 client `{}` no longer exists; ask an admin for a new client",
                claims.name
            )));
        };
        let scopes = claims
            .scope
            .as_deref()
            .map(clients::parse_scopes)
            .transpose()
            .map_err(|e| ApiError::unauthorized(format!("invalid token scope: {e}")))?
            .unwrap_or_default()
            .into_iter()
            .filter(|s| client.scopes.contains(s))
            .collect();
        Ok(Self::Client {
            client_id: client.client_id,
            scopes,
        })
    }
}

macro_rules! scope_extractor {
    ($(#[$doc:meta])* $name:ident, $scope:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(pub Caller);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, ApiError> {
                let caller = Caller::from_request_parts(parts, state).await?;
                caller.require($scope)?;
                Ok(Self(caller))
            }
        }
    };
}

scope_extractor!(
    /// A caller holding `o2ims:read`.
    ScopeRead,
    Scope::Read
);
scope_extractor!(
    /// A caller holding `o2ims:subscribe`.
    ScopeSubscribe,
    Scope::Subscribe
);
scope_extractor!(
    /// A caller holding `o2ims:alarms`.
    ScopeAlarms,
    Scope::Alarms
);

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: UserRole) -> Caller {
        Caller::User(AuthUser {
            user_id: 1,
            username: "u".into(),
            role,
        })
    }

    #[test]
    fn roles_and_scopes() {
        assert!(Scope::ALL.iter().all(|s| user(UserRole::Admin).has(*s)));
        assert!(user(UserRole::Viewer).has(Scope::Read));
        assert!(!user(UserRole::Viewer).has(Scope::Subscribe));
        let client = Caller::Client {
            client_id: "focom".into(),
            scopes: vec![Scope::Read, Scope::Alarms],
        };
        assert!(client.has(Scope::Alarms));
        assert!(client.require(Scope::Subscribe).is_err());
    }

    #[test]
    fn parse_scope_names() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
        }
        assert_eq!(" O2IMS:READ ".parse::<Scope>(), Ok(Scope::Read));
        assert!("admin".parse::<Scope>().is_err());
    }
}
