//! Inventory seed data shared by the O2ims tests: a site `edge-a` with a cluster `alpha`, and
//! worker machines in it, created through the REST API.

use axum::http::StatusCode;
use serde_json::json;

use super::TestApp;

/// Creates the site `edge-a` ("rack 4") and its cluster `alpha`.
pub async fn seed(app: &TestApp) {
    let r = app
        .post(
            "/api/sites",
            json!({"name": "edge-a", "description": "rack 4"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .post("/api/cluster", json!({"name": "alpha", "site": "edge-a"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

/// Creates a worker machine `host` with `mac` in cluster `alpha`; returns its id.
pub async fn create_machine(app: &TestApp, host: &str, mac: &str) -> i64 {
    let r = app
        .post(
            "/api/machines",
            json!({"cluster": "alpha", "hostname": host, "mac": mac, "cpu_cores": 8,
                   "role": "worker"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_i64().expect("id")
}
