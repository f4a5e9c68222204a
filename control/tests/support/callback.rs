//! A local HTTP callback server for notification tests: records the JSON bodies POSTed to
//! `/notify` on a loopback port, and answers 500 to the first `fail_first` requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

/// A local callback server: records the bodies it accepts; answers 500 to the first
/// `fail_first` requests.
#[derive(Clone, Default)]
pub struct Callback {
    received: Arc<Mutex<Vec<Value>>>,
    failures_left: Arc<AtomicUsize>,
    /// Every request received (failed ones included).
    pub requests: Arc<AtomicUsize>,
}

async fn accept(State(cb): State<Callback>, Json(body): Json<Value>) -> StatusCode {
    cb.requests.fetch_add(1, Ordering::SeqCst);
    let left = cb.failures_left.load(Ordering::SeqCst);
    if left > 0 {
        cb.failures_left.store(left - 1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    cb.received.lock().expect("lock").push(body);
    StatusCode::NO_CONTENT
}

impl Callback {
    /// Serves on `127.0.0.1:0`; returns the server, its `/notify` URL and its task.
    pub async fn start(fail_first: usize) -> (Self, String, tokio::task::JoinHandle<()>) {
        let cb = Self::default();
        cb.failures_left.store(fail_first, Ordering::SeqCst);
        let router = axum::Router::new()
            .route("/notify", axum::routing::post(accept))
            .with_state(cb.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/notify", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        (cb, url, task)
    }

    /// The bodies accepted so far.
    pub fn received(&self) -> Vec<Value> {
        self.received.lock().expect("lock").clone()
    }

    /// The bodies accepted so far, once there is one: polls every 100 ms for at most 10 s
    /// (empty when none came).
    pub async fn wait_received(&self) -> Vec<Value> {
        let mut got = Vec::new();
        for _ in 0..100 {
            got = self.received();
            if !got.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        got
    }

    /// The bodies accepted since the last `take`, removed.
    pub fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.received.lock().expect("lock"))
    }
}
