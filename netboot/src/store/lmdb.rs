//! The LMDB lease store (heed): the daemon's durable journal of leases and discovered machines.
//!
//! # Layout
//!
//! One LMDB environment in `data_dir` (`data.mdb`, `lock.mdb`) with three named databases:
//!
//! | database     | key                          | value                                       |
//! | ------------ | ---------------------------- | ------------------------------------------- |
//! | `leases`     | IPv4 address, 4 bytes (BE)   | [`RECORD_VERSION`] byte + CBOR of [`Lease`]  |
//! | `discovered` | MAC address, 6 bytes         | [`RECORD_VERSION`] byte + CBOR of [`DiscoveredMachine`] |
//! | `meta`       | `schema`                     | schema version, `u32` big-endian            |
//! | `events`     | sequence number, `u64` BE    | [`RECORD_VERSION`] byte + CBOR of an [`Event`](super::events::Event) |
//! | `meta`       | `events/next_seq`            | next event sequence number, `u64` BE        |
//! | `sync`       | `snapshot`                   | [`RECORD_VERSION`] byte + CBOR of the control plane's [`Snapshot`](ims_proto::Snapshot) |
//!
//! The `events` and `sync` databases were added without a schema bump: an older `netbootd`
//! ignores them, and a store written by one gains them on the next read-write open.
//!
//! Big-endian address keys make LMDB's byte order the numeric order, so leases load sorted by IP.
//!
//! # Durability and concurrency
//!
//! [`LmdbStore::commit`] applies a whole batch in one write transaction; LMDB's default sync mode
//! (no `NO_SYNC`, `NO_META_SYNC` or `MAP_ASYNC`) makes the data durable before `commit` returns.
//! A writer takes an exclusive `flock` on `netbootd.lock` in the directory, so a second daemon on
//! the same `data_dir` is refused. Readers in other processes ([`LmdbStore::open_read_only`], used
//! by `netbootd leases`) need no lock: LMDB serves them a consistent snapshot while the daemon
//! writes. LMDB forbids opening one environment twice in the same process; doing so is refused
//! with an error.
//!
//! Nothing read from disk can panic: a record that does not decode is a [`StoreError::Corrupt`]
//! naming its key.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, RoTxn, RwTxn, WithoutTls};
use ims_proto::MacAddr;
use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use super::events::{EventLog, append_in};
use super::sync::SyncStore;
use super::{LeaseStore, StoreError, StoreOp};
use crate::dhcp::{DiscoveredMachine, Lease};
use crate::io::lmdb_env::{EnvMode, open_env};

/// Schema version of the store as a whole (databases and key layout). Bumped on incompatible
/// changes; a store with a higher version is refused.
pub const SCHEMA_VERSION: u32 = 1;

/// Format version byte leading every record value.
pub const RECORD_VERSION: u8 = 1;

/// Default LMDB map size: the most the data file may grow to (1 GiB, roughly four million leases).
pub const DEFAULT_MAP_SIZE: usize = 1 << 30;

/// Named databases in the environment (five used; room is left for more).
const MAX_DBS: u32 = 8;

const LEASES_DB: &str = "leases";
const DISCOVERED_DB: &str = "discovered";
const META_DB: &str = "meta";
const EVENTS_DB: &str = "events";
const SYNC_DB: &str = "sync";
const SCHEMA_KEY: &[u8] = b"schema";

/// File in the store directory a writer holds an exclusive `flock` on.
const LOCK_FILE: &str = "netbootd.lock";
/// LMDB's data file, whose absence means "no store here".
const DATA_FILE: &str = "data.mdb";

pub(super) type RawDb = Database<'static, Bytes, Bytes>;

/// The LMDB lease store. See the module docs for the layout.
pub struct LmdbStore {
    env: Env<WithoutTls>,
    leases: RawDb,
    discovered: RawDb,
    meta: RawDb,
    /// `None` only in a read-only store written before event logs existed.
    events: Option<RawDb>,
    /// `None` only in a read-only store written before the uplink existed.
    sync: Option<RawDb>,
    path: PathBuf,
    read_only: bool,
    /// Held for as long as the store or an [`EventLog`] from it is open; declared
    /// after `env` so the environment closes before the lock is released.
    writer_lock: Option<Arc<Flock<File>>>,
    /// Signalled after every committed transaction that appended events, whether through
    /// [`LeaseStore::commit`] (lease events) or an [`EventLog`] from this store.
    appended: Arc<Notify>,
}

impl std::fmt::Debug for LmdbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmdbStore")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl LmdbStore {
    /// Open (creating it if needed) the store in `dir` for reading and writing, with the default
    /// map size ([`DEFAULT_MAP_SIZE`]). `dir` is created with mode 0700 if it does not exist.
    ///
    /// # Errors
    /// When the directory cannot be created, another process holds the store
    /// ([`StoreError::Locked`]), LMDB refuses to open it, or it was written by a newer `netbootd`
    /// ([`StoreError::NewerSchema`]).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_map_size(dir, DEFAULT_MAP_SIZE)
    }

    /// [`LmdbStore::open`] with an explicit map size in bytes (a multiple of the page size).
    ///
    /// # Errors
    /// As [`LmdbStore::open`]; also when `map_size` is not a multiple of the page size.
    pub fn open_with_map_size(dir: &Path, map_size: usize) -> Result<Self, StoreError> {
        let path = dir.to_path_buf();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| io_error(dir, source))?;
        let lock = lock_writer(dir)?;
        let env = open_env(dir, EnvMode::ReadWrite { map_size }, MAX_DBS)
            .map_err(|source| lmdb_error(dir, source))?;
        let wtxn = env.write_txn().map_err(|source| lmdb_error(dir, source))?;
        let opened = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> Result<_, OpenError> {
                let leases = opener.create_database::<Bytes, Bytes>(wtxn, Some(LEASES_DB))?;
                let discovered =
                    opener.create_database::<Bytes, Bytes>(wtxn, Some(DISCOVERED_DB))?;
                let meta = opener.create_database::<Bytes, Bytes>(wtxn, Some(META_DB))?;
                let events = opener.create_database::<Bytes, Bytes>(wtxn, Some(EVENTS_DB))?;
                let sync = opener.create_database::<Bytes, Bytes>(wtxn, Some(SYNC_DB))?;
                let found = read_schema(dir, &meta, wtxn)?;
                match found {
                    Some(found) if found > SCHEMA_VERSION => {
                        return Ok(CommitOrAbort::Abort(found));
                    }
                    Some(found) if found == SCHEMA_VERSION => {}
                    // A new store, or (in later versions) an older schema to migrate here.
                    _ => meta.put(wtxn, SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?,
                }
                Ok(CommitOrAbort::Commit((
                    leases, discovered, meta, events, sync,
                )))
            })
            .map_err(|e| e.into_store_error(dir))?;
        let (leases, discovered, meta, events, sync) = match opened {
            CommitOrAbort::Commit(dbs) => dbs,
            CommitOrAbort::Abort(found) => {
                return Err(StoreError::NewerSchema {
                    path: display(dir),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
        };
        Ok(Self {
            env,
            leases,
            discovered,
            meta,
            events: Some(events),
            sync: Some(sync),
            path,
            read_only: false,
            writer_lock: Some(Arc::new(lock)),
            appended: Arc::default(),
        })
    }

    /// Open an existing store read-only, for inspecting leases while the daemon runs (LMDB lets
    /// readers in other processes see every committed transaction). [`LeaseStore::commit`] on
    /// such a store fails with [`StoreError::ReadOnly`].
    ///
    /// # Errors
    /// When `dir` holds no store, LMDB refuses to open it (for instance this process already has
    /// it open), or it was written by a newer `netbootd`.
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        let data = dir.join(DATA_FILE);
        match std::fs::metadata(&data) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(io_error(
                    dir,
                    std::io::Error::new(
                        ErrorKind::NotFound,
                        "no lease store here (data.mdb is missing): check data_dir in the \
                         config, or start netbootd once to create the store",
                    ),
                ));
            }
            Err(e) => return Err(io_error(&data, e)),
        }
        let env =
            open_env(dir, EnvMode::ReadOnly, MAX_DBS).map_err(|source| lmdb_error(dir, source))?;
        let rtxn = env.read_txn().map_err(|source| lmdb_error(dir, source))?;
        let (leases, discovered, meta, events, sync) = env
            .open_databases_and_commit(rtxn, |opener, rtxn| -> Result<_, OpenError> {
                let open = |name: &str| {
                    opener
                        .open_database::<Bytes, Bytes>(rtxn, Some(name))
                        .map_err(|source| lmdb_error(dir, source))?
                        .ok_or_else(|| StoreError::Corrupt {
                            key: format!("database {name}"),
                            reason: format!(
                                "missing from {}: not a netbootd lease store",
                                dir.display()
                            ),
                        })
                };
                let leases = open(LEASES_DB)?;
                let discovered = open(DISCOVERED_DB)?;
                let meta = open(META_DB)?;
                let events = opener
                    .open_database::<Bytes, Bytes>(rtxn, Some(EVENTS_DB))
                    .map_err(|source| lmdb_error(dir, source))?;
                let sync = opener
                    .open_database::<Bytes, Bytes>(rtxn, Some(SYNC_DB))
                    .map_err(|source| lmdb_error(dir, source))?;
                match read_schema(dir, &meta, rtxn)? {
                    Some(found) if found > SCHEMA_VERSION => {
                        Err(OpenError::Store(StoreError::NewerSchema {
                            path: display(dir),
                            found,
                            supported: SCHEMA_VERSION,
                        }))
                    }
                    Some(_) => Ok(CommitOrAbort::<_, ()>::Commit((
                        leases, discovered, meta, events, sync,
                    ))),
                    None => Err(OpenError::Store(StoreError::Corrupt {
                        key: "meta/schema".to_owned(),
                        reason: "missing: not a netbootd lease store".to_owned(),
                    })),
                }
            })
            .map_err(|e| e.into_store_error(dir))?
            .commit()
            .ok_or_else(|| StoreError::Corrupt {
                key: "meta/schema".to_owned(),
                reason: "could not be read".to_owned(),
            })?;
        Ok(Self {
            env,
            leases,
            discovered,
            meta,
            events,
            sync,
            path: dir.to_path_buf(),
            read_only: true,
            writer_lock: None,
            appended: Arc::default(),
        })
    }

    /// Number of stored leases (any state).
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn lease_count(&self) -> Result<u64, StoreError> {
        let rtxn = self.read_txn()?;
        self.leases.len(&rtxn).map_err(|source| self.lmdb(source))
    }

    /// The schema version recorded in the store.
    ///
    /// # Errors
    /// When the store cannot be read or the version record is malformed or missing.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let rtxn = self.read_txn()?;
        read_schema(&self.path, &self.meta, &rtxn)?.ok_or_else(|| StoreError::Corrupt {
            key: "meta/schema".to_owned(),
            reason: "missing: not a netbootd lease store".to_owned(),
        })
    }

    /// The durable edge event log (the outbox), sharing this store's environment. A log from a
    /// read-only store lists events but refuses appends; one from a store written before event
    /// logs existed is empty. The log keeps the environment (and the writer lock) open after
    /// the store itself is dropped.
    ///
    /// # Errors
    /// None today; reserved for stores where the log cannot be opened.
    pub fn event_log(&self) -> Result<EventLog, StoreError> {
        Ok(EventLog::new(
            self.env.clone(),
            self.events,
            self.meta,
            self.path.clone(),
            self.read_only,
            self.writer_lock.clone(),
            self.appended.clone(),
        ))
    }

    /// The uplink's part of the store (the control plane's snapshot, lease lookups), sharing
    /// this store's environment like [`LmdbStore::event_log`]. One from a read-only store reads
    /// but refuses to save.
    pub fn sync_store(&self) -> SyncStore {
        SyncStore::new(
            self.env.clone(),
            self.sync,
            self.leases,
            self.path.clone(),
            self.read_only,
            self.writer_lock.clone(),
        )
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_txn(&self) -> Result<RoTxn<'_, WithoutTls>, StoreError> {
        self.env.read_txn().map_err(|source| self.lmdb(source))
    }

    fn lmdb(&self, source: heed::Error) -> StoreError {
        lmdb_error(&self.path, source)
    }

    fn apply(&self, wtxn: &mut RwTxn<'_>, op: &StoreOp) -> Result<(), StoreError> {
        match op {
            StoreOp::PutLease(lease) => {
                let value = encode(&lease_key_name(lease.ip), lease)?;
                self.leases
                    .put(wtxn, &lease.ip.octets(), &value)
                    .map_err(|source| self.lmdb(source))
            }
            StoreOp::RemoveLease(ip) => self
                .leases
                .delete(wtxn, &ip.octets())
                .map(drop)
                .map_err(|source| self.lmdb(source)),
            StoreOp::PutDiscovered(machine) => {
                let value = encode(&discovered_key_name(machine.mac), machine)?;
                self.discovered
                    .put(wtxn, &machine.mac.octets(), &value)
                    .map_err(|source| self.lmdb(source))
            }
            StoreOp::AppendEvent { at, kind } => {
                let Some(events) = self.events else {
                    return Err(StoreError::ReadOnly {
                        path: display(&self.path),
                    });
                };
                append_in(wtxn, events, self.meta, &self.path, *at, kind).map(drop)
            }
        }
    }
}

impl LeaseStore for LmdbStore {
    fn load_leases(&self) -> Result<Vec<Lease>, StoreError> {
        let rtxn = self.read_txn()?;
        let iter = self
            .leases
            .iter(&rtxn)
            .map_err(|source| self.lmdb(source))?;
        let mut out = Vec::new();
        for entry in iter {
            let (key, value) = entry.map_err(|source| self.lmdb(source))?;
            let Ok(octets) = <[u8; 4]>::try_from(key) else {
                return Err(StoreError::Corrupt {
                    key: format!("leases/{}", hex(key)),
                    reason: format!("key is {} bytes, expected a 4-byte IPv4 address", key.len()),
                });
            };
            let ip = Ipv4Addr::from(octets);
            let name = lease_key_name(ip);
            let lease: Lease = decode(&name, value)?;
            if lease.ip != ip {
                return Err(StoreError::Corrupt {
                    key: name,
                    reason: format!("record holds the lease of {}", lease.ip),
                });
            }
            out.push(lease);
        }
        Ok(out)
    }

    fn load_discovered(&self) -> Result<Vec<DiscoveredMachine>, StoreError> {
        let rtxn = self.read_txn()?;
        let iter = self
            .discovered
            .iter(&rtxn)
            .map_err(|source| self.lmdb(source))?;
        let mut out = Vec::new();
        for entry in iter {
            let (key, value) = entry.map_err(|source| self.lmdb(source))?;
            let Ok(octets) = <[u8; 6]>::try_from(key) else {
                return Err(StoreError::Corrupt {
                    key: format!("discovered/{}", hex(key)),
                    reason: format!("key is {} bytes, expected a 6-byte MAC address", key.len()),
                });
            };
            let mac = MacAddr(octets);
            let name = discovered_key_name(mac);
            let machine: DiscoveredMachine = decode(&name, value)?;
            if machine.mac != mac {
                return Err(StoreError::Corrupt {
                    key: name,
                    reason: format!("record holds machine {}", machine.mac),
                });
            }
            out.push(machine);
        }
        Ok(out)
    }

    fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                path: display(&self.path),
            });
        }
        let mut wtxn = self.env.write_txn().map_err(|source| self.lmdb(source))?;
        for op in ops {
            // On error `wtxn` is dropped, which aborts the transaction: nothing is applied.
            self.apply(&mut wtxn, op)?;
        }
        wtxn.commit().map_err(|source| self.lmdb(source))?;
        if ops
            .iter()
            .any(|op| matches!(op, StoreOp::AppendEvent { .. }))
        {
            self.appended.notify_one();
        }
        Ok(())
    }
}

/// Errors inside heed's database-opening closures, which must convert from [`heed::Error`].
#[derive(Debug)]
enum OpenError {
    Heed(heed::Error),
    Store(StoreError),
}

impl From<heed::Error> for OpenError {
    fn from(e: heed::Error) -> Self {
        Self::Heed(e)
    }
}

impl From<StoreError> for OpenError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl OpenError {
    fn into_store_error(self, dir: &Path) -> StoreError {
        match self {
            Self::Heed(source) => lmdb_error(dir, source),
            Self::Store(e) => e,
        }
    }
}

/// Take the writer lock, or say who holds it.
fn lock_writer(dir: &Path) -> Result<Flock<File>, StoreError> {
    let lock_path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|source| io_error(&lock_path, source))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(StoreError::Locked { path: display(dir) }),
        Err((_, errno)) => Err(io_error(&lock_path, errno.into())),
    }
}

/// The schema version in `meta`, if any.
fn read_schema(
    dir: &Path,
    meta: &Database<'_, Bytes, Bytes>,
    txn: &RoTxn<'_>,
) -> Result<Option<u32>, StoreError> {
    let Some(bytes) = meta
        .get(txn, SCHEMA_KEY)
        .map_err(|source| lmdb_error(dir, source))?
    else {
        return Ok(None);
    };
    let octets = <[u8; 4]>::try_from(bytes).map_err(|_| StoreError::Corrupt {
        key: "meta/schema".to_owned(),
        reason: format!("{} bytes, expected a 4-byte version", bytes.len()),
    })?;
    Ok(Some(u32::from_be_bytes(octets)))
}

/// `RECORD_VERSION` followed by the CBOR encoding of `value`.
pub(super) fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(128);
    out.push(RECORD_VERSION);
    ciborium::into_writer(value, &mut out).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        reason: format!("could not be encoded: {e}"),
    })?;
    Ok(out)
}

/// Decode a record written by [`encode`]; any problem is [`StoreError::Corrupt`] naming `key`.
pub(super) fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_owned(),
        reason,
    };
    let Some((&version, mut body)) = bytes.split_first() else {
        return Err(corrupt("empty record".to_owned()));
    };
    if version != RECORD_VERSION {
        return Err(corrupt(format!(
            "record format version {version}, this netbootd reads version {RECORD_VERSION}"
        )));
    }
    let value =
        ciborium::from_reader(&mut body).map_err(|e| corrupt(format!("undecodable CBOR: {e}")))?;
    if !body.is_empty() {
        return Err(corrupt(format!(
            "{} trailing bytes after the record",
            body.len()
        )));
    }
    Ok(value)
}

fn lease_key_name(ip: Ipv4Addr) -> String {
    format!("leases/{ip}")
}

fn discovered_key_name(mac: MacAddr) -> String {
    format!("discovered/{mac}")
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn display(path: &Path) -> String {
    path.display().to_string()
}

pub(super) fn lmdb_error(path: &Path, source: heed::Error) -> StoreError {
    StoreError::Lmdb {
        path: display(path),
        source,
    }
}

fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: display(path),
        source,
    }
}

#[cfg(test)]
pub(crate) mod tests;
