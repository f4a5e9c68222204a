//! The committer thread: owns the store, commits every waiting batch in one transaction (group
//! commit), then sends the replies that depended on it. With [`CommitHooks`] it also adds the
//! lease events of each commit (see `lease_events`) and reports commit failures as a DHCP
//! service error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use tracing::{debug, error};

use super::lease_events::LeaseEvents;
use super::{Batch, Transmitter, monotonic, wall_clock};
use crate::dhcp::UnixTime;
use crate::metrics;
use crate::store::LeaseStore;
use crate::uplink::ServiceHealth;

/// What the committer does besides committing: lease events and health reports.
#[derive(Debug, Default)]
pub(super) struct CommitHooks {
    pub(super) events: Option<LeaseEvents>,
    pub(super) health: Option<ServiceHealth>,
}

/// The committer thread: owns the store; commits every batch waiting (up to `max_ops` store
/// operations, and always at least one batch) as one transaction, then sends the replies of
/// those batches in order. Returns the store when the channel closes.
#[cfg(test)]
pub(super) fn committer<S: LeaseStore>(
    store: S,
    batches: &mpsc::Receiver<Batch>,
    transmitter: &Transmitter,
    in_flight: &AtomicUsize,
    max_ops: usize,
) -> S {
    commit_loop(
        store,
        batches,
        transmitter,
        in_flight,
        max_ops,
        CommitHooks::default(),
    )
}

/// The committer loop, with its hooks (`committer` without them, in tests).
pub(super) fn commit_loop<S: LeaseStore>(
    mut store: S,
    batches: &mpsc::Receiver<Batch>,
    transmitter: &Transmitter,
    in_flight: &AtomicUsize,
    max_ops: usize,
    mut hooks: CommitHooks,
) -> S {
    let mut scratch = Vec::with_capacity(1600);
    let mut ops = Vec::new();
    let mut group: Vec<Batch> = Vec::new();
    // A batch taken from the channel that did not fit in the previous commit.
    let mut carried: Option<Batch> = None;
    while let Some(first) = carried.take().or_else(|| batches.recv().ok()) {
        let mut pending_ops = first.ops.len();
        group.push(first);
        while pending_ops < max_ops {
            let Ok(more) = batches.try_recv() else {
                break;
            };
            if pending_ops + more.ops.len() > max_ops && !more.ops.is_empty() {
                carried = Some(more);
                break;
            }
            pending_ops += more.ops.len();
            group.push(more);
        }
        ops.clear();
        for batch in &mut group {
            ops.append(&mut batch.ops);
        }
        let now = wall_clock();
        let pending = hooks.events.as_ref().map(|events| {
            let (appends, pending) = events.events_for(&ops, UnixTime(now.as_secs()));
            ops.extend(appends);
            pending
        });
        let committed = if ops.is_empty() {
            true
        } else {
            let started = monotonic();
            match store.commit(&ops) {
                Ok(()) => {
                    metrics::record_commit(started.elapsed(), ops.len());
                    if let (Some(events), Some(pending)) = (hooks.events.as_mut(), pending) {
                        events.committed(pending);
                    }
                    if let Some(health) = &hooks.health {
                        health.recovered(ims_proto::SERVICE_DHCP);
                    }
                    true
                }
                Err(e) => {
                    metrics::record_commit_failure();
                    if let Some(health) = &hooks.health {
                        health.error(
                            ims_proto::SERVICE_DHCP,
                            format!("lease commit failed: {e}"),
                            i64::try_from(now.as_millis()).unwrap_or(i64::MAX),
                        );
                    }
                    let dropped = group
                        .iter()
                        .flat_map(|b| &b.replies)
                        .filter(|(_, depends)| *depends)
                        .count();
                    error!(
                        error = %e,
                        operations = ops.len(),
                        replies_dropped = dropped,
                        "lease commit failed: not sending the replies that depend on it (clients \
                         will retry); check the data_dir disk"
                    );
                    false
                }
            }
        };
        for batch in group.drain(..) {
            for (reply, depends) in &batch.replies {
                if committed || !depends {
                    transmitter.send(reply, &mut scratch);
                }
            }
            in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
    debug!("lease committer stopped");
    store
}
