//! `GET /api/workers/stream`, the workers dashboard's server-sent events: it needs a token,
//! answers one JSON snapshot unless `text/event-stream` is accepted, then streams: the worker
//! list at once, stays quiet while only heartbeat
//! ages grow, and sends the list again within the poll interval when a worker changes or a new
//! one registers. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use ims_control::api;
use serde_json::{Value, json};
use support::{TestApp, assert_problem};
use tokio::time::{Instant, timeout_at};
use tower::ServiceExt;

/// The events of one open stream.
struct Events {
    body: Body,
    buf: String,
}

impl Events {
    /// The next event with data (`event` name and JSON data) within `limit`, or `None`.
    async fn next(&mut self, limit: Duration) -> Option<(String, Value)> {
        let deadline = Instant::now() + limit;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = "message".to_owned();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !data.is_empty() {
                    let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
                    return Some((name, value));
                }
            }
            let frame = timeout_at(deadline, self.body.frame()).await.ok()??;
            if let Ok(bytes) = frame.expect("stream frame").into_data() {
                self.buf
                    .push_str(std::str::from_utf8(&bytes).expect("utf-8"));
            }
        }
    }
}

async fn open(app: &TestApp, token: &str) -> Events {
    let request = Request::get("/api/workers/stream")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::ACCEPT, "text/event-stream")
        .body(Body::empty())
        .unwrap();
    let response = api::app(app.state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let kind = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    Events {
        body: response.into_body(),
        buf: String::new(),
    }
}

async fn ok(app: &TestApp, uri: &str, body: Value) {
    let r = app.post(uri, body).await;
    assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
}

async fn stream_sends_changes_only(app: &TestApp) {
    let r = app
        .anonymous(Method::GET, "/api/workers/stream", None)
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED);

    ok(
        app,
        "/api/ims-worker/register",
        json!({"worker_id": "edge-s1", "ip_address": "10.0.0.2"}),
    )
    .await;
    // Without `Accept: text/event-stream`: one snapshot, and the response ends.
    let once = app.get("/api/workers/stream").await;
    assert_eq!(once.status, StatusCode::OK, "{}", once.body);
    assert_eq!(once.content_type(), "application/json");
    assert_eq!(once.body["count"], 1);
    assert_eq!(once.body["workers"][0]["worker_id"], "edge-s1");

    // A viewer may watch.
    let mut events = open(app, &app.viewer_token).await;
    let (name, first) = events
        .next(Duration::from_secs(5))
        .await
        .expect("the list at once");
    assert_eq!(name, "workers");
    assert_eq!(first["count"], 1, "{first}");
    assert_eq!(first["workers"][0]["worker_id"], "edge-s1");
    assert_eq!(first["workers"][0]["status"], "active");
    assert!(first["server_time"].as_str().unwrap().ends_with('Z'));

    // Only the heartbeat age grows: nothing is sent.
    assert_eq!(events.next(Duration::from_millis(2500)).await, None);

    ok(
        app,
        "/api/ims-worker/heartbeat",
        json!({"worker_id": "edge-s1",
               "services": {"tftp": {"status": "failed", "last_error": "bind: address in use"}},
               "metrics": {"active_leases": 2, "active_transfers": 1}}),
    )
    .await;
    let (_, changed) = events
        .next(Duration::from_secs(3))
        .await
        .expect("the change within the poll interval");
    let w = &changed["workers"][0];
    assert_eq!(w["status"], "error", "{changed}");
    assert_eq!(w["services"]["tftp"]["status"], "failed");
    assert_eq!(w["metrics"]["active_transfers"], 1);

    ok(
        app,
        "/api/ims-worker/register",
        json!({"worker_id": "edge-s2", "ip_address": "10.0.0.3"}),
    )
    .await;
    let (_, more) = events
        .next(Duration::from_secs(3))
        .await
        .expect("the new worker");
    assert_eq!(more["count"], 2, "{more}");
    assert_eq!(more["workers"][1]["worker_id"], "edge-s2");
}

dual_test!(stream_sends_changes_only);
