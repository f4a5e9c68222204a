//! Recording the edges' events exactly once, and what each one changes.
//!
//! A batch is recorded in one write transaction ([`record_batch`]). Each event is inserted into
//! `edge_events` keyed by `(worker_id, seq)` with `ON CONFLICT DO NOTHING`; only events that
//! were not there before get their side effects, so a batch sent twice (a lost
//! acknowledgement, a reconnect, another replica) changes nothing the second time. Events are
//! applied in the batch's order, and batches of one worker one after another, so a machine's
//! events take effect in the order the edge saw them.
//!
//! What an event does is decided by [`plan`] (pure):
//!
//! | event | machine timeline (`machine_events`) | lease | machine |
//! | --- | --- | --- | --- |
//! | `LeaseGranted` | `lease` | active | `DEPLOYING` when a boot file was handed out |
//! | `LeaseRenewed` | `lease` | active | |
//! | `LeaseReleased` / `LeaseExpired` | `lease` | released / expired | |
//! | `TftpStarted` / `HttpStarted` | `transfer_started` | | |
//! | `TftpCompleted` / `HttpCompleted` | `transfer_completed` | | |
//! | `TftpFailed` / `HttpFailed` | `transfer_failed` | | `ERROR` (the reason is in the timeline) |
//! | `IpxeScript` | `ipxe_script` | | |
//! | `PhoneHome` | `phone_home` | | `ACTIVE`, netboot off (boot once) |
//! | `ServiceError` | | | the worker: status `error`, `last_error` |
//!
//! Timeline entries carry the event id `<worker_id>:<seq>`. Machine status and netboot change
//! only for machines of the worker's own site: an edge cannot touch another site's machines.
//! An event kind this build does not know is recorded (and acknowledged) without effects.

use std::net::Ipv4Addr;

use ims_proto::{EdgeEvent, EdgeEventKind, LeaseEvent, MacAddr, TransferFailed};
use ipnet::Ipv4Net;
use serde_json::{Value, json};
use sqlx::{AnyConnection, Row};

use crate::db::{Db, StoreError, format_ts};
use crate::model::{BindingState, MachineStatus};
use crate::store::events::{self as machine_events, NewEvent};
use crate::store::workers::{self, LeaseReport, WorkerError};

/// Longest event kind name stored (a newer peer's unknown kinds are cut).
pub const MAX_KIND_LEN: usize = 128;
/// Most events accepted in one batch.
pub const MAX_BATCH: usize = 1024;

/// A machine status change an event causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusChange {
    /// Provisioning started: `DEPLOYING`.
    Deploying,
    /// A transfer failed: `ERROR`.
    Error,
    /// Phoned home: `ACTIVE`, and netboot off.
    ActiveNetbootOff,
}

impl StatusChange {
    /// The machine's status and netboot flag after the change, given its netboot flag now.
    #[must_use]
    pub const fn target(&self, netboot_now: bool) -> (MachineStatus, bool) {
        match self {
            Self::Deploying => (MachineStatus::Deploying, netboot_now),
            Self::Error => (MachineStatus::Error, netboot_now),
            Self::ActiveNetbootOff => (MachineStatus::Active, false),
        }
    }
}

/// A machine timeline entry to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// The machine.
    pub mac: MacAddr,
    /// `machine_events.kind`.
    pub kind: &'static str,
    /// Human-readable text.
    pub message: String,
}

/// Everything one event causes.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPlan {
    /// `edge_events.kind`: the event's kind name.
    pub kind: String,
    /// `edge_events.detail` (and the timeline entry's): the event as JSON.
    pub detail: Value,
    /// A machine timeline entry.
    pub timeline: Option<TimelineEntry>,
    /// A lease to record.
    pub lease: Option<LeaseReport>,
    /// A machine status change (with the machine's MAC).
    pub status: Option<(MacAddr, StatusChange)>,
    /// A service error to record on the worker.
    pub service_error: Option<String>,
}

fn lease_report(e: &LeaseEvent, at_ms: i64, state: BindingState) -> LeaseReport {
    LeaseReport {
        ip_address: e.ip,
        mac_address: e.mac,
        hostname: e.hostname.clone().unwrap_or_default(),
        lease_start: at_ms,
        lease_end: e.lease_end_ms,
        binding_state: state,
        cidr: e
            .subnet
            .and_then(|c| Ipv4Net::new(c.addr(), c.prefix_len()).ok()),
        gateway: None::<Ipv4Addr>,
        bootfile_url: e.boot_file.clone(),
        tftp_server: None,
    }
}

fn failure_text(what: &str, f: &TransferFailed) -> String {
    let status = f
        .status
        .map(|s| format!(", HTTP status {s}"))
        .unwrap_or_default();
    format!(
        "{what} of {} failed: {} after {} bytes{status}",
        f.path, f.reason, f.bytes
    )
}

/// What `event` causes (pure).
#[must_use]
pub fn plan(event: &EdgeEvent) -> EventPlan {
    let at = event.at_ms;
    let detail = match &event.kind {
        EdgeEventKind::Unknown { kind } => json!({ "type": kind }),
        other => serde_json::to_value(other).unwrap_or_else(|_| json!({})),
    };
    let mut p = EventPlan {
        kind: event.kind.kind().chars().take(MAX_KIND_LEN).collect(),
        detail,
        timeline: None,
        lease: None,
        status: None,
        service_error: None,
    };
    let entry = |mac, kind, message| Some(TimelineEntry { mac, kind, message });
    match &event.kind {
        EdgeEventKind::LeaseGranted(e) => {
            let boot = e
                .boot_file
                .as_deref()
                .map(|b| format!(", boot file {b}"))
                .unwrap_or_default();
            p.timeline = entry(
                e.mac,
                "lease",
                format!(
                    "lease granted: {} until {}{boot}",
                    e.ip,
                    format_ts(e.lease_end_ms)
                ),
            );
            p.lease = Some(lease_report(e, at, BindingState::Active));
            if e.boot_file.as_deref().is_some_and(|b| !b.is_empty()) {
                p.status = Some((e.mac, StatusChange::Deploying));
            }
        }
        EdgeEventKind::LeaseRenewed(e) => {
            p.timeline = entry(
                e.mac,
                "lease",
                format!(
                    "lease renewed: {} until {}",
                    e.ip,
                    format_ts(e.lease_end_ms)
                ),
            );
            p.lease = Some(lease_report(e, at, BindingState::Active));
        }
        EdgeEventKind::LeaseReleased(e) => {
            p.timeline = entry(e.mac, "lease", format!("lease released: {}", e.ip));
            p.lease = Some(lease_report(e, at, BindingState::Released));
        }
        EdgeEventKind::LeaseExpired(e) => {
            p.timeline = entry(e.mac, "lease", format!("lease expired: {}", e.ip));
            p.lease = Some(lease_report(e, at, BindingState::Expired));
        }
        EdgeEventKind::TftpStarted(e) => {
            if let Some(mac) = e.mac {
                let text = format!(
                    "TFTP transfer of {} started (blksize {}, windowsize {})",
                    e.path, e.blksize, e.windowsize
                );
                p.timeline = entry(mac, "transfer_started", text);
            }
        }
        EdgeEventKind::HttpStarted(e) => {
            if let Some(mac) = e.mac {
                let part = e
                    .range
                    .as_deref()
                    .map(|r| format!("{r} of "))
                    .unwrap_or_default();
                let text = format!(
                    "HTTP download of {} started ({part}{} bytes)",
                    e.path, e.size
                );
                p.timeline = entry(mac, "transfer_started", text);
            }
        }
        EdgeEventKind::TftpCompleted(e) => {
            if let Some(mac) = e.mac {
                let text = format!(
                    "TFTP transfer of {} completed: {} bytes in {} ms",
                    e.path, e.bytes, e.duration_ms
                );
                p.timeline = entry(mac, "transfer_completed", text);
            }
        }
        EdgeEventKind::HttpCompleted(e) => {
            if let Some(mac) = e.mac {
                let text = format!(
                    "HTTP download of {} completed: {} bytes in {} ms",
                    e.path, e.bytes, e.duration_ms
                );
                p.timeline = entry(mac, "transfer_completed", text);
            }
        }
        EdgeEventKind::TftpFailed(f) | EdgeEventKind::HttpFailed(f) => {
            if let Some(mac) = f.mac {
                let what = if matches!(event.kind, EdgeEventKind::TftpFailed(_)) {
                    "TFTP transfer"
                } else {
                    "HTTP download"
                };
                p.timeline = entry(mac, "transfer_failed", failure_text(what, f));
                p.status = Some((mac, StatusChange::Error));
            }
        }
        EdgeEventKind::IpxeScript(e) => {
            let text = match (&e.refused, &e.profile) {
                (Some(why), _) => format!("iPXE boot script refused: {why}"),
                (None, Some(profile)) => {
                    format!("iPXE fetched its boot script (profile {profile})")
                }
                (None, None) => "iPXE fetched its boot script".to_owned(),
            };
            p.timeline = entry(e.mac, "ipxe_script", text);
        }
        EdgeEventKind::PhoneHome(e) => {
            let from = e.ip.map(|ip| format!(" from {ip}")).unwrap_or_default();
            p.timeline = entry(
                e.mac,
                "phone_home",
                format!("phoned home{from}: provisioning finished, netboot switched off"),
            );
            p.status = Some((e.mac, StatusChange::ActiveNetbootOff));
        }
        EdgeEventKind::ServiceError(e) => {
            p.service_error = Some(format!("{}: {}", e.service, e.message));
        }
        EdgeEventKind::Unknown { .. } => {}
    }
    p
}

/// What [`record_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    /// Events recorded now.
    pub recorded: usize,
    /// Events that were recorded before (ignored).
    pub duplicates: usize,
    /// The highest event id of the batch (what to acknowledge), if it had any events.
    pub up_to: Option<u64>,
}

/// Why a batch could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The batch breaks the protocol.
    #[error("{0}")]
    Bad(String),
    /// The worker may no longer report (revoked), or is unknown.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for EventsError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// Records `batch` from `worker_id` (of site `site_id`) in one transaction and applies the side
/// effects of the events not recorded before.
///
/// # Errors
/// The batch is too large or has an id that does not fit the store; the worker was revoked;
/// the store failed (nothing is recorded then).
pub async fn record_batch(
    db: &Db,
    worker_id: &str,
    site_id: Option<i64>,
    batch: &[EdgeEvent],
    now_ms: i64,
) -> Result<BatchOutcome, EventsError> {
    if batch.len() > MAX_BATCH {
        return Err(EventsError::Bad(format!(
            "an event batch holds {} events; send at most {MAX_BATCH}",
            batch.len()
        )));
    }
    let mut outcome = BatchOutcome {
        up_to: batch.iter().map(|e| e.id).max(),
        ..BatchOutcome::default()
    };
    let mut tx = db.begin_write().await?;
    for event in batch {
        let seq = i64::try_from(event.id).map_err(|_| {
            EventsError::Bad(format!(
                "event id {} is larger than {}; ids count up from 1",
                event.id,
                i64::MAX
            ))
        })?;
        let p = plan(event);
        let inserted = sqlx::query(
            "INSERT INTO edge_events (worker_id, seq, kind, at, detail, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (worker_id, seq) DO NOTHING RETURNING id",
        )
        .bind(worker_id)
        .bind(seq)
        .bind(p.kind.as_str())
        .bind(event.at_ms)
        .bind(p.detail.to_string())
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_none() {
            outcome.duplicates += 1;
            continue;
        }
        outcome.recorded += 1;
        apply(&mut tx, worker_id, site_id, seq, event.at_ms, p, now_ms).await?;
    }
    tx.commit().await?;
    Ok(outcome)
}

async fn apply(
    conn: &mut AnyConnection,
    worker_id: &str,
    site_id: Option<i64>,
    seq: i64,
    at_ms: i64,
    p: EventPlan,
    now_ms: i64,
) -> Result<(), EventsError> {
    if let Some(t) = p.timeline {
        machine_events::record_event(
            &mut *conn,
            &NewEvent {
                mac: t.mac,
                worker_id: Some(worker_id.to_owned()),
                event_id: Some(format!("{worker_id}:{seq}")),
                kind: t.kind.to_owned(),
                message: t.message,
                detail: p.detail.clone(),
                at_ms,
            },
        )
        .await?;
    }
    if let Some(lease) = &p.lease {
        workers::report_lease(conn, worker_id, lease, now_ms).await?;
    }
    if let (Some((mac, change)), Some(site_id)) = (p.status, site_id) {
        // Only a machine of the worker's own site; no write (and no config change) when it is
        // already in the target state.
        let row = sqlx::query(
            "SELECT m.id, m.status, m.netboot FROM machines m \
             JOIN clusters c ON c.id = m.cluster_id WHERE m.mac = $1 AND c.site_id = $2",
        )
        .bind(mac.to_string())
        .bind(site_id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            let id: i64 = row.try_get(0)?;
            let status_now: String = row.try_get(1)?;
            let netboot_now = row.try_get::<i64, _>(2)? != 0;
            let (status, netboot) = change.target(netboot_now);
            if status_now != status.as_str() || netboot != netboot_now {
                sqlx::query(
                    "UPDATE machines SET status = $1, netboot = $2, updated_at = $3 WHERE id = $4",
                )
                .bind(status.as_str())
                .bind(i64::from(netboot))
                .bind(now_ms)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    if let Some(message) = p.service_error {
        workers::report_error(conn, worker_id, &message, &Value::Null, now_ms).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use ims_proto::{
        HttpCompleted, HttpStarted, IpxeScript, PhoneHome, ServiceError, TftpCompleted, TftpStarted,
    };

    use super::*;

    const MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);

    fn ev(id: u64, kind: EdgeEventKind) -> EdgeEvent {
        EdgeEvent {
            id,
            at_ms: 1_790_000_000_000,
            kind,
        }
    }

    fn lease(boot_file: Option<&str>) -> LeaseEvent {
        LeaseEvent {
            mac: MAC,
            ip: Ipv4Addr::new(10, 0, 0, 5),
            hostname: Some("node-1".into()),
            lease_end_ms: 1_790_000_600_000,
            boot_file: boot_file.map(Into::into),
            subnet: Some("10.0.0.0/24".parse().unwrap_or_else(|_| unreachable!())),
        }
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 5], 2000))
    }

    fn failed(mac: Option<MacAddr>) -> TransferFailed {
        TransferFailed {
            mac,
            peer: peer(),
            path: "pxelinux.0".into(),
            reason: "timeout".into(),
            bytes: 512,
            duration_ms: 5000,
            retransmits: 5,
            status: None,
        }
    }

    #[test]
    fn a_lease_with_a_boot_file_starts_deploying() {
        let p = plan(&ev(
            1,
            EdgeEventKind::LeaseGranted(lease(Some("pxelinux.0"))),
        ));
        assert_eq!(p.kind, "LeaseGranted");
        assert_eq!(p.status, Some((MAC, StatusChange::Deploying)));
        let t = p.timeline.unwrap();
        assert_eq!((t.mac, t.kind), (MAC, "lease"));
        assert!(t.message.contains("10.0.0.5") && t.message.contains("pxelinux.0"));
        let l = p.lease.unwrap();
        assert_eq!(l.binding_state, BindingState::Active);
        assert_eq!(l.lease_start, 1_790_000_000_000);
        assert_eq!(
            l.cidr.map(|c| c.to_string()).as_deref(),
            Some("10.0.0.0/24")
        );
        assert_eq!(p.detail["type"], "LeaseGranted");
        assert_eq!(p.detail["ip"], "10.0.0.5");

        let p = plan(&ev(2, EdgeEventKind::LeaseGranted(lease(None))));
        assert_eq!(p.status, None, "no boot file: DHCP only, no provisioning");
        let p = plan(&ev(3, EdgeEventKind::LeaseRenewed(lease(Some("x")))));
        assert_eq!(p.status, None, "renewals do not restart provisioning");
        assert_eq!(
            plan(&ev(4, EdgeEventKind::LeaseReleased(lease(None))))
                .lease
                .map(|l| l.binding_state),
            Some(BindingState::Released)
        );
        assert_eq!(
            plan(&ev(5, EdgeEventKind::LeaseExpired(lease(None))))
                .lease
                .map(|l| l.binding_state),
            Some(BindingState::Expired)
        );
    }

    #[test]
    fn failed_transfers_are_errors_with_the_reason() {
        let p = plan(&ev(1, EdgeEventKind::TftpFailed(failed(Some(MAC)))));
        assert_eq!(p.status, Some((MAC, StatusChange::Error)));
        let t = p.timeline.unwrap();
        assert_eq!(t.kind, "transfer_failed");
        assert!(
            t.message
                .contains("TFTP transfer of pxelinux.0 failed: timeout"),
            "{}",
            t.message
        );
        let mut http = failed(Some(MAC));
        http.status = Some(404);
        let p = plan(&ev(2, EdgeEventKind::HttpFailed(http)));
        let t = p.timeline.unwrap();
        assert!(t.message.starts_with("HTTP download") && t.message.contains("404"));
        let p = plan(&ev(3, EdgeEventKind::TftpFailed(failed(None))));
        assert_eq!((p.status, p.timeline), (None, None), "no machine known");
        assert_eq!(
            StatusChange::Error.target(true),
            (MachineStatus::Error, true)
        );
        assert_eq!(
            StatusChange::Deploying.target(false),
            (MachineStatus::Deploying, false)
        );
    }

    #[test]
    fn http_downloads_start_in_the_timeline_and_fail_as_errors() {
        let started = |mac, range: Option<&str>| {
            plan(&ev(
                1,
                EdgeEventKind::HttpStarted(HttpStarted {
                    mac,
                    peer: peer(),
                    path: "images/initrd.img".into(),
                    range: range.map(Into::into),
                    size: 52_428_800,
                }),
            ))
        };
        let p = started(Some(MAC), None);
        assert_eq!(p.kind, "HttpStarted");
        assert_eq!(p.detail["type"], "HttpStarted");
        assert_eq!(p.detail["size"], 52_428_800);
        assert_eq!((p.status, p.lease, p.service_error), (None, None, None));
        let t = p.timeline.unwrap();
        assert_eq!((t.mac, t.kind), (MAC, "transfer_started"));
        assert_eq!(
            t.message,
            "HTTP download of images/initrd.img started (52428800 bytes)"
        );
        let t = started(Some(MAC), Some("bytes=65536-")).timeline.unwrap();
        assert!(
            t.message.contains("bytes=65536- of 52428800 bytes"),
            "{}",
            t.message
        );
        let p = started(None, None);
        assert!(p.timeline.is_none(), "no machine known: no timeline entry");

        // A download cut short: ERROR, the reason, the bytes and the status in the timeline.
        let p = plan(&ev(
            2,
            EdgeEventKind::HttpFailed(TransferFailed {
                mac: Some(MAC),
                peer: peer(),
                path: "images/initrd.img".into(),
                reason: "client_closed".into(),
                bytes: 131_072,
                duration_ms: 40,
                retransmits: 0,
                status: Some(200),
            }),
        ));
        assert_eq!(p.kind, "HttpFailed");
        assert_eq!(p.status, Some((MAC, StatusChange::Error)));
        let t = p.timeline.unwrap();
        assert_eq!(t.kind, "transfer_failed");
        assert_eq!(
            t.message,
            "HTTP download of images/initrd.img failed: client_closed after 131072 bytes, \
             HTTP status 200"
        );
    }

    #[test]
    fn phone_home_activates_and_turns_netboot_off() {
        let p = plan(&ev(
            9,
            EdgeEventKind::PhoneHome(PhoneHome {
                mac: MAC,
                ip: Some("10.0.0.5".parse().unwrap_or_else(|_| unreachable!())),
                body: None,
            }),
        ));
        assert_eq!(p.status, Some((MAC, StatusChange::ActiveNetbootOff)));
        assert_eq!(
            StatusChange::ActiveNetbootOff.target(true),
            (MachineStatus::Active, false)
        );
        assert_eq!(p.timeline.map(|t| t.kind), Some("phone_home"));
        assert!(p.lease.is_none() && p.service_error.is_none());
    }

    #[test]
    fn transfers_and_scripts_only_add_to_the_timeline() {
        let kinds = [
            EdgeEventKind::TftpStarted(TftpStarted {
                mac: Some(MAC),
                peer: peer(),
                path: "a".into(),
                blksize: 1468,
                windowsize: 8,
                tsize: true,
            }),
            EdgeEventKind::TftpCompleted(TftpCompleted {
                mac: Some(MAC),
                peer: peer(),
                path: "a".into(),
                blksize: 1468,
                windowsize: 8,
                bytes: 10,
                duration_ms: 1,
                retransmits: 0,
            }),
            EdgeEventKind::HttpCompleted(HttpCompleted {
                mac: Some(MAC),
                peer: peer(),
                path: "a".into(),
                bytes: 10,
                duration_ms: 1,
                status: 200,
            }),
            EdgeEventKind::IpxeScript(IpxeScript {
                mac: MAC,
                peer: peer(),
                profile: Some("default".into()),
                refused: None,
            }),
        ];
        let expected = [
            "transfer_started",
            "transfer_completed",
            "transfer_completed",
            "ipxe_script",
        ];
        for (kind, want) in kinds.into_iter().zip(expected) {
            let p = plan(&ev(1, kind));
            assert_eq!(p.timeline.map(|t| t.kind), Some(want));
            assert_eq!((p.status, p.lease, p.service_error), (None, None, None));
        }
    }

    #[test]
    fn service_errors_and_unknown_kinds() {
        let p = plan(&ev(
            1,
            EdgeEventKind::ServiceError(ServiceError {
                service: "dhcp".into(),
                message: "eth1 is down".into(),
            }),
        ));
        assert_eq!(p.service_error.as_deref(), Some("dhcp: eth1 is down"));
        assert!(p.timeline.is_none());
        let p = plan(&ev(
            2,
            EdgeEventKind::Unknown {
                kind: "FutureThing".into(),
            },
        ));
        assert_eq!(p.kind, "FutureThing");
        assert_eq!(p.detail, json!({"type": "FutureThing"}));
        assert!(p.timeline.is_none() && p.status.is_none() && p.lease.is_none());
    }
}
