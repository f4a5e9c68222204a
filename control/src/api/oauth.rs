//! The OAuth2 token endpoint for FOCOM and other O2ims consumers: `POST /oauth/token` with the
//! client-credentials grant (RFC 6749 §4.4).
//!
//! The body is `application/x-www-form-urlencoded` with `grant_type=client_credentials` and an
//! optional `scope` (space-separated O2ims scopes, a subset of the client's; default: all it
//! was granted). The client authenticates with HTTP Basic (`client_id:client_secret`, each
//! form-urlencoded, RFC 6749 §2.3.1) or with the form fields `client_id` and `client_secret`,
//! never both. The answer is `{access_token, token_type: "Bearer", expires_in, scope}` with
//! `Cache-Control: no-store`; the token is a JWT signed with the control plane's keys
//! ([`crate::auth::jwt::Claims::client`]) that only the O2ims API accepts, valid for the
//! access-token lifetime.
//!
//! Errors follow RFC 6749 §5.2: `{"error", "error_description"}` with 400
//! (`invalid_request`, `unsupported_grant_type`, `invalid_scope`) or 401 with
//! `WWW-Authenticate: Basic` (`invalid_client`: unknown client or wrong secret, the same
//! answer for both). `invalid_grant` is not produced: with client credentials the grant is the
//! client's authentication, whose failures are `invalid_client`. Failed authentications are
//! throttled per client id and per address like logins ([`crate::ratelimit`]); a throttled
//! caller gets 429 with `Retry-After`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::token::ClientAddr;
use crate::auth::clients::{self, parse_scopes, scopes_text};
use crate::auth::{Claims, password};
use crate::db::now_ms;
use crate::state::AppState;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(issue_token))
}

/// The form fields of a token request (`application/x-www-form-urlencoded`).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documentation only: the body is parsed field by field
pub struct TokenForm {
    /// `client_credentials`.
    grant_type: String,
    /// Space-separated scopes to request (`o2ims:read o2ims:subscribe o2ims:alarms`); default:
    /// every scope granted to the client.
    scope: Option<String>,
    /// The client id, when not sent with HTTP Basic.
    client_id: Option<String>,
    /// The client secret, when not sent with HTTP Basic.
    client_secret: Option<String>,
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The bearer token (JWT) for the O2ims API.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds the token is valid.
    pub expires_in: i64,
    /// The scopes granted to this token, space-separated.
    pub scope: String,
}

/// An error response (RFC 6749 §5.2).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type` or `invalid_scope`.
    pub error: String,
    /// What was wrong and what to do.
    pub error_description: String,
    #[serde(skip)]
    status: u16,
    #[serde(skip)]
    retry_after: Option<u64>,
}

impl OAuthError {
    fn new(status: StatusCode, error: &str, description: impl Into<String>) -> Self {
        Self {
            error: error.to_owned(),
            error_description: description.into(),
            status: status.as_u16(),
            retry_after: None,
        }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn invalid_client() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong client secret; an admin creates clients with \
             `ims-control client add` and new secrets with `ims-control client secret`",
        )
    }
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let retry_after = self.retry_after;
        let mut response = (status, Json(self)).into_response();
        let headers = response.headers_mut();
        no_store(headers);
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ims-control\""),
            );
        }
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The request's fields, each at most once (RFC 6749 §3.2).
#[derive(Debug, Default)]
struct Form {
    grant_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<Form, OAuthError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(format!(
            "the body must be application/x-www-form-urlencoded (got `{}`), e.g. \
             grant_type=client_credentials&scope=o2ims:read",
            content_type.chars().take(100).collect::<String>()
        )));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| OAuthError::invalid_request(format!("malformed form body: {e}")))?;
    let mut form = Form::default();
    for (key, value) in pairs {
        let slot = match key.as_str() {
            "grant_type" => &mut form.grant_type,
            "scope" => &mut form.scope,
            "client_id" => &mut form.client_id,
            "client_secret" => &mut form.client_secret,
            // RFC 6749 §3.2: unrecognised parameters are ignored.
            _ => continue,
        };
        if slot.is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter `{key}` is given more than once; send it once"
            )));
        }
        *slot = Some(value);
    }
    Ok(form)
}

/// `Authorization: Basic base64(urlencode(id):urlencode(secret))`, if present.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| OAuthError::invalid_client())?;
    let Some((scheme, encoded)) = text.split_once(' ') else {
        return Err(OAuthError::invalid_client());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_request(format!(
            "client authentication with `{}` is not supported; use HTTP Basic or the \
             client_id/client_secret form fields",
            scheme.chars().take(20).collect::<String>()
        )));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(OAuthError::invalid_client)?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(OAuthError::invalid_client)?;
    Ok(Some((form_decode(id)?, form_decode(secret)?)))
}

/// Undoes `application/x-www-form-urlencoded` encoding of one value (RFC 6749 §2.3.1).
fn form_decode(s: &str) -> Result<String, OAuthError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(&format!("v={}", s.replace('&', "%26")))
            .map_err(|_| OAuthError::invalid_client())?;
    Ok(pairs.into_iter().next().map(|(_, v)| v).unwrap_or_default())
}

/// Get an O2ims access token (OAuth2 client credentials).
///
/// Authenticate with HTTP Basic or the `client_id`/`client_secret` fields (not both). Errors
/// are RFC 6749 §5.2 objects. After 5 failures for one client, or 20 from one address, within
/// 5 minutes, answers 429 with `Retry-After`.
#[utoipa::path(post, path = "/oauth/token", tag = "auth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A token for the O2ims API", body = TokenResponse),
        (status = 400, description = "invalid_request, unsupported_grant_type or invalid_scope", body = OAuthError),
        (status = 401, description = "invalid_client (unknown client or wrong secret)", body = OAuthError),
        (status = 429, description = "Too many failed attempts; see Retry-After", body = OAuthError),
    ))]
async fn issue_token(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let form = parse_form(&headers, &body)?;
    let basic = basic_credentials(&headers)?;
    let (client_id, secret) = match (basic, form.client_id, form.client_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "the client authenticated with HTTP Basic and with form fields; use one",
            ));
        }
        (Some(pair), None, None) => pair,
        (None, Some(id), Some(secret)) => (id, secret),
        (None, _, _) => {
            return Err(OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "no client authentication: send HTTP Basic client_id:client_secret, or the \
                 client_id and client_secret form fields",
            ));
        }
    };
    match form.grant_type.as_deref() {
        Some("client_credentials") => {}
        Some(other) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!(
                    "grant_type `{}` is not supported; use client_credentials",
                    other.chars().take(40).collect::<String>()
                ),
            ));
        }
        None => {
            return Err(OAuthError::invalid_request(
                "grant_type is missing; send grant_type=client_credentials",
            ));
        }
    }
    let throttle_key = format!("client:{}", client_id.to_ascii_lowercase());
    if let Err(wait) = state.login.check(&throttle_key, addr) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut e = OAuthError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_client",
            format!("too many failed attempts; try again in {secs} s"),
        );
        e.retry_after = Some(secs);
        return Err(e);
    }
    let found = clients::with_secret_hash(&state.db, &client_id)
        .await
        .map_err(|e| {
            tracing::error!("oauth client lookup failed: {e}");
            OAuthError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the store failed; try again",
            )
        })?;
    let (client, hash) = match found {
        Some((client, hash)) => (Some(client), hash),
        None => (None, dummy_hash().await),
    };
    let matches = password::verify_password_async(secret, hash).await;
    let client = match client {
        Some(client) if matches => client,
        _ => {
            state.login.record_failure(&throttle_key, addr);
            tracing::warn!(client_id = %client_id.chars().take(64).collect::<String>(),
                client = ?addr, "failed OAuth2 client authentication");
            return Err(OAuthError::invalid_client());
        }
    };
    state.login.record_success(&throttle_key);
    let scopes = match form.scope.as_deref().map(str::trim) {
        None | Some("") => client.scopes.clone(),
        Some(text) => {
            let asked = parse_scopes(text).map_err(|e| {
                OAuthError::new(StatusCode::BAD_REQUEST, "invalid_scope", e.to_string())
            })?;
            if let Some(missing) = asked.iter().find(|s| !client.scopes.contains(s)) {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    format!(
                        "client `{}` is not granted `{missing}`; its scopes are `{}`",
                        client.client_id,
                        scopes_text(&client.scopes)
                    ),
                ));
            }
            asked
        }
    };
    if scopes.is_empty() {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            format!("client `{}` has no scopes granted", client.client_id),
        ));
    }
    let scope = scopes_text(&scopes);
    let ttl = i64::try_from(state.auth.settings.access_ttl.as_secs()).unwrap_or(900);
    let claims = Claims::client(&client.client_id, &scope, now_ms(), ttl);
    tracing::info!(client_id = %client.client_id, scope = %scope, client = ?addr,
        "OAuth2 client token issued");
    let mut response = Json(TokenResponse {
        access_token: state.auth.keys.issue(&claims),
        token_type: "Bearer".to_owned(),
        expires_in: ttl,
        scope,
    })
    .into_response();
    no_store(response.headers_mut());
    Ok(response)
}

/// A hash to verify against when the client does not exist, so that both failures cost the
/// same.
async fn dummy_hash() -> String {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DUMMY
        .get_or_init(|| async {
            password::hash_password_async("no such client, no token".to_owned())
                .await
                .unwrap_or_default()
        })
        .await
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut h = HeaderMap::new();
        let enc = base64::engine::general_purpose::STANDARD.encode("my%20client:s%2Bcret+x");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {enc}")).unwrap(),
        );
        assert_eq!(
            basic_credentials(&h).unwrap(),
            Some(("my client".to_owned(), "s+cret x".to_owned()))
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!"));
        assert_eq!(basic_credentials(&h).unwrap_err().error, "invalid_client");
    }
}
