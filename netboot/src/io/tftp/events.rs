//! TFTP transfer events into the durable event log ([`EventLog`]), off the driver's thread.
//!
//! Appending blocks on an fsync, so a writer thread does it: it takes every event waiting in
//! its queue and appends them in one transaction (one fsync per burst). The queue is bounded;
//! when the disk cannot keep up, further events are dropped, counted
//! (`netbootd_tftp_events_dropped_total`) and logged rather than stalling transfers.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{error, warn};

use crate::dhcp::UnixTime;
use crate::metrics;
use crate::store::events::{EventKind, EventLog};
use crate::tftp::{Outcome, TransferEvent};

/// Events waiting for the writer.
const QUEUE: usize = 65_536;
/// Most events appended in one transaction.
const MAX_BATCH: usize = 4096;

/// The sending side; dropping it lets the writer finish the queue and stop (and waits for it).
#[derive(Debug)]
pub(crate) struct EventSink {
    tx: Option<SyncSender<(UnixTime, EventKind)>>,
    writer: Option<thread::JoinHandle<()>>,
    dropped: u64,
}

impl EventSink {
    /// Start the writer thread for `log`.
    pub(crate) fn start(log: EventLog) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let writer = thread::Builder::new()
            .name("netbootd-tftp-events".into())
            .spawn(move || write_all(&log, &rx))?;
        Ok(Self {
            tx: Some(tx),
            writer: Some(writer),
            dropped: 0,
        })
    }

    /// Queue `event` if it is one the log keeps (started, completed, failed transfers).
    pub(crate) fn record(&mut self, event: &TransferEvent) {
        let Some(kind) = kind_of(event) else { return };
        let Some(tx) = &self.tx else { return };
        match tx.try_send((wall_clock(), kind)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::record_tftp_events_dropped(1);
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    warn!(
                        dropped = self.dropped,
                        "the event log cannot keep up: TFTP events dropped"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                error!("the event log writer stopped: TFTP events are no longer recorded");
                self.tx = None;
            }
        }
    }
}

impl Drop for EventSink {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The event log's record of a transfer event; refusals are not recorded (they are counted).
pub(crate) fn kind_of(event: &TransferEvent) -> Option<EventKind> {
    match event {
        TransferEvent::Started {
            peer,
            path,
            blksize,
            windowsize,
            tsize,
            ..
        } => Some(EventKind::TftpStarted {
            peer: *peer,
            path: path.clone(),
            blksize: *blksize,
            windowsize: *windowsize,
            tsize: *tsize,
        }),
        TransferEvent::Ended {
            peer,
            path,
            outcome,
            ..
        } => Some(match outcome {
            Outcome::Completed {
                bytes,
                retransmits,
                duration,
                blksize,
                windowsize,
            } => EventKind::TftpCompleted {
                peer: *peer,
                path: path.clone(),
                bytes: *bytes,
                duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                retransmits: *retransmits,
                blksize: *blksize,
                windowsize: *windowsize,
            },
            Outcome::Failed { reason } => EventKind::TftpFailed {
                peer: *peer,
                path: path.clone(),
                reason: reason.as_str().to_owned(),
            },
            // A size query is not part of the machine's story: the download follows.
            Outcome::SizeQueried => return None,
        }),
        TransferEvent::Refused { .. } => None,
    }
}

fn write_all(log: &EventLog, rx: &Receiver<(UnixTime, EventKind)>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        let n = batch.len();
        if let Err(e) = log.append_many(batch) {
            error!("cannot append {n} TFTP events to the event log: {e}");
        }
    }
}

/// Wall-clock time of an event.
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> UnixTime {
    UnixTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs(),
    )
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::store::lmdb::LmdbStore;
    use crate::tftp::{FailReason, TransferId};

    #[test]
    fn transfer_events_reach_the_log_in_order() {
        let dir = std::env::temp_dir().join(format!("netbootd-tftp-events-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = LmdbStore::open(&dir).unwrap();
        let log = store.event_log().unwrap();
        let peer: SocketAddr = "10.77.0.10:2000".parse().unwrap();
        let id = TransferId(1);
        let mut sink = EventSink::start(log.clone()).unwrap();
        sink.record(&TransferEvent::Started {
            id,
            peer,
            path: "ipxe.efi".into(),
            blksize: 1468,
            windowsize: 8,
            tsize: true,
        });
        sink.record(&TransferEvent::Refused {
            peer,
            reason: FailReason::BadPath,
        });
        sink.record(&TransferEvent::Ended {
            id,
            peer,
            path: "ipxe.efi".into(),
            outcome: Outcome::Completed {
                bytes: 1_000_000,
                retransmits: 2,
                duration: Duration::from_millis(1500),
                blksize: 1468,
                windowsize: 8,
            },
        });
        sink.record(&TransferEvent::Ended {
            id: TransferId(3),
            peer,
            path: "ipxe.efi".into(),
            outcome: Outcome::SizeQueried,
        });
        sink.record(&TransferEvent::Ended {
            id: TransferId(2),
            peer,
            path: "missing".into(),
            outcome: Outcome::Failed {
                reason: FailReason::NotFound,
            },
        });
        drop(sink); // waits for the writer
        let events = log.list(0, 10).unwrap();
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
        let kinds: Vec<EventKind> = events.into_iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                EventKind::TftpStarted {
                    peer,
                    path: "ipxe.efi".into(),
                    blksize: 1468,
                    windowsize: 8,
                    tsize: true
                },
                EventKind::TftpCompleted {
                    peer,
                    path: "ipxe.efi".into(),
                    bytes: 1_000_000,
                    duration_ms: 1500,
                    retransmits: 2,
                    blksize: 1468,
                    windowsize: 8
                },
                EventKind::TftpFailed {
                    peer,
                    path: "missing".into(),
                    reason: "not_found".into()
                },
            ]
        );
    }
}
