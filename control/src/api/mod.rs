//! The REST API: every route, its OpenAPI description, and the service the server runs.
//!
//! Each resource module exposes `routes() -> OpenApiRouter<AppState>` built only with
//! `utoipa_axum::routes!` over handlers annotated with `#[utoipa::path]`, so the OpenAPI
//! document at `/api/openapi.json` is generated from the same code that routes (a test checks
//! that every documented operation is served and every other method on its path gets 405).
//!
//! Conventions every module follows:
//! - Paths are written without a trailing slash; [`app`] trims one from requests, so
//!   `/api/cluster/` and `/api/cluster` are the same route.
//! - Reads take [`crate::auth::AuthUser`], writes [`crate::auth::AdminUser`].
//! - Bodies come through [`crate::error::ApiJson`], paths through [`crate::error::ApiPath`],
//!   queries through [`crate::error::ApiQuery`]; errors are [`crate::error::ApiError`]
//!   (`application/problem+json`).
//! - Lists take [`page::PageParams`] and answer [`page::Page`].
//! - Each write is one transaction ([`crate::db::Db::begin_write`]).

pub mod boot_profiles;
pub mod clusters;
pub mod ippools;
pub mod machines;
pub mod oauth;
pub mod ops;
pub mod page;
pub mod site_config;
pub mod sites;
pub mod token;
pub mod users;
pub mod workers;

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router, middleware};
use tower::Layer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

/// The root of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ims-control",
        description = "Control plane of the O-Cloud edge provisioning system: clusters, machines, \
                       sites, boot profiles, IP pools, DHCP/TFTP configuration, edge workers and \
                       leases. Authenticate with POST /api/token/ and send \
                       `Authorization: Bearer <access>`. Trailing slashes are optional."
    ),
    modifiers(&BearerAuth),
    components(schemas(crate::error::Problem, crate::error::FieldError))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document as served.
#[derive(Debug, Clone)]
struct OpenApiJson(Arc<String>);

/// The OpenAPI 3 document of this API (like every route but the probes, it needs a token).
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", security(("bearer" = [])),
    responses(
        (status = 200, description = "OpenAPI 3 document", content_type = "application/json"),
        (status = 401, description = "No or invalid token", body = crate::error::Problem)))]
async fn openapi_json(_user: AuthUser, Extension(doc): Extension<OpenApiJson>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        doc.0.as_str().to_owned(),
    )
        .into_response()
}

/// Every route with its documentation, before state is attached.
#[must_use]
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(openapi_json))
        .merge(ops::routes())
        .merge(token::routes())
        .merge(oauth::routes())
        .merge(users::routes())
        .merge(clusters::routes())
        .merge(machines::routes())
        .merge(sites::routes())
        .merge(boot_profiles::routes())
        .merge(ippools::routes())
        .merge(site_config::routes())
        .merge(workers::routes())
        .merge(crate::ui::stream::routes())
        .merge(crate::o2ims::routes())
}

/// The generated OpenAPI document.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}

/// The router with state, problem documents for unknown routes (404) and methods (405), the
/// OpenAPI document served, and the body limit and security headers of [`crate::security`].
pub fn router(state: AppState) -> Router {
    let (router, doc) = routes().split_for_parts();
    let json = doc.to_pretty_json().unwrap_or_default();
    let router = router
        .fallback(|| async { ApiError::not_found("route") })
        .layer(middleware::map_response(problem_for_bare_errors))
        .layer(Extension(OpenApiJson(Arc::new(json))))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ));
    // Body limit, 413 problem and security headers on every response (crate::security).
    crate::security::harden(router).with_state(state)
}

/// What the server runs: [`router`] and the web UI ([`crate::ui::router`]), both with the
/// body limit and security headers of [`crate::security`], behind trailing-slash normalisation.
#[must_use]
pub fn app(state: AppState) -> NormalizePath<Router> {
    let ui = crate::security::harden(crate::ui::router());
    NormalizePathLayer::trim_trailing_slash().layer(ui.merge(router(state)))
}

/// axum answers an unsupported method with a bare 405; give it a problem body (keeping `Allow`).
async fn problem_for_bare_errors(response: Response) -> Response {
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        let allow = response.headers().get(header::ALLOW).cloned();
        let detail = match allow.as_ref().and_then(|v| v.to_str().ok()) {
            Some(methods) => format!("method not allowed here; this route accepts {methods}"),
            None => "method not allowed here".to_owned(),
        };
        let mut r = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, detail).into_response();
        if let Some(allow) = allow {
            r.headers_mut().insert(header::ALLOW, allow);
        }
        return r;
    }
    response
}

/// Placeholder body for a resource module whose routes are not written yet.
#[allow(dead_code)]
#[doc(hidden)]
pub(crate) fn empty() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
