//! JWT access and refresh tokens (HS256). The signing key is generated on first start and kept
//! in the store's `settings` table (`jwt_keys`), so every replica on one database signs and
//! verifies with the same key. Keys carry a `kid`; tokens signed with any known key verify, so a
//! rotation (new current key, old one kept until its tokens expire) logs nobody out early.
//! Keys are never logged (`Debug` shows only the key ids).
//!
//! Besides users' access and refresh tokens, the same keys sign the OAuth2 client tokens of
//! the O2ims API ([`TokenKind::Client`], `typ = "client"`, with the granted scopes in the
//! `scope` claim): [`Keys::verify`] refuses them where an access token is expected, so only
//! the O2ims extractors ([`crate::auth::scope`], through [`Keys::verify_o2ims`]) accept them.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::auth::AuthUser;
use crate::db::{Db, StoreError, now_ms};
use crate::error::ApiError;
use crate::model::UserRole;

/// The `settings` key holding the signing keys (JSON list, newest first).
pub const SETTINGS_KEY: &str = "jwt_keys";

/// Which kind of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Short-lived; authorises API calls.
    Access,
    /// Longer-lived; only buys new access tokens.
    Refresh,
    /// An OAuth2 client's token (client-credentials grant): only the O2ims API accepts it.
    Client,
}

impl TokenKind {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Refresh => "refresh",
            Self::Client => "client",
        }
    }
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id (`users.id`) as a string.
    pub sub: String,
    /// The username.
    pub name: String,
    /// The role at issue time.
    pub role: UserRole,
    /// `access` or `refresh`.
    pub typ: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
    /// The granted O2ims scopes, space-separated (client tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl Claims {
    /// Claims for `user` of `kind`, valid for `ttl_secs` from `now_ms`.
    #[must_use]
    pub fn new(user: &AuthUser, kind: TokenKind, now_ms: i64, ttl_secs: i64) -> Self {
        let iat = now_ms / 1000;
        Self {
            sub: user.user_id.to_string(),
            name: user.username.clone(),
            role: user.role,
            typ: kind.as_str().to_owned(),
            iat,
            exp: iat.saturating_add(ttl_secs),
            jti: random_hex(16),
            scope: None,
        }
    }

    /// Claims of an OAuth2 client token for `client_id` with `scope` (space-separated),
    /// valid for `ttl_secs` from `now_ms`. `role` is `viewer` (unused: the scopes decide).
    #[must_use]
    pub fn client(client_id: &str, scope: &str, now_ms: i64, ttl_secs: i64) -> Self {
        let iat = now_ms / 1000;
        Self {
            sub: format!("client:{client_id}"),
            name: client_id.to_owned(),
            role: UserRole::Viewer,
            typ: TokenKind::Client.as_str().to_owned(),
            iat,
            exp: iat.saturating_add(ttl_secs),
            jti: random_hex(16),
            scope: Some(scope.to_owned()),
        }
    }

    /// Whether this is an OAuth2 client token.
    #[must_use]
    pub fn is_client(&self) -> bool {
        self.typ == TokenKind::Client.as_str()
    }

    /// The user these claims name.
    ///
    /// # Errors
    /// `sub` is not a user id.
    pub fn user(&self) -> Result<AuthUser, ApiError> {
        let user_id = self
            .sub
            .parse()
            .map_err(|_| ApiError::unauthorized("token subject is not a user id; log in again"))?;
        Ok(AuthUser {
            user_id,
            username: self.name.clone(),
            role: self.role,
        })
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Past `exp`.
    #[error("the token has expired; refresh it at POST /api/token/refresh/ or log in again")]
    Expired,
    /// A refresh token where an access token belongs, or the reverse.
    #[error("wrong kind of token: expected an {expected} token")]
    WrongKind {
        /// What was expected.
        expected: &'static str,
    },
    /// An OAuth2 client token where a user's access token belongs (the REST API under `/api`).
    #[error(
        "this is an OAuth2 client token, which only the O2ims API accepts; the REST API needs a \
         user's access token from POST /api/token"
    )]
    ClientToken,
    /// Malformed, unknown key, or bad signature.
    #[error("invalid token; log in again at POST /api/token/")]
    Invalid,
}

/// A signing key as stored (`settings.jwt_keys`, newest first); see [`super::rotation`].
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredKey {
    pub(crate) kid: String,
    pub(crate) secret_hex: String,
    pub(crate) created_ms: i64,
}

struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// The signing keys: the first signs, all verify.
pub struct Keys {
    keys: Vec<Key>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field(
                "kids",
                &self.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// `n` random bytes as lower-case hex.
#[must_use]
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // getrandom fails only when the OS has no entropy source at all.
    if getrandom::fill(&mut buf).is_err() {
        tracing::error!("the operating system's random source failed");
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Keys {
    /// Loads the keys from the store, generating and storing the first one if there is none
    /// (race-free across replicas: the first insert wins and everyone reads it back).
    ///
    /// # Errors
    /// The store failed or holds malformed keys.
    pub async fn load_or_create(db: &Db) -> Result<Self, StoreError> {
        let first = vec![StoredKey {
            kid: random_hex(8),
            secret_hex: random_hex(32),
            created_ms: now_ms(),
        }];
        let json = serde_json::to_string(&first).unwrap_or_default();
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(SETTINGS_KEY)
        .bind(json)
        .execute(db.pool())
        .await?;
        let (value,): (String,) = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
            .bind(SETTINGS_KEY)
            .fetch_one(db.pool())
            .await?;
        let stored: Vec<StoredKey> =
            serde_json::from_str(&value).map_err(|e| StoreError::InvalidReference {
                field: SETTINGS_KEY.to_owned(),
                message: format!("stored signing keys are malformed: {e}"),
            })?;
        Self::from_stored(&stored).ok_or_else(|| StoreError::InvalidReference {
            field: SETTINGS_KEY.to_owned(),
            message: "stored signing keys are malformed or empty".to_owned(),
        })
    }

    /// The key ids, the signing one first.
    #[must_use]
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    pub(crate) fn from_stored(stored: &[StoredKey]) -> Option<Self> {
        let keys = stored
            .iter()
            .map(|k| {
                let secret = decode_hex(&k.secret_hex)?;
                Some(Key {
                    kid: k.kid.clone(),
                    encoding: EncodingKey::from_secret(&secret),
                    decoding: DecodingKey::from_secret(&secret),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        (!keys.is_empty()).then_some(Self { keys })
    }

    /// Signs `claims` with the current key.
    #[must_use]
    pub fn issue(&self, claims: &Claims) -> String {
        let Some(key) = self.keys.first() else {
            return String::new();
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap_or_default()
    }

    /// Verifies signature, expiry and kind.
    ///
    /// # Errors
    /// See [`TokenError`].
    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<Claims, TokenError> {
        let claims = self.decode(token)?;
        if claims.typ != kind.as_str() {
            if claims.is_client() {
                return Err(TokenError::ClientToken);
            }
            return Err(TokenError::WrongKind {
                expected: kind.as_str(),
            });
        }
        Ok(claims)
    }

    /// Verifies a token for the O2ims API: a user's access token or a client token.
    ///
    /// # Errors
    /// See [`TokenError`].
    pub fn verify_o2ims(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = self.decode(token)?;
        if claims.typ == TokenKind::Access.as_str() || claims.is_client() {
            Ok(claims)
        } else {
            Err(TokenError::WrongKind {
                expected: TokenKind::Access.as_str(),
            })
        }
    }

    /// Signature and expiry only.
    fn decode(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let key = match &header.kid {
            Some(kid) => self.keys.iter().find(|k| &k.kid == kid),
            None => None,
        }
        .ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            },
        )?;
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::from_stored(&[StoredKey {
            kid: "k1".into(),
            secret_hex: random_hex(32),
            created_ms: 0,
        }])
        .unwrap()
    }

    fn user() -> AuthUser {
        AuthUser {
            user_id: 7,
            username: "ana".into(),
            role: UserRole::Viewer,
        }
    }

    #[test]
    fn tokens_verify_by_kind_and_expire() {
        let k = keys();
        let now = now_ms();
        let access = k.issue(&Claims::new(&user(), TokenKind::Access, now, 60));
        let claims = k.verify(&access, TokenKind::Access).unwrap();
        assert_eq!(claims.user().unwrap(), user());
        assert_eq!(
            k.verify(&access, TokenKind::Refresh),
            Err(TokenError::WrongKind {
                expected: "refresh"
            })
        );
        let old = k.issue(&Claims::new(&user(), TokenKind::Access, now - 120_000, 60));
        assert_eq!(k.verify(&old, TokenKind::Access), Err(TokenError::Expired));
        assert_eq!(
            keys().verify(&access, TokenKind::Access),
            Err(TokenError::Invalid)
        );
        let mut tampered = access.clone();
        tampered.pop();
        assert_eq!(
            k.verify(&tampered, TokenKind::Access),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn client_tokens_only_verify_for_o2ims() {
        let k = keys();
        let token = k.issue(&Claims::client("focom", "o2ims:read", now_ms(), 60));
        assert_eq!(
            k.verify(&token, TokenKind::Access),
            Err(TokenError::ClientToken)
        );
        let claims = k.verify_o2ims(&token).unwrap();
        assert!(claims.is_client());
        assert_eq!(claims.scope.as_deref(), Some("o2ims:read"));
        let access = k.issue(&Claims::new(&user(), TokenKind::Access, now_ms(), 60));
        assert!(!k.verify_o2ims(&access).unwrap().is_client());
        let refresh = k.issue(&Claims::new(&user(), TokenKind::Refresh, now_ms(), 60));
        assert!(k.verify_o2ims(&refresh).is_err());
    }

    #[test]
    fn debug_shows_no_secret() {
        let k = keys();
        assert_eq!(format!("{k:?}"), "Keys { kids: [\"k1\"] }");
    }
}
