//! The uplink's part of the edge store: the control plane's last [`Snapshot`] of the site
//! (machines, boot profiles, subnets), kept so the edge serves from it while the control plane
//! is unreachable and across its own restarts, and read-only lease lookups (which machine holds
//! an address, to name the machine in transfer events).
//!
//! The snapshot lives in the `sync` database of the edge's LMDB environment (see
//! [`super::lmdb`]) under the key `snapshot`: a format-version byte
//! ([`RECORD_VERSION`](super::lmdb::RECORD_VERSION)) and the snapshot's CBOR, the same
//! self-describing encoding the protocol uses, so fields added by a newer protocol minor are
//! simply ignored by an older build.
//!
//! [`SyncStore::save_snapshot`] returns once the write transaction is durable (LMDB's default
//! sync): the uplink acknowledges a generation only after it. It blocks: call it from a
//! blocking thread.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use heed::{Env, WithoutTls};
use ims_proto::Snapshot;
use nix::fcntl::Flock;

use super::StoreError;
use super::lmdb::{RawDb, decode, display, encode, lmdb_error};
use crate::dhcp::Lease;

/// Key of the snapshot in the `sync` database.
const SNAPSHOT_KEY: &[u8] = b"snapshot";

/// Handle on the `sync` database and the leases, sharing the store's environment. Cheap to
/// clone. Built by [`LmdbStore::sync_store`](super::lmdb::LmdbStore::sync_store).
#[derive(Clone)]
pub struct SyncStore {
    env: Env<WithoutTls>,
    /// `None` in a read-only store written before the uplink existed.
    sync: Option<RawDb>,
    leases: RawDb,
    path: Arc<Path>,
    read_only: bool,
    /// Keeps the store's writer lock for as long as a handle from a writable store exists.
    _writer_lock: Option<Arc<Flock<File>>>,
}

impl std::fmt::Debug for SyncStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncStore")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl SyncStore {
    /// Built by [`LmdbStore::sync_store`](super::lmdb::LmdbStore::sync_store).
    pub(super) fn new(
        env: Env<WithoutTls>,
        sync: Option<RawDb>,
        leases: RawDb,
        path: PathBuf,
        read_only: bool,
        writer_lock: Option<Arc<Flock<File>>>,
    ) -> Self {
        Self {
            env,
            sync,
            leases,
            path: path.into(),
            read_only,
            _writer_lock: writer_lock,
        }
    }

    /// The stored snapshot, if the control plane ever sent one.
    ///
    /// # Errors
    /// When the store cannot be read or the record does not decode ([`StoreError::Corrupt`]).
    pub fn load_snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        let Some(db) = self.sync else {
            return Ok(None);
        };
        let rtxn = self.env.read_txn().map_err(|e| self.lmdb(e))?;
        let Some(bytes) = db.get(&rtxn, SNAPSHOT_KEY).map_err(|e| self.lmdb(e))? else {
            return Ok(None);
        };
        decode("sync/snapshot", bytes).map(Some)
    }

    /// Replace the stored snapshot, durably (fsync) before returning. Blocks.
    ///
    /// # Errors
    /// [`StoreError::ReadOnly`] from a read-only store; LMDB failures (disk full, map full).
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let db = match self.sync {
            Some(db) if !self.read_only => db,
            _ => {
                return Err(StoreError::ReadOnly {
                    path: display(&self.path),
                });
            }
        };
        let value = encode("sync/snapshot", snapshot)?;
        let mut wtxn = self.env.write_txn().map_err(|e| self.lmdb(e))?;
        db.put(&mut wtxn, SNAPSHOT_KEY, &value)
            .map_err(|e| self.lmdb(e))?;
        wtxn.commit().map_err(|e| self.lmdb(e))
    }

    /// The lease stored for `ip` (any state), as last committed.
    ///
    /// # Errors
    /// When the store cannot be read or the record does not decode.
    pub fn lease(&self, ip: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
        let rtxn = self.env.read_txn().map_err(|e| self.lmdb(e))?;
        let Some(bytes) = self
            .leases
            .get(&rtxn, &ip.octets())
            .map_err(|e| self.lmdb(e))?
        else {
            return Ok(None);
        };
        decode(&format!("leases/{ip}"), bytes).map(Some)
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lmdb(&self, source: heed::Error) -> StoreError {
        lmdb_error(&self.path, source)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use ims_proto::{BootProfileEntry, MacAddr, MachineEntry, SubnetEntry};

    use super::*;
    use crate::store::LeaseStore;
    use crate::store::StoreOp;
    use crate::store::lmdb::LmdbStore;
    use crate::store::lmdb::tests::{TempDir, lease};

    fn snapshot(generation: u64) -> Snapshot {
        Snapshot {
            generation,
            machines: vec![MachineEntry {
                mac: MacAddr([0x52, 0x54, 0, 0, 0, 1]),
                ip: Some(Ipv4Addr::new(10, 77, 0, 11)),
                hostname: "node-1".into(),
                boot_profile: Some("default".into()),
                netboot: true,
            }],
            boot_profiles: vec![BootProfileEntry {
                name: "default".into(),
                uefi_x64: Some("ipxe.efi".into()),
                kernel: Some("vmlinuz".into()),
                cmdline: Some("console=ttyS0 phone_home={phone_home}".into()),
                ..Default::default()
            }],
            subnets: vec![SubnetEntry {
                cidr: "10.77.0.0/24".parse().expect("cidr"),
                gateway: Some(Ipv4Addr::new(10, 77, 0, 1)),
                range_start: Some(Ipv4Addr::new(10, 77, 0, 100)),
                range_end: Some(Ipv4Addr::new(10, 77, 0, 199)),
                dns: vec![Ipv4Addr::new(10, 77, 0, 2)],
                lease_time_s: 600,
                domain: Some("site.example".into()),
                boot_profile: None,
                next_server: None,
            }],
        }
    }

    #[test]
    fn snapshot_round_trips_across_a_restart() {
        let dir = TempDir::new("sync-roundtrip");
        {
            let store = LmdbStore::open(dir.path()).expect("open");
            let sync = store.sync_store();
            assert_eq!(sync.load_snapshot().expect("load"), None);
            sync.save_snapshot(&snapshot(3)).expect("save");
            assert_eq!(sync.load_snapshot().expect("load"), Some(snapshot(3)));
            sync.save_snapshot(&snapshot(4)).expect("replace");
        }
        let store = LmdbStore::open(dir.path()).expect("reopen");
        assert_eq!(
            store.sync_store().load_snapshot().expect("load"),
            Some(snapshot(4))
        );
        drop(store);
        // Read-only: readable, not writable.
        let ro = LmdbStore::open_read_only(dir.path()).expect("ro");
        let sync = ro.sync_store();
        assert_eq!(sync.load_snapshot().expect("load"), Some(snapshot(4)));
        assert!(matches!(
            sync.save_snapshot(&snapshot(5)),
            Err(StoreError::ReadOnly { .. })
        ));
    }

    #[test]
    fn corrupt_snapshot_is_an_error_naming_the_key() {
        let dir = TempDir::new("sync-corrupt");
        let store = LmdbStore::open(dir.path()).expect("open");
        let sync = store.sync_store();
        let db = sync.sync.expect("db");
        let mut wtxn = sync.env.write_txn().expect("wtxn");
        db.put(&mut wtxn, SNAPSHOT_KEY, &[1, 0xff]).expect("put");
        wtxn.commit().expect("commit");
        match sync.load_snapshot() {
            Err(StoreError::Corrupt { key, .. }) => assert_eq!(key, "sync/snapshot"),
            other => panic!("expected corrupt, got {other:?}"),
        }
    }

    #[test]
    fn leases_are_looked_up_by_address() {
        let dir = TempDir::new("sync-leases");
        let mut store = LmdbStore::open(dir.path()).expect("open");
        store
            .commit(&[StoreOp::PutLease(lease(7, 3))])
            .expect("commit");
        let sync = store.sync_store();
        let found = sync.lease(Ipv4Addr::new(10, 77, 0, 7)).expect("lookup");
        assert_eq!(found, Some(lease(7, 3)));
        assert_eq!(sync.lease(Ipv4Addr::new(10, 77, 0, 8)).expect("miss"), None);
    }
}
