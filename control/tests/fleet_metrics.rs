//! `/metrics` shows the fleet as the store knows it, on SQLite and PostgreSQL: workers by status
//! (revoked ones apart), each unrevoked worker's last heartbeat, outbox depth and newest
//! unrevoked certificate's expiry; a deleted worker's series go away.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use support::TestApp;

async fn post_ok(app: &TestApp, uri: &str, body: Value) {
    let r = app.post(uri, body).await;
    assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
}

async fn exec(app: &TestApp, statement: &str) {
    sqlx::query(statement)
        .execute(app.state.db.pool())
        .await
        .expect("sql");
}

async fn scrape(app: &TestApp) -> String {
    let r = app.anonymous(Method::GET, "/metrics", None).await;
    assert_eq!(r.status, StatusCode::OK);
    r.body.as_str().unwrap().to_owned()
}

fn has(page: &str, line: &str) -> bool {
    page.lines().any(|l| l == line)
}

async fn fleet_gauges(app: &TestApp) {
    for (id, ip) in [
        ("edge-a", "10.77.0.2"),
        ("edge-b", "10.77.0.3"),
        ("edge-c", "10.77.0.4"),
    ] {
        post_ok(
            app,
            "/api/ims-worker/register/",
            json!({"worker_id": id, "ip_address": ip}),
        )
        .await;
    }
    post_ok(
        app,
        "/api/ims-worker/heartbeat/",
        json!({"worker_id": "edge-a", "services": {}, "metrics": {"outbox_depth": 42}}),
    )
    .await;
    // edge-b: silent for an hour (inactive); edge-c: revoked.
    exec(
        app,
        "UPDATE workers SET last_heartbeat = last_heartbeat - 3600000 WHERE worker_id = 'edge-b'",
    )
    .await;
    exec(
        app,
        "UPDATE workers SET revoked = 1 WHERE worker_id = 'edge-c'",
    )
    .await;
    // Certificates of edge-a: an old one, the newest, and a newer revoked one.
    exec(
        app,
        "INSERT INTO worker_certs (worker_id, serial, not_before, not_after, issued_at, revoked) VALUES \
         ('edge-a', '01', 0, 1700000000000, 0, 0), \
         ('edge-a', '02', 0, 1800000000000, 0, 0), \
         ('edge-a', '03', 0, 1900000000000, 0, 1)",
    )
    .await;

    let page = scrape(app).await;
    for line in [
        "ims_control_workers{status=\"active\"} 1",
        "ims_control_workers{status=\"inactive\"} 1",
        "ims_control_workers{status=\"error\"} 0",
        "ims_control_workers{status=\"revoked\"} 1",
        "ims_control_worker_outbox_depth{worker_id=\"edge-a\",site=\"\"} 42",
        "ims_control_worker_cert_expiry_timestamp_seconds{worker_id=\"edge-a\",site=\"\"} 1800000000",
        "ims_control_metrics_store_errors_total 0",
    ] {
        assert!(has(&page, line), "missing {line} in\n{page}");
    }
    assert!(
        page.contains("ims_control_worker_last_heartbeat_timestamp_seconds{worker_id=\"edge-b\""),
        "{page}"
    );
    assert!(!page.contains("worker_id=\"edge-c\""), "revoked: {page}");

    exec(app, "DELETE FROM workers WHERE worker_id = 'edge-a'").await;
    let page = scrape(app).await;
    assert!(!page.contains("worker_id=\"edge-a\""), "deleted: {page}");
    assert!(
        has(&page, "ims_control_workers{status=\"active\"} 0"),
        "{page}"
    );
}
dual_test!(fleet_gauges);
