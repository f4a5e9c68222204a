//! `GET /api/workers/stream`: the workers dashboard's live feed, as server-sent events.
//!
//! One stream serves the whole page. The server reads the worker list every [`POLL`] and sends
//! an event `workers` whenever anything but the heartbeat ages changed (and once at the start);
//! the page computes ages itself from `last_heartbeat` and `server_time`. A comment line every
//! 15 s keeps proxies from closing an idle stream.
//!
//! Content negotiation: only a request that accepts `text/event-stream` gets the stream; any
//! other (`Accept: application/json`, or none) gets one snapshot as JSON and the response ends.
//!
//! The stream needs a bearer token like every API route (browsers read it with `fetch()`,
//! which can send the `Authorization` header, unlike `EventSource`). It ends when the token
//! would have expired (after the access-token lifetime), so a revoked session does not keep
//! watching; the page then reconnects with a fresh token.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::mpsc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::page::PageRequest;
use crate::auth::AuthUser;
use crate::db::{StoreError, format_ts, now_ms};
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use crate::store::workers::{self, Worker, WorkerFilter};

/// How often the stream re-reads the workers.
pub const POLL: Duration = Duration::from_secs(1);
/// Most workers one event carries.
pub const MAX_WORKERS: u32 = 10_000;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(worker_stream))
}

/// The data of one `workers` event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkersSnapshot {
    /// The server's clock when the list was read (RFC 3339), to compute heartbeat ages.
    pub server_time: String,
    /// How many workers exist (the list holds at most 10000).
    pub count: i64,
    /// Every worker, ordered by id, as `GET /api/workers` shows them.
    pub workers: Vec<Worker>,
}

/// Live worker list (server-sent events).
///
/// With `Accept: text/event-stream`: events named `workers` whose data is a [`WorkersSnapshot`],
/// sent at the start and whenever a worker's status, heartbeat, services or metrics change
/// (checked every second); an event `error` carries a message when the store fails. The stream
/// ends after the access-token lifetime: reconnect with a fresh token. Without it: one
/// snapshot as JSON.
#[utoipa::path(get, path = "/api/workers/stream", tag = "workers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Server-sent events `workers`, each with a WorkersSnapshot \
            as data (Accept: text/event-stream); otherwise one WorkersSnapshot",
            content(
                (WorkersSnapshot = "text/event-stream"),
                (WorkersSnapshot = "application/json"),
            )),
        (status = 401, description = "Not logged in", body = Problem),
    ))]
async fn worker_stream(
    _: AuthUser,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let wants_stream = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"));
    if !wants_stream {
        return Ok(Json(snapshot(&state).await?).into_response());
    }
    let (tx, rx) = mpsc::channel(4);
    let ticks = state.auth.settings.access_ttl.as_millis() / POLL.as_millis();
    let ticks = u64::try_from(ticks).unwrap_or(u64::MAX).max(1);
    tokio::spawn(feed(state, tx, ticks));
    Ok(Sse::new(Events(rx))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Sends snapshots on `tx` for `ticks` polls, or until the client goes away.
async fn feed(state: AppState, tx: mpsc::Sender<Event>, ticks: u64) {
    let mut ticker = tokio::time::interval(POLL);
    let mut last_key = String::new();
    for _ in 0..ticks {
        tokio::select! {
            () = tx.closed() => return,
            _ = ticker.tick() => {}
        }
        let event = match snapshot(&state).await {
            Ok(snap) => {
                let key = change_key(&snap.workers);
                if key == last_key {
                    continue;
                }
                last_key = key;
                Event::default().event("workers").json_data(&snap)
            }
            Err(e) => {
                tracing::warn!(error = %e, "worker stream: reading the workers failed");
                Ok(Event::default()
                    .event("error")
                    .data("reading the workers failed; retrying"))
            }
        };
        let Ok(event) = event else { continue };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

/// Every worker as the API shows it, now.
async fn snapshot(state: &AppState) -> Result<WorkersSnapshot, StoreError> {
    let mut conn = state.db.pool().acquire().await?;
    let now = now_ms();
    let page = PageRequest {
        page: 1,
        page_size: MAX_WORKERS,
    };
    let (count, list) = workers::list(&mut conn, WorkerFilter::default(), now, page).await?;
    Ok(WorkersSnapshot {
        server_time: format_ts(now),
        count,
        workers: list,
    })
}

/// What must differ for a new event: the list without the ever-growing heartbeat ages.
fn change_key(list: &[Worker]) -> String {
    let aged: Vec<Worker> = list
        .iter()
        .cloned()
        .map(|mut w| {
            w.last_heartbeat_age_seconds = None;
            w
        })
        .collect();
    serde_json::to_string(&aged).unwrap_or_default()
}

/// The receiving end of the feed as a stream of events.
struct Events(mpsc::Receiver<Event>);

impl futures_core::Stream for Events {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|e| e.map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WorkerStatus;

    fn worker(status: WorkerStatus, age: Option<i64>) -> Worker {
        Worker {
            id: 1,
            worker_id: "edge-1".into(),
            ip_address: None,
            status,
            last_heartbeat: Some(1_000),
            last_heartbeat_age_seconds: age,
            services: serde_json::json!({}),
            metrics: serde_json::json!({}),
            last_error: None,
            registered_at: 0,
            site: None,
            site_name: None,
            cluster: None,
            cluster_name: None,
            version: String::new(),
            revoked: false,
        }
    }

    #[test]
    fn ages_alone_send_no_event_but_a_status_change_does() {
        let a = change_key(&[worker(WorkerStatus::Active, Some(1))]);
        let b = change_key(&[worker(WorkerStatus::Active, Some(9))]);
        let c = change_key(&[worker(WorkerStatus::Error, Some(9))]);
        assert_eq!(a, b);
        assert_ne!(b, c);
        assert_ne!(change_key(&[]), a);
    }
}
