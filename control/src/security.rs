//! HTTP hardening of every response the control plane sends (API and web UI alike):
//!
//! - **Request body limit**: [`DEFAULT_BODY_LIMIT`] (1 MiB) for every route, through axum's
//!   [`DefaultBodyLimit`]; a route that needs more (a bulk import) sets its own with
//!   `.layer(DefaultBodyLimit::max(LARGE_BODY_LIMIT))` on that route. A body over the limit is
//!   answered `413 Payload Too Large` as `application/problem+json` naming the limit, whether
//!   the extractor saw it ([`crate::error::ApiJson`]) or not.
//! - **Security headers** ([`security_headers`]): `Content-Security-Policy`
//!   ([`CONTENT_SECURITY_POLICY`]), `X-Content-Type-Options: nosniff`,
//!   `X-Frame-Options: DENY` and `Referrer-Policy: no-referrer` on every response; a handler
//!   that sets one of them itself keeps its own value.
//! - **HSTS** ([`ResponseHeaders::hsts`]): `Strict-Transport-Security`
//!   ([`STRICT_TRANSPORT_SECURITY`]), added only by the HTTPS server (a plain-HTTP listener
//!   must not send it).
//!
//! [`harden`] applies the first two to a router; [`crate::api::router`] calls it, so the
//! service the server runs and the one the tests drive are the same. [`crate::server::serve`]
//! also wraps the whole service in [`ResponseHeaders::security`], so anything mounted next to
//! the API (the web UI) gets the headers too.

use std::task::{Context, Poll};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::error::ApiError;

/// Largest request body accepted by default (1 MiB).
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;
/// Largest request body a bulk route may opt into (16 MiB).
pub const LARGE_BODY_LIMIT: usize = 16 << 20;

/// The `Content-Security-Policy` of every response: only this origin's own scripts, styles and
/// images; never framed; no `<base>`; forms post only here.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
/// The `Strict-Transport-Security` of HTTPS responses (one year).
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// The headers [`security_headers`] sets, with their values.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
];

/// `router` with the default body limit, the 413 problem document and the security headers.
pub fn harden<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(DefaultBodyLimit::max(DEFAULT_BODY_LIMIT))
        .layer(middleware::map_response(security_headers))
}

/// Adds the security headers (keeping any a handler set) and turns a bare 413 into a problem
/// document.
pub async fn security_headers(response: Response) -> Response {
    let mut response = if response.status() == StatusCode::PAYLOAD_TOO_LARGE
        && response.headers().get(header::CONTENT_TYPE)
            != Some(&HeaderValue::from_static("application/problem+json"))
    {
        too_large().into_response()
    } else {
        response
    };
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers
            .entry(HeaderName::from_static(name))
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// The 413 problem: what the limit is and what to do.
#[must_use]
pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is larger than this route accepts ({} KiB); send less data per \
             request, for example fewer rows per import call",
            DEFAULT_BODY_LIMIT / 1024
        ),
    )
}

/// A tower layer setting fixed response headers on every response of any service (a value
/// the service set itself is kept). [`ResponseHeaders::security`] is [`SECURITY_HEADERS`], for
/// services mounted outside [`harden`]ed routers; [`ResponseHeaders::hsts`] is
/// `Strict-Transport-Security`, for HTTPS servers only.
#[derive(Debug, Clone, Copy)]
pub struct ResponseHeaders(&'static [(&'static str, &'static str)]);

impl ResponseHeaders {
    /// [`SECURITY_HEADERS`].
    #[must_use]
    pub const fn security() -> Self {
        Self(&SECURITY_HEADERS)
    }

    /// `Strict-Transport-Security: `[`STRICT_TRANSPORT_SECURITY`].
    #[must_use]
    pub const fn hsts() -> Self {
        Self(&[("strict-transport-security", STRICT_TRANSPORT_SECURITY)])
    }
}

impl<S> Layer<S> for ResponseHeaders {
    type Service = ResponseHeadersService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseHeadersService {
            inner,
            headers: self.0,
        }
    }
}

/// The service of [`ResponseHeaders`].
#[derive(Debug, Clone)]
pub struct ResponseHeadersService<S> {
    inner: S,
    headers: &'static [(&'static str, &'static str)],
}

impl<S, B, ResBody> Service<Request<B>> for ResponseHeadersService<S>
where
    S: Service<Request<B>, Response = axum::http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        let headers = self.headers;
        Box::pin(async move {
            let mut response = future.await?;
            let map = response.headers_mut();
            for (name, value) in headers {
                map.entry(HeaderName::from_static(name))
                    .or_insert(HeaderValue::from_static(value));
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        harden(
            Router::new()
                .route("/", get(|| async { "hello" }))
                .route(
                    "/framed",
                    get(|| async { ([(header::X_FRAME_OPTIONS, "SAMEORIGIN")], "x") }),
                )
                .route(
                    "/raw",
                    post(|body: axum::body::Bytes| async move { body.len().to_string() }),
                ),
        )
    }

    #[tokio::test]
    async fn headers_on_every_response_and_handler_values_kept() {
        let r = app()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(r.headers()[name], value, "{name}");
        }
        assert!(r.headers().get(header::STRICT_TRANSPORT_SECURITY).is_none());
        let r = app()
            .oneshot(Request::get("/framed").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "SAMEORIGIN");
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }

    #[tokio::test]
    async fn an_over_large_raw_body_is_a_413_problem() {
        let ok = app()
            .oneshot(
                Request::post("/raw")
                    .body(Body::from(vec![b'x'; DEFAULT_BODY_LIMIT]))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        let r = app()
            .oneshot(
                Request::post("/raw")
                    .body(Body::from(vec![b'x'; DEFAULT_BODY_LIMIT + 1]))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(
            r.headers()["content-security-policy"],
            CONTENT_SECURITY_POLICY
        );
    }

    #[tokio::test]
    async fn hsts_only_through_its_layer() {
        let bare = Router::new().route("/", get(|| async { "x" }));
        let r = ResponseHeaders::security()
            .layer(bare)
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
        let r = ResponseHeaders::hsts()
            .layer(app())
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            r.headers()[header::STRICT_TRANSPORT_SECURITY],
            STRICT_TRANSPORT_SECURITY
        );
        assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
    }
}
