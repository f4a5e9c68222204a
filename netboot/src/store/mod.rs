//! The edge store: a journal of leases (and discovered machines) the DHCP core is authoritative
//! for. Loaded once at start; afterwards fed by the core's `Persist`/`Remove` commands.
//!
//! CONTRACT (filled in by the store task): `lmdb::LmdbStore` and `memory::MemoryStore` implement
//! [`LeaseStore`]; `commit` applies a batch in one transaction and returns only once it is durable.

use std::net::Ipv4Addr;

use crate::dhcp::{DiscoveredMachine, Lease};

pub mod lmdb;
pub mod memory;

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Insert or replace the lease stored under its IP.
    PutLease(Lease),
    /// Delete the lease stored under this IP (no error if absent).
    RemoveLease(Ipv4Addr),
    /// Insert or replace a discovered machine (keyed by MAC).
    PutDiscovered(DiscoveredMachine),
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
