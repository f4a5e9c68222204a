//! Helpers of `o2ims_alarms.rs`: a local callback server, REST shortcuts that make alarm
//! conditions (machines, workers, leases), and assertions on alarm records.
#![allow(dead_code, unreachable_pub, missing_docs)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use ims_control::db::{Db, now_ms};
use ims_control::o2ims::monitoring::evaluator;
use serde_json::{Value, json};

use crate::support::{Resp, TestApp};

pub const MON: &str = "/o2ims-infrastructureMonitoring/v1";
pub const MON_PREFIXES: [&str; 2] = [
    "/o2ims-infrastructureMonitoring/v1",
    "/O2ims_infrastructureMonitoring/v1",
];
pub const INV_PREFIXES: [&str; 4] = [
    "/o2ims-infrastructureInventory/v1",
    "/o2ims-infrastructureInventory/v2",
    "/O2ims_infrastructureInventory/v1",
    "/O2ims_infrastructureInventory/v2",
];

pub use crate::support::callback::Callback;
pub use crate::support::inventory::{create_machine, seed};

pub async fn evaluate(app: &TestApp) -> evaluator::Pass {
    evaluator::evaluate(&app.state.db, now_ms())
        .await
        .expect("evaluate")
}

pub async fn alarms(app: &TestApp, query: &str) -> Vec<Value> {
    let r = app.get(&format!("{MON}/alarms{query}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body.as_array().cloned().expect("array")
}

/// The alarms named `name` (extensions/alarmName).
pub async fn named(app: &TestApp, name: &str) -> Vec<Value> {
    alarms(app, &format!("?filter=(eq,extensions/alarmName,{name})")).await
}

pub async fn set_machine_status(app: &TestApp, id: i64, status: &str) {
    let r = app
        .patch(&format!("/api/machines/{id}"), json!({"status": status}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

pub async fn ok(app: &TestApp, uri: &str, body: Value) -> Value {
    let r = app.post(uri, body).await;
    assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
    r.body
}

pub async fn register_worker(app: &TestApp, name: &str) {
    ok(
        app,
        "/api/ims-worker/register",
        json!({"worker_id": name, "ip_address": "10.77.0.2"}),
    )
    .await;
    heartbeat(app, name, "running").await;
}

pub async fn heartbeat(app: &TestApp, name: &str, dhcp: &str) {
    ok(
        app,
        "/api/ims-worker/heartbeat",
        json!({"worker_id": name, "services": {"dhcp": {"status": dhcp}}}),
    )
    .await;
}

pub async fn age_heartbeat(db: &Db, name: &str, age_ms: i64) {
    sqlx::query("UPDATE workers SET last_heartbeat = $1 WHERE worker_id = $2")
        .bind(now_ms() - age_ms)
        .bind(name)
        .execute(db.pool())
        .await
        .expect("age heartbeat");
}

pub async fn cloud(app: &TestApp) -> ims_control::o2ims::CloudSettings {
    ims_control::o2ims::cloud_settings(&app.state.db)
        .await
        .expect("cloud")
}

pub fn assert_open(a: &Value, severity: i64) {
    assert_eq!(a["perceivedSeverity"], severity, "{a}");
    assert_eq!(a["alarmClearedTime"], Value::Null, "{a}");
    assert!(a["alarmRaisedTime"].is_string(), "{a}");
}

pub fn assert_cleared(a: &Value) {
    assert_eq!(a["perceivedSeverity"], 5, "{a}");
    assert!(a["alarmClearedTime"].is_string(), "{a}");
}

/// Spec and alias names carry the same values.
pub fn assert_aliases(a: &Value) {
    for (spec, alias) in [
        ("objectTypeId", "resourceTypeID"),
        ("objectId", "resourceID"),
        ("alarmDefinitionId", "alarmDefinitionID"),
        ("probableCauseId", "probableCauseID"),
        ("alarmAcknowledgeTime", "alarmAcknowledgedTime"),
    ] {
        assert!(a.get(spec).is_some(), "{spec} missing: {a}");
        assert_eq!(a[spec], a[alias], "{spec} vs {alias}: {a}");
    }
}

pub fn lease(ip: &str, mac: &str, state: &str) -> Value {
    json!({
        "ip_address": ip, "mac_address": mac, "hostname": "n",
        "lease_start": "2026-01-01T00:00:00Z", "lease_end": "2099-01-01T00:00:00Z",
        "cidr": "10.9.0.0/29", "gateway": "10.9.0.1", "binding_state": state,
    })
}

pub async fn send_patch(app: &TestApp, uri: &str, body: &Value, token: &str) -> Resp {
    let request = Request::builder()
        .method(Method::PATCH)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/merge-patch+json")
        .body(Body::from(body.to_string()))
        .expect("request");
    app.send(request).await
}

pub async fn subscribe(app: &TestApp, body: Value) -> String {
    let r = app.post(&format!("{MON}/alarmSubscriptions"), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["alarmSubscriptionId"]
        .as_str()
        .expect("id")
        .to_owned()
}

pub async fn queued(db: &Db) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM o2ims_alarm_notifications")
        .fetch_one(db.pool())
        .await
        .expect("count");
    n
}
