//! Received datagrams on their way from the backend to the loop, without a copy or an
//! allocation per datagram: a [`Batch`] holds the datagrams of one loop turn back to back in
//! one reused buffer. The loop hands the backend an empty batch; the backend fills it with
//! what is ready (at most [`MAX_BATCH`] datagrams) and returns; the loop feeds them to the
//! core, clears the batch and hands it back.
//!
//! [`ReceiveQueue`] is where receiver tasks (the io_uring backend has one per socket) put
//! datagrams until the loop takes them: swapping the queue's batch with the loop's empty one
//! takes them all at once.

use std::cell::RefCell;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::ops::Range;

use tokio::sync::Notify;

use super::event_loop::Origin;

/// Most datagrams in one batch: the loop handles them, then sends what the core decided.
pub(crate) const MAX_BATCH: usize = 1024;
/// Bytes of buffer a batch keeps between turns.
const KEPT_BYTES: usize = 1 << 20;

/// What arrived on one socket.
#[derive(Debug)]
pub(crate) enum Received {
    /// A datagram from `peer`: `range` of the batch's bytes.
    Datagram {
        /// The socket.
        origin: Origin,
        /// Sender.
        peer: SocketAddr,
        /// Where its bytes are in [`Batch::bytes`].
        range: Range<usize>,
    },
    /// A receive failed (the loop logs it).
    Failed {
        /// The socket.
        origin: Origin,
        /// What the kernel said.
        error: io::Error,
    },
}

/// The datagrams of one loop turn.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    bytes: Vec<u8>,
    entries: Vec<Received>,
}

impl Batch {
    /// Keep a datagram from `peer` on `origin`.
    pub(crate) fn push(&mut self, origin: Origin, peer: SocketAddr, data: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        self.entries.push(Received::Datagram {
            origin,
            peer,
            range: start..self.bytes.len(),
        });
    }

    /// Keep a receive failure.
    pub(crate) fn failed(&mut self, origin: Origin, error: io::Error) {
        self.entries.push(Received::Failed { origin, error });
    }

    /// Whether the batch holds [`MAX_BATCH`] entries.
    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= MAX_BATCH
    }

    /// Whether the batch holds nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in arrival order.
    pub(crate) fn entries(&self) -> &[Received] {
        &self.entries
    }

    /// The bytes of a datagram entry.
    pub(crate) fn bytes(&self, range: &Range<usize>) -> &[u8] {
        self.bytes.get(range.clone()).unwrap_or_default()
    }

    /// Empty the batch, keeping its buffers (up to [`KEPT_BYTES`]: a burst of large
    /// datagrams does not pin its memory).
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.bytes.shrink_to(KEPT_BYTES);
        self.entries.clear();
    }
}

/// Datagrams posted by receiver tasks, waiting for the loop (single-threaded).
#[derive(Debug, Default)]
pub(crate) struct ReceiveQueue {
    batch: RefCell<Batch>,
    /// Signalled when the queue turns non-empty.
    ready: Notify,
    /// Signalled when the loop has taken the queue's datagrams.
    space: Notify,
}

impl ReceiveQueue {
    /// Post a datagram or a failure, waiting while the queue is full (the kernel buffers
    /// meanwhile).
    pub(crate) async fn post(&self, origin: Origin, received: io::Result<(SocketAddr, &[u8])>) {
        loop {
            let space = self.space.notified();
            if !self.batch.borrow().is_full() {
                break;
            }
            space.await;
        }
        let mut batch = self.batch.borrow_mut();
        match received {
            Ok((peer, data)) => batch.push(origin, peer, data),
            Err(error) => batch.failed(origin, error),
        }
        drop(batch);
        self.ready.notify_one();
    }

    /// Wait until something is posted, then swap it all into `batch` (which must be empty).
    pub(crate) async fn take(&self, batch: &mut Batch) {
        loop {
            if !self.batch.borrow().is_empty() {
                mem::swap(&mut *self.batch.borrow_mut(), batch);
                self.space.notify_waiters();
                return;
            }
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::tftp::TransferId;

    fn peer() -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 2], 4000))
    }

    #[test]
    fn a_batch_keeps_datagrams_back_to_back() {
        let mut batch = Batch::default();
        batch.push(Origin::Listener, peer(), b"request");
        batch.push(Origin::Transfer(TransferId(3)), peer(), &[0, 4, 0, 1]);
        batch.failed(
            Origin::Listener,
            io::Error::from_raw_os_error(libc::ENOBUFS),
        );
        let got: Vec<(Origin, Vec<u8>)> = batch
            .entries()
            .iter()
            .filter_map(|e| match e {
                Received::Datagram { origin, range, .. } => {
                    Some((*origin, batch.bytes(range).to_vec()))
                }
                Received::Failed { .. } => None,
            })
            .collect();
        assert_eq!(
            got,
            [
                (Origin::Listener, b"request".to_vec()),
                (Origin::Transfer(TransferId(3)), vec![0, 4, 0, 1])
            ]
        );
        assert_eq!(batch.entries().len(), 3);
        let capacity = batch.bytes.capacity();
        batch.clear();
        assert!(batch.is_empty());
        assert_eq!(batch.bytes.capacity(), capacity, "buffers are kept");
    }

    #[test]
    fn the_queue_hands_over_everything_and_holds_posters_when_full() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let queue = Rc::new(ReceiveQueue::default());
            let poster = {
                let queue = queue.clone();
                tokio::task::spawn_local(async move {
                    for i in 0..MAX_BATCH + 10 {
                        let n = u8::try_from(i % 256).unwrap();
                        queue.post(Origin::Listener, Ok((peer(), &[n][..]))).await;
                    }
                })
            };
            let mut batch = Batch::default();
            let mut seen = 0;
            while seen < MAX_BATCH + 10 {
                queue.take(&mut batch).await;
                assert!(batch.entries().len() <= MAX_BATCH);
                for entry in batch.entries() {
                    let Received::Datagram { range, .. } = entry else {
                        panic!("{entry:?}")
                    };
                    assert_eq!(batch.bytes(range), [u8::try_from(seen % 256).unwrap()]);
                    seen += 1;
                }
                batch.clear();
            }
            poster.await.unwrap();
            assert!(queue.batch.borrow().is_empty());
        });
    }
}
