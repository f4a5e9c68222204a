//! The control plane's side of one uplink session, as pure decisions (no I/O, no clock): what
//! each edge message asks for ([`Session::on_message`]), and what to send when the site's
//! desired state changes ([`Session::sync`]). The driver (`conn.rs`) does the store calls and
//! the writes these decide.
//!
//! Order: the first message must be [`Hello`] (answered by [`Welcome`]); anything else first,
//! a second Hello, or an enrolment request on the uplink is a fatal `BadMessage`. A different
//! major version is a fatal `UnsupportedVersion`. Kinds this build does not know are ignored.
//!
//! Sync: the first state sent is a full [`Snapshot`]; after it, a change is sent as a [`Delta`]
//! from the last state sent when the edge announced [`CAP_DELTA`], else as a full snapshot.
//! A change that leaves the edge's entries as they are (a machine's status, say) sends
//! nothing. A [`ResyncRequest`](ims_proto::ResyncRequest) makes the next sync a full snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;

use ims_proto::{
    CAP_DELTA, ControlMessage, Delta, EdgeEvent, EdgeMessage, ErrorCode, ErrorReply, Heartbeat,
    HeartbeatAck, Hello, ProtocolVersion, Snapshot, Welcome, check_compatible, shared_capabilities,
};
use serde_json::{Value, json};

use crate::store::workers::{self, ServiceStatus};

/// Default heartbeat interval (milliseconds).
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 10_000;
/// Most services kept from one heartbeat.
pub const MAX_SERVICES: usize = 64;
/// Capabilities the control plane announces.
pub const CONTROL_CAPABILITIES: &[&str] = &[CAP_DELTA];

/// What the driver should do about one edge message.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Register the worker, send this Welcome, then the first snapshot ([`Session::sync`]).
    Start(Box<Welcome>),
    /// Record the heartbeat (revocation is checked there), then send the ack.
    Heartbeat {
        /// What to store.
        record: workers::Heartbeat,
        /// What to answer.
        ack: HeartbeatAck,
    },
    /// Record these events, then acknowledge up to the highest id.
    Events(Vec<EdgeEvent>),
    /// Send a full snapshot ([`Session::sync`] after [`Session::resync`] was applied).
    Resync,
    /// Nothing to do (a snapshot ack, or a kind this build does not know: log it).
    Nothing(Option<String>),
    /// Send this error, then close the connection.
    Close(ErrorReply),
}

fn error(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
    ErrorReply {
        code,
        message: message.into(),
        retry_after_ms: None,
    }
}

/// One session's state.
#[derive(Debug, Clone)]
pub struct Session {
    worker_id: String,
    site: String,
    heartbeat_interval_ms: u64,
    hello: Option<Hello>,
    delta: bool,
    sent: Option<Arc<Snapshot>>,
    acked: Option<u64>,
    resync: bool,
}

impl Session {
    /// A session for the worker and site its certificate names.
    #[must_use]
    pub fn new(worker_id: &str, site: &str, heartbeat_interval_ms: u64) -> Self {
        Self {
            worker_id: worker_id.to_owned(),
            site: site.to_owned(),
            heartbeat_interval_ms,
            hello: None,
            delta: false,
            sent: None,
            acked: None,
            resync: false,
        }
    }

    /// The worker id (from the certificate).
    #[must_use]
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// The edge's Hello, once received.
    #[must_use]
    pub fn hello(&self) -> Option<&Hello> {
        self.hello.as_ref()
    }

    /// The generation last sent, if any.
    #[must_use]
    pub fn sent_generation(&self) -> Option<u64> {
        self.sent.as_ref().map(|s| s.generation)
    }

    /// The generation the edge last acknowledged, if any.
    #[must_use]
    pub fn acked_generation(&self) -> Option<u64> {
        self.acked
    }

    /// Decides what `msg` asks for, at `now_ms`.
    pub fn on_message(&mut self, msg: EdgeMessage, now_ms: i64) -> Action {
        match msg {
            EdgeMessage::Hello(hello) => self.on_hello(hello, now_ms),
            EdgeMessage::EnrollRequest(_) => Action::Close(error(
                ErrorCode::BadMessage,
                "an enrolment request on an uplink connection: enrol over a connection with \
                 ALPN ims-enroll/1",
            )),
            _ if self.hello.is_none() => Action::Close(error(
                ErrorCode::BadMessage,
                format!("the first message must be Hello, not {}", msg.kind()),
            )),
            EdgeMessage::Heartbeat(hb) => Action::Heartbeat {
                record: self.heartbeat_record(&hb),
                ack: HeartbeatAck {
                    seq: hb.seq,
                    server_time_ms: now_ms,
                },
            },
            EdgeMessage::Events(batch) => Action::Events(batch.batch),
            EdgeMessage::SnapshotAck(ack) => {
                self.acked = Some(ack.generation);
                Action::Nothing(None)
            }
            EdgeMessage::ResyncRequest(_) => {
                self.resync = true;
                Action::Resync
            }
            EdgeMessage::Unknown { kind } => Action::Nothing(Some(format!(
                "ignoring an edge message of unknown kind `{kind}` (a newer edge?)"
            ))),
        }
    }

    fn on_hello(&mut self, hello: Hello, now_ms: i64) -> Action {
        if self.hello.is_some() {
            return Action::Close(error(
                ErrorCode::BadMessage,
                "a second Hello on one connection",
            ));
        }
        if let Err(e) = check_compatible(hello.version) {
            return Action::Close(error(ErrorCode::UnsupportedVersion, e.to_string()));
        }
        self.delta = hello.capabilities.iter().any(|c| c == CAP_DELTA);
        let capabilities = shared_capabilities(CONTROL_CAPABILITIES, &hello.capabilities);
        self.hello = Some(hello);
        Action::Start(Box::new(Welcome {
            version: ProtocolVersion::CURRENT,
            worker_id: self.worker_id.clone(),
            site: self.site.clone(),
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            server_time_ms: now_ms,
            capabilities,
        }))
    }

    /// The Hello's worker id or site when they differ from the certificate's (the certificate
    /// wins; worth a warning).
    #[must_use]
    pub fn identity_mismatch(&self) -> Option<String> {
        let hello = self.hello.as_ref()?;
        let wrong_worker = hello.worker_id.as_deref().filter(|w| *w != self.worker_id);
        let wrong_site = hello.site.as_deref().filter(|s| *s != self.site);
        if wrong_worker.is_none() && wrong_site.is_none() {
            return None;
        }
        Some(format!(
            "the edge's Hello says worker {:?} at site {:?}, its certificate worker `{}` at \
             site `{}`; the certificate counts",
            hello.worker_id, hello.site, self.worker_id, self.site
        ))
    }

    /// Makes the next [`Session::sync`] send a full snapshot.
    pub fn resync(&mut self) {
        self.resync = true;
    }

    /// What to send now that the site's desired state is `current`: a full snapshot first (and
    /// after a resync request), then a delta (or, without [`CAP_DELTA`], a full snapshot) when
    /// the entries changed, else nothing.
    pub fn sync(&mut self, current: &Arc<Snapshot>) -> Option<ControlMessage> {
        if let Some(sent) = self.sent.as_ref().filter(|_| !self.resync) {
            if current.generation <= sent.generation {
                return None;
            }
            let delta = Delta::between(sent, current);
            if delta.is_empty() {
                return None;
            }
            if self.delta {
                self.sent = Some(current.clone());
                return Some(ControlMessage::Delta(delta));
            }
        }
        self.resync = false;
        self.sent = Some(current.clone());
        Some(ControlMessage::Snapshot((**current).clone()))
    }

    /// What to store for heartbeat `hb`: service states by name (lower-case state names, at
    /// most [`MAX_SERVICES`]), and the metrics plus what the Hello told (host name, version,
    /// addresses, interfaces).
    #[must_use]
    pub fn heartbeat_record(&self, hb: &Heartbeat) -> workers::Heartbeat {
        let services: BTreeMap<String, ServiceStatus> = hb
            .services
            .iter()
            .take(MAX_SERVICES)
            .map(|(name, s)| {
                (
                    name.clone(),
                    ServiceStatus {
                        status: s.state.as_str().to_ascii_lowercase(),
                        last_error: s.last_error.clone(),
                    },
                )
            })
            .collect();
        let m = &hb.metrics;
        let mut metrics = serde_json::Map::new();
        metrics.insert("active_leases".into(), json!(m.active_leases));
        metrics.insert("active_transfers".into(), json!(m.active_transfers));
        metrics.insert("queued_transfers".into(), json!(m.queued_transfers));
        metrics.insert("cpu_percent".into(), json!(m.cpu_percent));
        metrics.insert("memory_bytes".into(), json!(m.memory_bytes));
        metrics.insert("outbox_depth".into(), json!(m.outbox_depth));
        metrics.insert("uptime_s".into(), json!(m.uptime_s));
        metrics.insert("heartbeat_seq".into(), json!(hb.seq));
        if let Some(h) = &self.hello {
            metrics.insert("hostname".into(), json!(h.hostname));
            metrics.insert("software_version".into(), json!(h.software_version));
            metrics.insert("addresses".into(), json!(h.addresses));
            let interfaces: Vec<Value> = h
                .interfaces
                .iter()
                .map(|i| {
                    json!({
                        "name": i.name,
                        "mac": i.mac.map(|m| m.to_string()),
                        "addresses": i.addresses,
                    })
                })
                .collect();
            metrics.insert("interfaces".into(), Value::Array(interfaces));
        }
        workers::Heartbeat { services, metrics }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use ims_proto::{
        EventBatch, MacAddr, MachineEntry, Metrics, ResyncRequest, ServiceState, SnapshotAck,
    };

    use super::*;

    fn hello(caps: &[&str]) -> EdgeMessage {
        EdgeMessage::Hello(Hello {
            software_version: "0.1.0".into(),
            hostname: "edge-1".into(),
            capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
            ..Hello::default()
        })
    }

    fn snap(generation: u64, hosts: &[(u8, &str)]) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            generation,
            machines: hosts
                .iter()
                .map(|(n, h)| MachineEntry {
                    mac: MacAddr([0x52, 0x54, 0, 0, 0, *n]),
                    ip: Some(Ipv4Addr::new(10, 0, 0, *n)),
                    hostname: (*h).to_owned(),
                    boot_profile: None,
                    netboot: true,
                })
                .collect(),
            ..Snapshot::default()
        })
    }

    fn started(caps: &[&str]) -> Session {
        let mut s = Session::new("lab-edge-1", "lab", 10_000);
        assert!(matches!(s.on_message(hello(caps), 5), Action::Start(_)));
        s
    }

    #[test]
    fn hello_first_then_welcome_from_the_certificate() {
        let mut s = Session::new("lab-edge-1", "lab", 2_000);
        let Action::Close(e) = s.on_message(EdgeMessage::Heartbeat(Heartbeat::default()), 1) else {
            panic!("a heartbeat before Hello is refused");
        };
        assert_eq!(e.code, ErrorCode::BadMessage);
        let Action::Start(w) = s.on_message(hello(&[CAP_DELTA, "future"]), 42) else {
            panic!("Hello starts the session");
        };
        assert_eq!(w.worker_id, "lab-edge-1");
        assert_eq!(w.site, "lab");
        assert_eq!(w.heartbeat_interval_ms, 2_000);
        assert_eq!(w.server_time_ms, 42);
        assert_eq!(w.capabilities, vec![CAP_DELTA.to_owned()]);
        let Action::Close(e) = s.on_message(hello(&[]), 43) else {
            panic!("a second Hello is refused");
        };
        assert_eq!(e.code, ErrorCode::BadMessage);
    }

    #[test]
    fn other_majors_and_enrolment_requests_are_refused() {
        let mut s = Session::new("w", "s", 1);
        let old = EdgeMessage::Hello(Hello {
            version: ProtocolVersion::new(9, 0),
            ..Hello::default()
        });
        let Action::Close(e) = s.on_message(old, 1) else {
            panic!("major 9 is refused");
        };
        assert_eq!(e.code, ErrorCode::UnsupportedVersion);
        let mut s = started(&[]);
        let enrol = EdgeMessage::EnrollRequest(ims_proto::EnrollRequest::default());
        assert!(matches!(s.on_message(enrol, 1), Action::Close(_)));
    }

    #[test]
    fn identity_claims_in_hello_are_only_compared() {
        let mut s = Session::new("lab-edge-1", "lab", 1);
        let claim = EdgeMessage::Hello(Hello {
            worker_id: Some("other".into()),
            site: Some("lab".into()),
            ..Hello::default()
        });
        let Action::Start(w) = s.on_message(claim, 1) else {
            panic!()
        };
        assert_eq!(w.worker_id, "lab-edge-1");
        assert!(s.identity_mismatch().unwrap_or_default().contains("other"));
        let s = started(&[]);
        assert_eq!(s.identity_mismatch(), None);
    }

    #[test]
    fn first_a_snapshot_then_deltas_only_for_real_changes() {
        let mut s = started(&[CAP_DELTA]);
        let first = snap(5, &[(1, "a")]);
        assert_eq!(
            s.sync(&first),
            Some(ControlMessage::Snapshot((*first).clone()))
        );
        assert_eq!(s.sent_generation(), Some(5));
        assert_eq!(s.sync(&first), None, "nothing new");
        assert_eq!(s.sync(&snap(6, &[(1, "a")])), None, "same entries");
        assert_eq!(s.sent_generation(), Some(5), "the edge still holds 5");
        let Some(ControlMessage::Delta(d)) = s.sync(&snap(7, &[(1, "a"), (2, "b")])) else {
            panic!("a new machine is a delta");
        };
        assert_eq!((d.base_generation, d.generation), (5, 7));
        assert_eq!(d.upsert_machines.len(), 1);
        assert_eq!(
            s.sync(&snap(6, &[(9, "old")])),
            None,
            "older states are ignored"
        );
        let Some(ControlMessage::Delta(d)) = s.sync(&snap(8, &[(2, "b")])) else {
            panic!("a removal is a delta");
        };
        assert_eq!(d.base_generation, 7);
        assert_eq!(d.remove_machines, vec![MacAddr([0x52, 0x54, 0, 0, 0, 1])]);
        assert!(matches!(
            s.on_message(EdgeMessage::SnapshotAck(SnapshotAck { generation: 8 }), 1),
            Action::Nothing(None)
        ));
        assert_eq!(s.acked_generation(), Some(8));
    }

    #[test]
    fn without_delta_support_or_after_a_resync_a_full_snapshot_goes() {
        let mut s = started(&[]);
        assert!(matches!(
            s.sync(&snap(1, &[])),
            Some(ControlMessage::Snapshot(_))
        ));
        assert!(matches!(
            s.sync(&snap(2, &[(1, "a")])),
            Some(ControlMessage::Snapshot(ref x)) if x.generation == 2
        ));
        let mut s = started(&[CAP_DELTA]);
        let current = snap(3, &[(1, "a")]);
        assert!(s.sync(&current).is_some());
        let resync = EdgeMessage::ResyncRequest(ResyncRequest {
            have_generation: Some(1),
            reason: "delta did not apply".into(),
        });
        assert_eq!(s.on_message(resync, 1), Action::Resync);
        assert_eq!(
            s.sync(&current),
            Some(ControlMessage::Snapshot((*current).clone())),
            "a resync sends the current state whole, even unchanged"
        );
        assert_eq!(s.sync(&current), None);
    }

    #[test]
    fn heartbeats_become_service_states_and_metrics() {
        let mut s = started(&[]);
        let mut hb = Heartbeat {
            seq: 3,
            metrics: Metrics {
                active_leases: 12,
                outbox_depth: 4,
                ..Metrics::default()
            },
            ..Heartbeat::default()
        };
        hb.services.insert(
            "dhcp".into(),
            ims_proto::ServiceStatus {
                state: ServiceState::Error,
                last_error: Some("eth1 down".into()),
                last_error_at_ms: None,
            },
        );
        hb.services.insert(
            "tftp".into(),
            ims_proto::ServiceStatus {
                state: ServiceState::Running,
                ..Default::default()
            },
        );
        let Action::Heartbeat { record, ack } = s.on_message(EdgeMessage::Heartbeat(hb), 77) else {
            panic!()
        };
        assert_eq!(
            ack,
            HeartbeatAck {
                seq: 3,
                server_time_ms: 77
            }
        );
        assert_eq!(record.services["dhcp"].status, "error");
        assert!(record.services["dhcp"].is_error());
        assert_eq!(record.services["tftp"].status, "running");
        assert_eq!(record.metrics["active_leases"], 12);
        assert_eq!(record.metrics["outbox_depth"], 4);
        assert_eq!(record.metrics["hostname"], "edge-1");
        assert_eq!(record.metrics["heartbeat_seq"], 3);
    }

    #[test]
    fn events_and_unknown_kinds() {
        let mut s = started(&[]);
        assert_eq!(
            s.on_message(EdgeMessage::Events(EventBatch::default()), 1),
            Action::Events(vec![])
        );
        let Action::Nothing(Some(note)) = s.on_message(
            EdgeMessage::Unknown {
                kind: "Later".into(),
            },
            1,
        ) else {
            panic!()
        };
        assert!(note.contains("Later"));
    }
}
