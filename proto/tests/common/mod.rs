//! Shared by the integration tests: one sample of every message and event kind (the golden
//! fixtures' expected values) and, in [`strategies`], proptest strategies for every message.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ims_proto::*;

pub(crate) mod strategies;

/// A message of either direction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AnyMessage {
    Edge(EdgeMessage),
    Control(ControlMessage),
}

impl AnyMessage {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Self::Edge(m) => encode_message(m).unwrap(),
            Self::Control(m) => encode_message(m).unwrap(),
        }
    }

    pub(crate) fn frame(&self) -> Vec<u8> {
        match self {
            Self::Edge(m) => encode_frame(m).unwrap(),
            Self::Control(m) => encode_frame(m).unwrap(),
        }
    }

    /// Decode `body` as a message of the same direction as `self`.
    pub(crate) fn decode_like(&self, body: &[u8]) -> Result<Self, ProtoError> {
        match self {
            Self::Edge(_) => decode_message(body).map(Self::Edge),
            Self::Control(_) => decode_message(body).map(Self::Control),
        }
    }

    pub(crate) fn kind(&self) -> &str {
        match self {
            Self::Edge(m) => m.kind(),
            Self::Control(m) => m.kind(),
        }
    }
}

pub(crate) const MAC_A: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
pub(crate) const MAC_B: MacAddr = MacAddr([0x02, 0x00, 0x00, 0xab, 0xcd, 0xef]);
/// 2026-01-02T03:04:05.678Z
pub(crate) const T0_MS: i64 = 1_767_323_045_678;

fn peer() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 51)), 2070)
}

fn subnet() -> Ipv4Cidr {
    "10.0.0.0/24".parse().unwrap()
}

fn lease() -> LeaseEvent {
    LeaseEvent {
        mac: MAC_A,
        ip: Ipv4Addr::new(10, 0, 0, 51),
        hostname: Some("node-01".into()),
        lease_end_ms: T0_MS + 3_600_000,
        boot_file: Some("ipxe.efi".into()),
        subnet: Some(subnet()),
    }
}

/// One event of every kind, named for fixture files: those of protocol 1.0 (which also make up
/// the `edge-events` batch fixture, frozen since), then [`sample_event_kinds_since_1_0`].
pub(crate) fn sample_event_kinds() -> Vec<(&'static str, EdgeEventKind)> {
    let mut kinds = sample_event_kinds_1_0();
    kinds.extend(sample_event_kinds_since_1_0());
    kinds
}

/// Event kinds added after protocol 1.0: each has a single-event fixture of its own, and none
/// is in the `edge-events` batch (its fixture must keep its bytes).
pub(crate) fn sample_event_kinds_since_1_0() -> Vec<(&'static str, EdgeEventKind)> {
    vec![(
        "http-started",
        EdgeEventKind::HttpStarted(HttpStarted {
            mac: Some(MAC_A),
            peer: peer(),
            path: "images/initrd.img".into(),
            range: Some("bytes=65536-".into()),
            size: 52_428_800,
        }),
    )]
}

/// One event of every kind of protocol 1.0.
pub(crate) fn sample_event_kinds_1_0() -> Vec<(&'static str, EdgeEventKind)> {
    vec![
        ("lease-granted", EdgeEventKind::LeaseGranted(lease())),
        ("lease-renewed", EdgeEventKind::LeaseRenewed(lease())),
        (
            "lease-released",
            EdgeEventKind::LeaseReleased(LeaseEvent {
                hostname: None,
                boot_file: None,
                subnet: None,
                ..lease()
            }),
        ),
        ("lease-expired", EdgeEventKind::LeaseExpired(lease())),
        (
            "tftp-started",
            EdgeEventKind::TftpStarted(TftpStarted {
                mac: Some(MAC_A),
                peer: peer(),
                path: "ipxe.efi".into(),
                blksize: 1468,
                windowsize: 8,
                tsize: true,
            }),
        ),
        (
            "tftp-completed",
            EdgeEventKind::TftpCompleted(TftpCompleted {
                mac: Some(MAC_A),
                peer: peer(),
                path: "ipxe.efi".into(),
                blksize: 1468,
                windowsize: 8,
                bytes: 1_048_576,
                duration_ms: 412,
                retransmits: 3,
            }),
        ),
        (
            "tftp-failed",
            EdgeEventKind::TftpFailed(TransferFailed {
                mac: None,
                peer: peer(),
                path: "missing.efi".into(),
                reason: "not_found".into(),
                bytes: 0,
                duration_ms: 1,
                retransmits: 0,
                status: None,
            }),
        ),
        (
            "http-completed",
            EdgeEventKind::HttpCompleted(HttpCompleted {
                mac: Some(MAC_A),
                peer: SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 40_000),
                path: "images/vmlinuz".into(),
                bytes: 12_345_678,
                duration_ms: 950,
                status: 200,
            }),
        ),
        (
            "http-failed",
            EdgeEventKind::HttpFailed(TransferFailed {
                mac: Some(MAC_A),
                peer: peer(),
                path: "images/initrd.img".into(),
                reason: "client_closed".into(),
                bytes: 65_536,
                duration_ms: 20,
                retransmits: 0,
                status: Some(200),
            }),
        ),
        (
            "ipxe-script",
            EdgeEventKind::IpxeScript(IpxeScript {
                mac: MAC_A,
                peer: peer(),
                profile: Some("ubuntu".into()),
                refused: None,
            }),
        ),
        (
            "phone-home",
            EdgeEventKind::PhoneHome(PhoneHome {
                mac: MAC_A,
                ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 51))),
                body: Some("{\"status\":\"installed\"}".into()),
            }),
        ),
        (
            "service-error",
            EdgeEventKind::ServiceError(ServiceError {
                service: SERVICE_TFTP.into(),
                message: "bind 0.0.0.0:69: address in use".into(),
            }),
        ),
    ]
}

fn machines() -> Vec<MachineEntry> {
    vec![
        MachineEntry {
            mac: MAC_B,
            ip: None,
            hostname: "node-02".into(),
            boot_profile: None,
            netboot: false,
        },
        MachineEntry {
            mac: MAC_A,
            ip: Some(Ipv4Addr::new(10, 0, 0, 51)),
            hostname: "node-01".into(),
            boot_profile: Some("ubuntu".into()),
            netboot: true,
        },
    ]
}

fn profile() -> BootProfileEntry {
    BootProfileEntry {
        name: "ubuntu".into(),
        bios: Some("undionly.kpxe".into()),
        uefi_x64: Some("ipxe.efi".into()),
        uefi_arm64: Some("ipxe-arm64.efi".into()),
        http: Some("http://10.0.0.1:8080/ipxe.efi".into()),
        http_arm64: None,
        ipxe_script: None,
        kernel: Some("images/vmlinuz".into()),
        initrd: Some("images/initrd.img".into()),
        cmdline: Some("ip=dhcp console=ttyS0".into()),
    }
}

fn subnet_entry() -> SubnetEntry {
    SubnetEntry {
        cidr: subnet(),
        gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
        range_start: Some(Ipv4Addr::new(10, 0, 0, 100)),
        range_end: Some(Ipv4Addr::new(10, 0, 0, 199)),
        dns: vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(9, 9, 9, 9)],
        lease_time_s: 3600,
        domain: Some("lab.example".into()),
        boot_profile: Some("ubuntu".into()),
        next_server: None,
    }
}

/// One message of every kind, named for fixture files (`<name>.cbor`). Deterministic.
pub(crate) fn samples() -> Vec<(String, AnyMessage)> {
    use AnyMessage::{Control, Edge};
    let mut out: Vec<(String, AnyMessage)> = vec![
        (
            "edge-hello".into(),
            Edge(EdgeMessage::Hello(Hello {
                version: ProtocolVersion::new(1, 0),
                worker_id: Some("w-7f3a".into()),
                site: Some("lab-1".into()),
                software_version: "0.1.0".into(),
                hostname: "edge-1".into(),
                addresses: vec![
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                    IpAddr::V6("fd00::1".parse().unwrap()),
                ],
                interfaces: vec![InterfaceInfo {
                    name: "eth1".into(),
                    mac: Some(MAC_B),
                    addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))],
                }],
                capabilities: vec![CAP_DELTA.into()],
                snapshot_generation: Some(41),
            })),
        ),
        (
            "edge-hello-minimal".into(),
            Edge(EdgeMessage::Hello(Hello {
                version: ProtocolVersion::new(1, 0),
                worker_id: None,
                site: None,
                software_version: "0.1.0".into(),
                hostname: "edge-2".into(),
                addresses: vec![],
                interfaces: vec![],
                capabilities: vec![],
                snapshot_generation: None,
            })),
        ),
        (
            "edge-heartbeat".into(),
            Edge(EdgeMessage::Heartbeat(Heartbeat {
                seq: 17,
                services: BTreeMap::from([
                    (
                        SERVICE_DHCP.to_owned(),
                        ServiceStatus {
                            state: ServiceState::Running,
                            last_error: None,
                            last_error_at_ms: None,
                        },
                    ),
                    (
                        SERVICE_HTTP.to_owned(),
                        ServiceStatus {
                            state: ServiceState::Disabled,
                            last_error: None,
                            last_error_at_ms: None,
                        },
                    ),
                    (
                        SERVICE_TFTP.to_owned(),
                        ServiceStatus {
                            state: ServiceState::Error,
                            last_error: Some("bind 0.0.0.0:69: address in use".into()),
                            last_error_at_ms: Some(T0_MS),
                        },
                    ),
                ]),
                metrics: Metrics {
                    active_leases: 120,
                    active_transfers: 8,
                    queued_transfers: 2,
                    cpu_percent: 12.5,
                    memory_bytes: 48 * 1024 * 1024,
                    outbox_depth: 3,
                    uptime_s: 86_400,
                },
            })),
        ),
        (
            "edge-events".into(),
            Edge(EdgeMessage::Events(EventBatch {
                batch: sample_event_kinds_1_0()
                    .into_iter()
                    .enumerate()
                    .map(|(i, (_, kind))| EdgeEvent {
                        id: 100 + i as u64,
                        at_ms: T0_MS + i as i64 * 1000,
                        kind,
                    })
                    .collect(),
            })),
        ),
        (
            "edge-snapshot-ack".into(),
            Edge(EdgeMessage::SnapshotAck(SnapshotAck { generation: 42 })),
        ),
        (
            "edge-resync-request".into(),
            Edge(EdgeMessage::ResyncRequest(ResyncRequest {
                have_generation: Some(40),
                reason: "delta base 41 does not match generation 40".into(),
            })),
        ),
        (
            "edge-enroll-request".into(),
            Edge(EdgeMessage::EnrollRequest(EnrollRequest {
                token: "ims1.lab-1.3q2r7t.0c9f1e".into(),
                csr_der: (0u8..=255).collect(),
                hostname: "edge-1".into(),
                software_version: "0.1.0".into(),
            })),
        ),
        (
            "control-welcome".into(),
            Control(ControlMessage::Welcome(Welcome {
                version: ProtocolVersion::new(1, 0),
                worker_id: "w-7f3a".into(),
                site: "lab-1".into(),
                heartbeat_interval_ms: 10_000,
                server_time_ms: T0_MS,
                capabilities: vec![CAP_DELTA.into()],
            })),
        ),
        (
            "control-heartbeat-ack".into(),
            Control(ControlMessage::HeartbeatAck(HeartbeatAck {
                seq: 17,
                server_time_ms: T0_MS + 5,
            })),
        ),
        (
            "control-snapshot".into(),
            Control(ControlMessage::Snapshot(Snapshot {
                generation: 42,
                machines: machines(),
                boot_profiles: vec![profile()],
                subnets: vec![subnet_entry()],
            })),
        ),
        (
            "control-delta".into(),
            Control(ControlMessage::Delta(Delta {
                generation: 43,
                base_generation: 42,
                upsert_machines: vec![machines()[1].clone()],
                remove_machines: vec![MAC_B],
                upsert_boot_profiles: vec![BootProfileEntry {
                    name: "debian".into(),
                    kernel: Some("debian/linux".into()),
                    ..Default::default()
                }],
                remove_boot_profiles: vec!["old".into()],
                upsert_subnets: vec![subnet_entry()],
                remove_subnets: vec!["10.0.1.0/24".parse().unwrap()],
            })),
        ),
        (
            "control-events-ack".into(),
            Control(ControlMessage::EventsAck(EventsAck { up_to: 111 })),
        ),
        (
            "control-error".into(),
            Control(ControlMessage::Error(ErrorReply {
                code: ErrorCode::InvalidToken,
                message: "join token expired; create a new one with ims-control join-token".into(),
                retry_after_ms: None,
            })),
        ),
        (
            "control-enroll-response".into(),
            Control(ControlMessage::EnrollResponse(EnrollResponse {
                worker_id: "w-7f3a".into(),
                site: "lab-1".into(),
                certificate_der: vec![0x30, 0x82, 0x01, 0x0a, 0xde, 0xad],
                ca_der: vec![0x30, 0x82, 0x01, 0x0b, 0xbe, 0xef],
                control_endpoint: Some("control.example:7443".into()),
            })),
        ),
    ];
    for (name, kind) in sample_event_kinds() {
        out.push((
            format!("edge-event-{name}"),
            Edge(EdgeMessage::Events(EventBatch {
                batch: vec![EdgeEvent {
                    id: 7,
                    at_ms: T0_MS,
                    kind,
                }],
            })),
        ));
    }
    out
}
