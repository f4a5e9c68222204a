//! `/metrics` shows the fleet as the store knows it, on SQLite and PostgreSQL: workers by status
//! (revoked ones apart), each unrevoked worker's last heartbeat, outbox depth and newest
//! unrevoked certificate's expiry; a deleted worker's series go away. The O2ims alarm gauges
//! follow the alarms in the store: raised by the evaluator on a real condition (an edge's
//! missed heartbeats), acknowledged and cleared through the monitoring API, and another
//! replica's registry on the same database reports the same counts.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

// o2ims_alarms.rs's helpers; this file uses a few of their re-exports.
#[allow(unused_imports)]
mod alarms_support;
mod support;

use std::sync::Arc;

use alarms_support::{MON, age_heartbeat, evaluate, named, register_worker};
use axum::http::{Method, StatusCode};
use ims_control::metrics::Metrics;
use ims_control::ratelimit::SystemClock;
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

/// Asserts each `(series, value)` is a line of `page`.
fn assert_values(page: &str, expected: &[(&str, i64)]) {
    for (series, value) in expected {
        let line = format!("{series} {value}");
        assert!(has(page, &line), "missing {line} in\n{page}");
    }
}

async fn alarm_gauges(app: &TestApp) {
    const OPEN: &str = "ims_alarms_open{severity=\"MAJOR\",alarm=\"edge-down\"}";
    const UNACKED: &str = "ims_alarms_unacknowledged{severity=\"MAJOR\"}";
    const OTHER_OPEN: &str = "ims_alarms_open{severity=\"MINOR\",alarm=\"edge-service-error\"}";
    // Every definition and severity exists before the first alarm.
    let page = scrape(app).await;
    assert_values(
        &page,
        &[
            (OPEN, 0),
            (UNACKED, 0),
            (OTHER_OPEN, 0),
            (
                "ims_alarms_open{severity=\"MAJOR\",alarm=\"machine-provisioning-failed\"}",
                0,
            ),
            (
                "ims_alarms_open{severity=\"WARNING\",alarm=\"ip-pool-usage-high\"}",
                0,
            ),
            ("ims_alarms_unacknowledged{severity=\"CRITICAL\"}", 0),
        ],
    );

    // An edge misses three heartbeats: the evaluator raises edge-down.
    register_worker(app, "edge-1").await;
    age_heartbeat(&app.state.db, "edge-1", 60_000).await;
    assert_eq!(evaluate(app).await.raised, 1);
    let page = scrape(app).await;
    assert_values(&page, &[(OPEN, 1), (UNACKED, 1), (OTHER_OPEN, 0)]);
    // Another replica (its own registry, same database) counts the alarm it did not raise.
    let replica = Metrics::new(Arc::new(SystemClock));
    let other_page = replica.render(&app.state.db).await;
    assert_values(&other_page, &[(OPEN, 1), (UNACKED, 1)]);

    let down = named(app, "edge-down").await;
    let id = down[0]["alarmEventRecordId"].as_str().unwrap();
    let uri = format!("{MON}/alarms/{id}");
    let r = app.patch(&uri, json!({"alarmAcknowledged": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let page = scrape(app).await;
    assert_values(&page, &[(OPEN, 1), (UNACKED, 0)]);

    let r = app.patch(&uri, json!({"perceivedSeverity": 5})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let page = scrape(app).await;
    assert_values(
        &page,
        &[
            (OPEN, 0),
            (UNACKED, 0),
            ("ims_control_metrics_store_errors_total", 0),
        ],
    );
}
dual_test!(alarm_gauges);
