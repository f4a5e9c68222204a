//! The durable edge event log: every machine-visible step the edge took (phone-home, iPXE script,
//! TFTP and HTTP transfers, lease changes, service errors), in order, waiting to be delivered to
//! the control plane.
//!
//! The log lives in the `events` database of the edge's LMDB environment (see
//! [`super::lmdb`]); an [`EventLog`] comes from [`LmdbStore::event_log`](super::lmdb::LmdbStore::event_log)
//! and shares the environment, so the DHCP driver's lease commits and event appends interleave
//! safely (LMDB runs one write transaction at a time; writers on other threads wait).
//!
//! # Records
//!
//! Key: the event's sequence number, `u64` big-endian, so LMDB's order is the append order.
//! Value: a format-version byte ([`RECORD_VERSION`](super::lmdb::RECORD_VERSION)) followed by the
//! CBOR of [`Event`]. Sequence numbers start at 1, grow by one per event and are never reused,
//! even after [`EventLog::remove_through`] deleted delivered events: the next number is kept in
//! the `meta` database (`events/next_seq`). They are the idempotency keys of delivery.
//!
//! # Durability
//!
//! [`EventLog::append`] and [`EventLog::append_many`] return only once the write transaction is
//! committed with LMDB's default sync (on disk). They block: call them from a blocking thread
//! (`tokio::task::spawn_blocking`), never directly on an async executor thread.
//!
//! Lease events ([`EventKind::LeaseGranted`] and its siblings) are not appended through
//! [`EventLog`]: the DHCP committer writes them as [`StoreOp::AppendEvent`](super::StoreOp) in
//! the same transaction as the lease they describe, so an event exists exactly when its lease
//! was committed.
//!
//! # Bound
//!
//! With a control plane configured the log is the uplink's outbox, and [`EventLog::trim`] keeps
//! it under a cap while the control plane is unreachable: the oldest lease renewals go first,
//! then the oldest other events, never a phone-home.
//!
//! # Forward compatibility
//!
//! [`EventKind`] is an externally tagged enum (`{"PhoneHome": {...}}` in CBOR). serde's
//! `#[serde(other)]` does not apply to externally tagged enums with data, so decoding goes
//! through a CBOR value first: a record whose kind this build does not know (written by a newer
//! `netbootd`) decodes as [`EventKind::Unknown`] carrying the kind's name, instead of failing
//! the whole listing. New fields in known kinds must be optional (`#[serde(default)]`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use heed::{Env, RoTxn, RwTxn, WithoutTls};
use ims_proto::MacAddr;
use ipnet::Ipv4Net;
use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::lmdb::{RawDb, decode, display, encode, hex, lmdb_error};
use crate::dhcp::UnixTime;

/// Largest phone-home body kept, in bytes; longer bodies are refused by the HTTP server.
pub const MAX_PHONE_HOME_BODY: usize = 4096;

/// Key in `meta` holding the next sequence number.
const NEXT_SEQ_KEY: &[u8] = b"events/next_seq";

/// One recorded step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Sequence number: 1, 2, 3, … in append order, never reused.
    pub seq: u64,
    /// Wall-clock time the step happened.
    pub at: UnixTime,
    /// What happened.
    pub kind: EventKind,
}

/// What happened. See the module docs for how unknown kinds decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The installed OS called `POST /phone-home/{mac}`.
    PhoneHome {
        /// The registered machine.
        mac: MacAddr,
        /// Address the request came from.
        ip: Option<IpAddr>,
        /// Request body (at most [`MAX_PHONE_HOME_BODY`] bytes, invalid UTF-8 replaced).
        body: Option<String>,
    },
    /// iPXE fetched the machine's script (`GET /boot.ipxe`).
    IpxeScript {
        /// The registered machine.
        mac: MacAddr,
        /// Client address.
        peer: SocketAddr,
        /// Boot profile used, when one was found.
        profile: Option<String>,
        /// Why the script only exits (netboot off, no kernel in the profile); `None` when it
        /// boots the kernel.
        refused: Option<String>,
    },
    /// A TFTP transfer started.
    TftpStarted {
        /// Client.
        peer: SocketAddr,
        /// Requested file (normalised).
        path: String,
        /// Negotiated block size.
        blksize: u16,
        /// Negotiated window size.
        windowsize: u16,
        /// Whether the client asked for `tsize`.
        tsize: bool,
    },
    /// A TFTP transfer delivered the whole file.
    TftpCompleted {
        /// Client.
        peer: SocketAddr,
        /// Requested file.
        path: String,
        /// Bytes delivered.
        bytes: u64,
        /// From request to final ACK, in milliseconds.
        duration_ms: u64,
        /// Retransmitted DATA packets.
        retransmits: u64,
        /// Negotiated block size (0 in events recorded before it was kept).
        #[serde(default)]
        blksize: u16,
        /// Negotiated window size (0 in events recorded before it was kept).
        #[serde(default)]
        windowsize: u16,
    },
    /// A TFTP transfer ended without delivering the file.
    TftpFailed {
        /// Client.
        peer: SocketAddr,
        /// Requested file.
        path: String,
        /// Why (a short label such as `not_found` or `timeout`).
        reason: String,
    },
    /// An HTTP boot-file download began: the file was opened and a `200` or `206` response
    /// with its body is on its way.
    HttpStarted {
        /// Client.
        peer: SocketAddr,
        /// Requested file (normalised).
        path: String,
        /// The request's `Range` header when the response honours it (`206`).
        #[serde(default)]
        range: Option<String>,
        /// The file's size in bytes (the whole file, also for a range).
        size: u64,
    },
    /// An HTTP boot-file download completed (whole file delivered).
    HttpCompleted {
        /// Client.
        peer: SocketAddr,
        /// Requested file (normalised).
        path: String,
        /// Body bytes sent.
        bytes: u64,
        /// From request to last byte, in milliseconds.
        duration_ms: u64,
        /// Response status (200, or 206 for a range).
        status: u16,
    },
    /// An HTTP boot-file download stopped before the end of its body.
    HttpFailed {
        /// Client.
        peer: SocketAddr,
        /// Requested file (normalised).
        path: String,
        /// Why, a short label: `client_closed`, `read_error`, `file_truncated`,
        /// `server_shutdown`.
        reason: String,
        /// Body bytes handed to the connection before it stopped.
        bytes: u64,
        /// From request to failure, in milliseconds.
        duration_ms: u64,
        /// Response status sent (200, or 206 for a range).
        status: u16,
    },
    /// A lease was granted (an ACK to a client without a binding of that address).
    LeaseGranted(LeaseRecord),
    /// A bound lease was extended (an ACK to a renewing or rebinding client).
    LeaseRenewed(LeaseRecord),
    /// The client released its lease (DHCPRELEASE, or it moved to another address).
    LeaseReleased(LeaseRecord),
    /// A bound lease ran out.
    LeaseExpired(LeaseRecord),
    /// A service of the edge hit an error.
    ServiceError {
        /// The service (`dhcp`, `tftp`, `http`, `uplink`).
        service: String,
        /// What went wrong.
        message: String,
    },
    /// A kind this build does not know, written by a newer `netbootd`. Never appended by this
    /// build; the uplink should skip (not resend) such events.
    Unknown {
        /// The kind's name as stored.
        name: String,
    },
}

impl EventKind {
    /// Variant names this build decodes (everything but [`EventKind::Unknown`]).
    const KNOWN: &'static [&'static str] = &[
        "PhoneHome",
        "IpxeScript",
        "TftpStarted",
        "TftpCompleted",
        "TftpFailed",
        "HttpStarted",
        "HttpCompleted",
        "HttpFailed",
        "LeaseGranted",
        "LeaseRenewed",
        "LeaseReleased",
        "LeaseExpired",
        "ServiceError",
    ];

    /// The kind's name (the CBOR tag), for logs and metrics.
    pub fn name(&self) -> &str {
        match self {
            Self::PhoneHome { .. } => "PhoneHome",
            Self::IpxeScript { .. } => "IpxeScript",
            Self::TftpStarted { .. } => "TftpStarted",
            Self::TftpCompleted { .. } => "TftpCompleted",
            Self::TftpFailed { .. } => "TftpFailed",
            Self::HttpStarted { .. } => "HttpStarted",
            Self::HttpCompleted { .. } => "HttpCompleted",
            Self::HttpFailed { .. } => "HttpFailed",
            Self::LeaseGranted(_) => "LeaseGranted",
            Self::LeaseRenewed(_) => "LeaseRenewed",
            Self::LeaseReleased(_) => "LeaseReleased",
            Self::LeaseExpired(_) => "LeaseExpired",
            Self::ServiceError { .. } => "ServiceError",
            Self::Unknown { name } => name,
        }
    }
}

/// The lease a lease event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Client hardware address.
    pub mac: MacAddr,
    /// The leased address.
    pub ip: Ipv4Addr,
    /// Hostname given to the client.
    #[serde(default)]
    pub hostname: Option<String>,
    /// When the lease ends; for released and expired leases, when it ended.
    pub ends: UnixTime,
    /// Boot file handed out, if any.
    #[serde(default)]
    pub boot_file: Option<String>,
    /// The subnet the address belongs to, when known.
    #[serde(default)]
    pub subnet: Option<Ipv4Net>,
}

/// What [`EventLog::trim`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trimmed {
    /// Lease renewals deleted.
    pub renewals: u64,
    /// Other events deleted (never phone-homes).
    pub others: u64,
}

impl Trimmed {
    /// Events deleted in all.
    pub fn total(&self) -> u64 {
        self.renewals + self.others
    }
}

/// [`Event`] as stored, with the kind left undecoded.
#[derive(Deserialize)]
struct RawEvent {
    seq: u64,
    at: UnixTime,
    kind: ciborium::Value,
}

/// The durable event log. Cheap to clone; clones share the LMDB environment. See the module
/// docs.
#[derive(Clone)]
pub struct EventLog {
    env: Env<WithoutTls>,
    /// `None` in a read-only store written before event logs existed: always empty.
    events: Option<RawDb>,
    meta: RawDb,
    path: Arc<Path>,
    read_only: bool,
    /// Keeps the store's writer lock for as long as a log from a writable store exists.
    _writer_lock: Option<Arc<Flock<std::fs::File>>>,
    /// Signalled after each committed append through this log, a clone of it or the store it
    /// came from (shared with [`LmdbStore`](super::lmdb::LmdbStore)).
    appended: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl EventLog {
    /// Built by [`LmdbStore::event_log`](super::lmdb::LmdbStore::event_log).
    pub(super) fn new(
        env: Env<WithoutTls>,
        events: Option<RawDb>,
        meta: RawDb,
        path: PathBuf,
        read_only: bool,
        writer_lock: Option<Arc<Flock<std::fs::File>>>,
        appended: Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            env,
            events,
            meta,
            path: path.into(),
            read_only,
            _writer_lock: writer_lock,
            appended,
        }
    }

    /// Wait until events were appended: through this log or a clone of it
    /// ([`EventLog::append`], [`EventLog::append_many`]), or by a commit of the store it came
    /// from (the DHCP committer's lease events). For one waiter, the uplink, which then reads
    /// the outbox at once instead of at its next poll: an append while nobody waits is
    /// remembered, so the next call returns at once.
    pub async fn appended(&self) {
        self.appended.notified().await;
    }

    /// Append one event and return its sequence number, durably. Blocks (fsync).
    ///
    /// # Errors
    /// [`StoreError::ReadOnly`] on a log from a read-only store; LMDB failures (disk full, map
    /// full).
    pub fn append(&self, at: UnixTime, kind: EventKind) -> Result<u64, StoreError> {
        let seqs = self.append_many([(at, kind)])?;
        seqs.first().copied().ok_or_else(|| StoreError::Corrupt {
            key: "events".to_owned(),
            reason: "append assigned no sequence number".to_owned(),
        })
    }

    /// Append events in one durable transaction (one fsync) and return their sequence numbers,
    /// in order. All or nothing. Blocks (fsync).
    ///
    /// # Errors
    /// As [`EventLog::append`]; on error none of the events is stored.
    pub fn append_many(
        &self,
        events: impl IntoIterator<Item = (UnixTime, EventKind)>,
    ) -> Result<Vec<u64>, StoreError> {
        let db = self.writable()?;
        let mut wtxn = self.env.write_txn().map_err(|e| self.lmdb(e))?;
        let mut seqs = Vec::new();
        for (at, kind) in events {
            seqs.push(append_in(&mut wtxn, db, self.meta, &self.path, at, &kind)?);
        }
        if seqs.is_empty() {
            return Ok(seqs);
        }
        wtxn.commit().map_err(|e| self.lmdb(e))?;
        self.appended.notify_one();
        Ok(seqs)
    }

    /// Up to `limit` events with a sequence number greater than `after`, in order. `list(0, n)`
    /// starts at the oldest stored event.
    ///
    /// # Errors
    /// When the store cannot be read, or a record is corrupt ([`StoreError::Corrupt`] naming
    /// its key). Records of unknown kinds are not errors (see the module docs).
    pub fn list(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let Some(db) = self.events else {
            return Ok(Vec::new());
        };
        let rtxn = self.env.read_txn().map_err(|e| self.lmdb(e))?;
        let start = after.to_be_bytes();
        let range = (Bound::Excluded(&start[..]), Bound::Unbounded);
        let iter = db.range(&rtxn, &range).map_err(|e| self.lmdb(e))?;
        let mut out = Vec::new();
        for entry in iter.take(limit) {
            let (key, value) = entry.map_err(|e| self.lmdb(e))?;
            out.push(decode_event(key, value)?);
        }
        Ok(out)
    }

    /// Number of stored events.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn len(&self) -> Result<u64, StoreError> {
        let Some(db) = self.events else {
            return Ok(0);
        };
        let rtxn = self.env.read_txn().map_err(|e| self.lmdb(e))?;
        db.len(&rtxn).map_err(|e| self.lmdb(e))
    }

    /// Whether no event is stored.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Delete every event with a sequence number up to and including `seq` (delivered ones),
    /// durably, and return how many were deleted. Later appends keep counting from where the
    /// log was: numbers are never reused.
    ///
    /// # Errors
    /// [`StoreError::ReadOnly`] on a read-only log; LMDB failures.
    pub fn remove_through(&self, seq: u64) -> Result<usize, StoreError> {
        let db = self.writable()?;
        let mut wtxn = self.env.write_txn().map_err(|e| self.lmdb(e))?;
        // Pin the counter first, so it survives deleting the newest events.
        let next = next_seq_in(&wtxn, db, self.meta, &self.path)?;
        self.meta
            .put(&mut wtxn, NEXT_SEQ_KEY, &next.to_be_bytes())
            .map_err(|e| self.lmdb(e))?;
        let end = seq.to_be_bytes();
        let range = (Bound::Unbounded, Bound::Included(&end[..]));
        let removed = db
            .delete_range(&mut wtxn, &range)
            .map_err(|e| self.lmdb(e))?;
        wtxn.commit().map_err(|e| self.lmdb(e))?;
        Ok(removed)
    }

    /// Keep at most `max` events: when there are more, delete the oldest lease renewals, then
    /// the oldest other events, never a phone-home (so the log may stay above `max` when only
    /// phone-homes are left). One durable transaction; returns what was deleted. Reads every
    /// stored event when over the cap: call it now and then, not per append.
    ///
    /// # Errors
    /// [`StoreError::ReadOnly`] on a read-only log; LMDB failures; a corrupt record.
    pub fn trim(&self, max: u64) -> Result<Trimmed, StoreError> {
        let db = self.writable()?;
        // Under the cap (the usual case): a read, no write transaction.
        if self.len()? <= max {
            return Ok(Trimmed::default());
        }
        let mut wtxn = self.env.write_txn().map_err(|e| self.lmdb(e))?;
        let len = db.len(&wtxn).map_err(|e| self.lmdb(e))?;
        let mut excess = len.saturating_sub(max);
        if excess == 0 {
            return Ok(Trimmed::default());
        }
        // Pin the counter first, so it survives deleting the newest events.
        let next = next_seq_in(&wtxn, db, self.meta, &self.path)?;
        self.meta
            .put(&mut wtxn, NEXT_SEQ_KEY, &next.to_be_bytes())
            .map_err(|e| self.lmdb(e))?;
        let mut renewals = Vec::new();
        let mut others = Vec::new();
        {
            let rtxn: &RoTxn<'_> = &wtxn;
            for entry in db.iter(rtxn).map_err(|e| self.lmdb(e))? {
                let (key, value) = entry.map_err(|e| self.lmdb(e))?;
                let event = decode_event(key, value)?;
                match event.kind {
                    EventKind::LeaseRenewed(_) => renewals.push(event.seq),
                    EventKind::PhoneHome { .. } => {}
                    _ => others.push(event.seq),
                }
                if renewals.len() as u64 >= excess {
                    break;
                }
            }
        }
        let mut trimmed = Trimmed::default();
        for (seqs, count) in [
            (renewals, &mut trimmed.renewals),
            (others, &mut trimmed.others),
        ] {
            for seq in seqs {
                if excess == 0 {
                    break;
                }
                if db
                    .delete(&mut wtxn, &seq.to_be_bytes())
                    .map_err(|e| self.lmdb(e))?
                {
                    *count += 1;
                    excess -= 1;
                }
            }
        }
        wtxn.commit().map_err(|e| self.lmdb(e))?;
        Ok(trimmed)
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writable(&self) -> Result<RawDb, StoreError> {
        match self.events {
            Some(db) if !self.read_only => Ok(db),
            _ => Err(StoreError::ReadOnly {
                path: display(&self.path),
            }),
        }
    }

    fn lmdb(&self, source: heed::Error) -> StoreError {
        lmdb_error(&self.path, source)
    }
}

/// The next sequence number: from `meta`, else one past the newest stored event, else 1.
fn next_seq_in(txn: &RwTxn<'_>, db: RawDb, meta: RawDb, path: &Path) -> Result<u64, StoreError> {
    let rtxn: &RoTxn<'_> = txn;
    if let Some(bytes) = meta
        .get(rtxn, NEXT_SEQ_KEY)
        .map_err(|e| lmdb_error(path, e))?
    {
        let octets = <[u8; 8]>::try_from(bytes).map_err(|_| StoreError::Corrupt {
            key: "meta/events/next_seq".to_owned(),
            reason: format!("{} bytes, expected a u64", bytes.len()),
        })?;
        return Ok(u64::from_be_bytes(octets).max(1));
    }
    match db.last(rtxn).map_err(|e| lmdb_error(path, e))? {
        None => Ok(1),
        Some((key, _)) => Ok(seq_of(key)?.saturating_add(1)),
    }
}

/// Append one event inside the write transaction `wtxn` (numbered from `meta`, which is
/// advanced) and return its sequence number. Nothing is durable until `wtxn` commits.
pub(super) fn append_in(
    wtxn: &mut RwTxn<'_>,
    db: RawDb,
    meta: RawDb,
    path: &Path,
    at: UnixTime,
    kind: &EventKind,
) -> Result<u64, StoreError> {
    let seq = next_seq_in(wtxn, db, meta, path)?;
    let next = seq.checked_add(1).ok_or_else(|| StoreError::Corrupt {
        key: "meta/events/next_seq".to_owned(),
        reason: "sequence numbers exhausted".to_owned(),
    })?;
    /// The stored form, borrowing the kind.
    #[derive(Serialize)]
    struct EventRef<'a> {
        seq: u64,
        at: UnixTime,
        kind: &'a EventKind,
    }
    let value = encode(&key_name(seq), &EventRef { seq, at, kind })?;
    db.put(wtxn, &seq.to_be_bytes(), &value)
        .map_err(|e| lmdb_error(path, e))?;
    meta.put(wtxn, NEXT_SEQ_KEY, &next.to_be_bytes())
        .map_err(|e| lmdb_error(path, e))?;
    Ok(seq)
}

fn key_name(seq: u64) -> String {
    format!("events/{seq}")
}

fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            key: format!("events/{}", hex(key)),
            reason: format!(
                "key is {} bytes, expected an 8-byte sequence number",
                key.len()
            ),
        })
}

/// Decode one record; unknown kinds become [`EventKind::Unknown`].
fn decode_event(key: &[u8], value: &[u8]) -> Result<Event, StoreError> {
    let seq = seq_of(key)?;
    let name = key_name(seq);
    let raw: RawEvent = decode(&name, value)?;
    if raw.seq != seq {
        return Err(StoreError::Corrupt {
            key: name,
            reason: format!("record holds event {}", raw.seq),
        });
    }
    let tag = match &raw.kind {
        ciborium::Value::Map(entries) if entries.len() == 1 => entries[0].0.as_text(),
        ciborium::Value::Text(tag) => Some(tag.as_str()),
        _ => None,
    };
    let kind = match tag {
        Some(tag) if !EventKind::KNOWN.contains(&tag) => EventKind::Unknown {
            name: tag.to_owned(),
        },
        _ => raw.kind.deserialized().map_err(|e| StoreError::Corrupt {
            key: name,
            reason: format!("undecodable event: {e}"),
        })?,
    };
    Ok(Event {
        seq,
        at: raw.at,
        kind,
    })
}

#[cfg(test)]
mod tests;
