//! The edge store: a journal of leases (and discovered machines) the DHCP core is authoritative
//! for. Loaded once at start; afterwards fed by the core's `Persist`/`Remove` commands.
//!
//! Two implementations of [`LeaseStore`]:
//! - [`lmdb::LmdbStore`]: the daemon's store, an LMDB environment in `data_dir`. `commit` applies
//!   a batch in one write transaction and returns only once it is durable (LMDB's default sync),
//!   so the driver can group many leases into one fsync and still persist before it promises.
//! - [`memory::MemoryStore`]: the same behaviour in `BTreeMap`s, for tests and benches.
//!
//! The same LMDB environment also holds the durable edge event log ([`events::EventLog`], from
//! [`lmdb::LmdbStore::event_log`]): the outbox of machine-visible steps for the control plane;
//! and the control plane's last snapshot of the site ([`sync::SyncStore`], from
//! [`lmdb::LmdbStore::sync_store`]), which the edge serves from across restarts.
//!
//! Records carry a format-version byte and the store a schema version, so a newer `netbootd` can
//! read what an older one wrote and an older one refuses a store it does not understand.

use std::net::Ipv4Addr;

use crate::dhcp::{DiscoveredMachine, Lease, UnixTime};

pub mod events;
pub mod lmdb;
pub mod memory;
pub mod sync;

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Insert or replace the lease stored under its IP.
    PutLease(Lease),
    /// Delete the lease stored under this IP (no error if absent).
    RemoveLease(Ipv4Addr),
    /// Insert or replace a discovered machine (keyed by MAC).
    PutDiscovered(DiscoveredMachine),
    /// Append an event to the event log, in the same transaction as the rest of the batch (lease
    /// events: they exist exactly when their lease was committed).
    AppendEvent {
        /// When it happened.
        at: UnixTime,
        /// What happened.
        kind: events::EventKind,
    },
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// LMDB refused (open, map full, I/O).
    #[error("lease store {path}: {source}")]
    Lmdb {
        /// Store directory.
        path: String,
        /// Underlying error.
        #[source]
        source: heed::Error,
    },
    /// A record could not be decoded (written by an incompatible version, or corrupted).
    #[error("lease store record {key}: {reason}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// The store was written by a newer `netbootd` with a schema this build does not understand.
    #[error(
        "lease store {path} has schema version {found}, newer than the {supported} this netbootd \
         supports: run the newer netbootd, or point data_dir at another directory"
    )]
    NewerSchema {
        /// Store directory.
        path: String,
        /// Schema version found in the store.
        found: u32,
        /// Highest schema version this build supports.
        supported: u32,
    },
    /// `commit` on a store opened with `open_read_only`.
    #[error("lease store {path} is open read-only: only the running netbootd writes leases")]
    ReadOnly {
        /// Store directory.
        path: String,
    },
    /// Another process (normally a running `netbootd`) has the store open for writing.
    #[error(
        "lease store {path} is in use by another netbootd process: stop it first, or give this \
         one another data_dir"
    )]
    Locked {
        /// Store directory.
        path: String,
    },
    /// The store directory could not be created or accessed.
    #[error("lease store directory {path}: {source}")]
    Io {
        /// Store directory.
        path: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A durable journal of leases, synchronous (LMDB is memory-mapped).
pub trait LeaseStore: Send {
    /// Every stored lease.
    ///
    /// # Errors
    /// When the store cannot be read or a record cannot be decoded.
    fn load_leases(&self) -> Result<Vec<Lease>, StoreError>;

    /// Every discovered machine.
    ///
    /// # Errors
    /// When the store cannot be read or a record cannot be decoded.
    fn load_discovered(&self) -> Result<Vec<DiscoveredMachine>, StoreError>;

    /// Apply `ops` in order, in one transaction, durably (fsync) before returning.
    ///
    /// # Errors
    /// When the transaction cannot be committed; then none of `ops` is applied.
    fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError>;
}
