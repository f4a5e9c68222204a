//! The event writer: one task that appends the HTTP server's events to the [`EventLog`] in
//! batches (one LMDB commit, one fsync, per burst), so hundreds of downloads finishing at once
//! cost a few commits rather than hundreds of blocking threads waiting for the write lock.

use std::time::Duration;

use metrics::counter;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::EVENTS_DROPPED;
use crate::dhcp::UnixTime;
use crate::store::events::{EventKind, EventLog};

/// Events waiting for the writer; past this, fire-and-forget events are dropped (counted).
const QUEUE: usize = 4096;
/// Most events in one commit.
const BATCH: usize = 512;
/// How long [`Writer::finish`] waits for queued events to be written at shutdown.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an event was not recorded.
#[derive(Debug, thiserror::Error)]
pub(super) enum RecordError {
    /// The writer task is gone (shutting down).
    #[error("the event writer has stopped")]
    Stopped,
    /// The append failed.
    #[error("{0}")]
    Store(String),
}

struct Pending {
    at: UnixTime,
    kind: EventKind,
    ack: Option<oneshot::Sender<Result<u64, String>>>,
}

/// Sends events to the writer task.
#[derive(Clone)]
pub(super) struct Recorder {
    tx: mpsc::Sender<Pending>,
}

/// The writer task.
pub(super) struct Writer {
    task: JoinHandle<()>,
}

/// Start the writer task for `log` (needs a tokio runtime).
pub(super) fn spawn(log: EventLog) -> (Recorder, Writer) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(run(log, rx));
    (Recorder { tx }, Writer { task })
}

impl Recorder {
    /// Queue `kind` without waiting; dropped (and counted in [`EVENTS_DROPPED`]) when the
    /// queue is full.
    pub(super) fn record(&self, at: UnixTime, kind: EventKind) {
        let pending = Pending {
            at,
            kind,
            ack: None,
        };
        if let Err(e) = self.tx.try_send(pending) {
            counter!(EVENTS_DROPPED).increment(1);
            let kind = match &e {
                mpsc::error::TrySendError::Full(p) | mpsc::error::TrySendError::Closed(p) => {
                    p.kind.name().to_owned()
                }
            };
            tracing::warn!(
                kind,
                "event writer overloaded or stopped: event not recorded"
            );
        }
    }

    /// Append `kind` and wait until it is durable; returns its sequence number.
    pub(super) async fn record_durably(
        &self,
        at: UnixTime,
        kind: EventKind,
    ) -> Result<u64, RecordError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Pending {
                at,
                kind,
                ack: Some(ack),
            })
            .await
            .map_err(|_| RecordError::Stopped)?;
        match done.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(RecordError::Store(e)),
            Err(_) => Err(RecordError::Stopped),
        }
    }
}

impl Writer {
    /// Wait (bounded) for the task to write what is queued; it ends once every [`Recorder`] is
    /// dropped.
    pub(super) async fn finish(self) {
        let mut task = self.task;
        if tokio::time::timeout(FLUSH_TIMEOUT, &mut task)
            .await
            .is_err()
        {
            tracing::warn!(
                "event writer still busy {} s after shutdown: remaining HTTP events are lost",
                FLUSH_TIMEOUT.as_secs()
            );
            task.abort();
        }
    }
}

async fn run(log: EventLog, mut rx: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut acks = Vec::with_capacity(batch.len());
        let mut events = Vec::with_capacity(batch.len());
        for pending in batch.drain(..) {
            acks.push(pending.ack);
            events.push((pending.at, pending.kind));
        }
        let count = events.len();
        let log = log.clone();
        let result = tokio::task::spawn_blocking(move || log.append_many(events))
            .await
            .map_err(|e| format!("event writer thread failed: {e}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
        match result {
            Ok(seqs) => {
                for (ack, seq) in acks.into_iter().zip(seqs) {
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(seq));
                    }
                }
            }
            Err(e) => {
                counter!(EVENTS_DROPPED).increment(count as u64);
                tracing::error!("recording {count} HTTP events: {e}");
                for ack in acks.into_iter().flatten() {
                    let _ = ack.send(Err(e.clone()));
                }
            }
        }
    }
}
