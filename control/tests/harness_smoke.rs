//! The harness itself: both backends migrate, tokens authenticate, unknown routes and methods
//! are problem documents, and the OpenAPI document is served.

mod support;

use axum::http::{Method, StatusCode};
use support::{TestApp, assert_problem};

async fn harness_works(app: &TestApp) {
    let r = app.get("/api/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["openapi"].as_str().map(|s| &s[..2]), Some("3."));
    let r = app.get("/api/no-such-thing/").await;
    assert_problem(&r, StatusCode::NOT_FOUND);
    let r = app
        .call(
            Method::DELETE,
            "/api/openapi.json",
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_problem(&r, StatusCode::METHOD_NOT_ALLOWED);
}

dual_test!(harness_works);
