//! A burst of concurrent writes with reads in between, on SQLite and PostgreSQL: every write
//! succeeds (no "database is locked", no pool time-out) and reads are not starved by writers
//! waiting for the write lock.
// Helpers called by the dual-backend tests unwrap like tests do.
#![allow(clippy::unwrap_used)]
// The test measures how long requests wait.
#![allow(clippy::disallowed_methods)]

mod support;

use std::future::Future;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use support::TestApp;

/// Concurrent machine creates (more than the pool has connections).
const WRITERS: usize = 64;
/// Concurrent reads issued while the writers run.
const READERS: usize = 32;

async fn write_burst(app: &TestApp) {
    let r = app.post("/api/cluster", json!({"name": "burst"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "body: {}", r.body);
    // The O2ims change detector and the alarm evaluator write every second meanwhile.
    let inventory = ims_control::o2ims::delivery::spawn(&app.state.db);
    let alarms = ims_control::o2ims::monitoring::spawn(&app.state.db);
    let started = Instant::now();
    let writes = (0..WRITERS).map(|i| async move {
        let body = json!({
            "cluster": "burst",
            "hostname": format!("node-{i}"),
            "mac": format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256),
        });
        let r = app.post("/api/machines", body).await;
        (r.status, r.body.to_string())
    });
    let reads = (0..READERS).map(|_| async {
        let t = Instant::now();
        let r = app.get("/api/machines?page_size=100").await;
        (r.status, t.elapsed())
    });
    let (writes, reads) = tokio::join!(join_all(writes.collect()), join_all(reads.collect()));
    for (status, body) in &writes {
        assert_eq!(*status, StatusCode::CREATED, "body: {body}");
    }
    for (status, took) in &reads {
        assert_eq!(*status, StatusCode::OK);
        assert!(
            *took < Duration::from_secs(5),
            "a read waited {took:?} behind writers"
        );
    }
    let r = app.get("/api/machines?page_size=1").await;
    assert_eq!(r.body["count"], WRITERS);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "burst took {:?}",
        started.elapsed()
    );
    drop(inventory);
    drop(alarms);
}

/// Runs the futures concurrently on this task (they borrow the app, so they cannot be
/// spawned) and collects their outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(Box::pin).map(Some).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(f) = slot {
                if let Poll::Ready(out) = f.as_mut().poll(cx) {
                    *output = Some(out);
                    *slot = None;
                }
            }
        }
        if pending.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

dual_test!(write_burst);
