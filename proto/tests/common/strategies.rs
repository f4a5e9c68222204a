//! proptest strategies for every message (all fields, every variant but `Unknown`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ims_proto::*;
use proptest::collection::{btree_map, vec};
use proptest::option::of;
use proptest::prelude::*;
use proptest::strategy::Union;

use super::AnyMessage;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", "[a-z0-9._/-]{0,16}"]
}

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        ipv4().prop_map(IpAddr::V4),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ]
}

fn sock() -> impl Strategy<Value = SocketAddr> {
    (ip(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

fn cidr() -> impl Strategy<Value = Ipv4Cidr> {
    (ipv4(), 0u8..=32).prop_map(|(ip, len)| Ipv4Cidr::containing(ip, len).unwrap())
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    (any::<u16>(), any::<u16>()).prop_map(|(a, b)| ProtocolVersion::new(a, b))
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    vec(text(), 0..4)
}

fn service_state() -> impl Strategy<Value = ServiceState> {
    prop_oneof![
        Just(ServiceState::Unknown),
        proptest::sample::select(ServiceState::KNOWN)
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::Unknown),
        proptest::sample::select(ErrorCode::KNOWN)
    ]
}

fn lease_event() -> impl Strategy<Value = LeaseEvent> {
    (
        mac(),
        ipv4(),
        of(text()),
        any::<i64>(),
        of(text()),
        of(cidr()),
    )
        .prop_map(
            |(mac, ip, hostname, lease_end_ms, boot_file, subnet)| LeaseEvent {
                mac,
                ip,
                hostname,
                lease_end_ms,
                boot_file,
                subnet,
            },
        )
}

fn transfer_failed() -> impl Strategy<Value = TransferFailed> {
    (
        of(mac()),
        sock(),
        text(),
        text(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        of(any::<u16>()),
    )
        .prop_map(
            |(mac, peer, path, reason, bytes, duration_ms, retransmits, status)| TransferFailed {
                mac,
                peer,
                path,
                reason,
                bytes,
                duration_ms,
                retransmits,
                status,
            },
        )
}

pub(crate) fn event_kind() -> impl Strategy<Value = EdgeEventKind> {
    Union::new(vec![
        lease_event().prop_map(EdgeEventKind::LeaseGranted).boxed(),
        lease_event().prop_map(EdgeEventKind::LeaseRenewed).boxed(),
        lease_event().prop_map(EdgeEventKind::LeaseReleased).boxed(),
        lease_event().prop_map(EdgeEventKind::LeaseExpired).boxed(),
        (
            of(mac()),
            sock(),
            text(),
            any::<u16>(),
            any::<u16>(),
            any::<bool>(),
        )
            .prop_map(|(mac, peer, path, blksize, windowsize, tsize)| {
                EdgeEventKind::TftpStarted(TftpStarted {
                    mac,
                    peer,
                    path,
                    blksize,
                    windowsize,
                    tsize,
                })
            })
            .boxed(),
        (
            of(mac()),
            sock(),
            text(),
            any::<u16>(),
            any::<u16>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(
                |(mac, peer, path, blksize, windowsize, bytes, duration_ms, retransmits)| {
                    EdgeEventKind::TftpCompleted(TftpCompleted {
                        mac,
                        peer,
                        path,
                        blksize,
                        windowsize,
                        bytes,
                        duration_ms,
                        retransmits,
                    })
                },
            )
            .boxed(),
        transfer_failed()
            .prop_map(EdgeEventKind::TftpFailed)
            .boxed(),
        transfer_failed()
            .prop_map(EdgeEventKind::HttpFailed)
            .boxed(),
        (of(mac()), sock(), text(), of(text()), any::<u64>())
            .prop_map(|(mac, peer, path, range, size)| {
                EdgeEventKind::HttpStarted(HttpStarted {
                    mac,
                    peer,
                    path,
                    range,
                    size,
                })
            })
            .boxed(),
        (
            of(mac()),
            sock(),
            text(),
            any::<u64>(),
            any::<u64>(),
            any::<u16>(),
        )
            .prop_map(|(mac, peer, path, bytes, duration_ms, status)| {
                EdgeEventKind::HttpCompleted(HttpCompleted {
                    mac,
                    peer,
                    path,
                    bytes,
                    duration_ms,
                    status,
                })
            })
            .boxed(),
        (mac(), sock(), of(text()), of(text()))
            .prop_map(|(mac, peer, profile, refused)| {
                EdgeEventKind::IpxeScript(IpxeScript {
                    mac,
                    peer,
                    profile,
                    refused,
                })
            })
            .boxed(),
        (mac(), of(ip()), of(text()))
            .prop_map(|(mac, ip, body)| EdgeEventKind::PhoneHome(PhoneHome { mac, ip, body }))
            .boxed(),
        (text(), text())
            .prop_map(|(service, message)| {
                EdgeEventKind::ServiceError(ServiceError { service, message })
            })
            .boxed(),
    ])
}

fn machine() -> impl Strategy<Value = MachineEntry> {
    (mac(), of(ipv4()), text(), of(text()), any::<bool>()).prop_map(
        |(mac, ip, hostname, boot_profile, netboot)| MachineEntry {
            mac,
            ip,
            hostname,
            boot_profile,
            netboot,
        },
    )
}

fn boot_profile() -> impl Strategy<Value = BootProfileEntry> {
    (
        text(),
        of(text()),
        of(text()),
        of(text()),
        of(text()),
        of(text()),
        of(text()),
        of(text()),
        of(text()),
        of(text()),
    )
        .prop_map(
            |(
                name,
                bios,
                uefi_x64,
                uefi_arm64,
                http,
                http_arm64,
                ipxe_script,
                kernel,
                initrd,
                cmdline,
            )| {
                BootProfileEntry {
                    name,
                    bios,
                    uefi_x64,
                    uefi_arm64,
                    http,
                    http_arm64,
                    ipxe_script,
                    kernel,
                    initrd,
                    cmdline,
                }
            },
        )
}

fn subnet_strategy() -> impl Strategy<Value = SubnetEntry> {
    (
        cidr(),
        of(ipv4()),
        of(ipv4()),
        of(ipv4()),
        vec(ipv4(), 0..3),
        any::<u32>(),
        of(text()),
        of(text()),
        of(ipv4()),
    )
        .prop_map(
            |(
                cidr,
                gateway,
                range_start,
                range_end,
                dns,
                lease_time_s,
                domain,
                boot_profile,
                next_server,
            )| {
                SubnetEntry {
                    cidr,
                    gateway,
                    range_start,
                    range_end,
                    dns,
                    lease_time_s,
                    domain,
                    boot_profile,
                    next_server,
                }
            },
        )
}

pub(crate) fn snapshot() -> impl Strategy<Value = Snapshot> {
    (
        any::<u64>(),
        vec(machine(), 0..6),
        vec(boot_profile(), 0..3),
        vec(subnet_strategy(), 0..3),
    )
        .prop_map(|(generation, machines, boot_profiles, subnets)| Snapshot {
            generation,
            machines,
            boot_profiles,
            subnets,
        })
}

fn status() -> impl Strategy<Value = ServiceStatus> {
    (service_state(), of(text()), of(any::<i64>())).prop_map(
        |(state, last_error, last_error_at_ms)| ServiceStatus {
            state,
            last_error,
            last_error_at_ms,
        },
    )
}

fn metrics() -> impl Strategy<Value = Metrics> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<f64>().prop_filter("NaN never equals itself", |f| !f.is_nan()),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                active_leases,
                active_transfers,
                queued_transfers,
                cpu_percent,
                memory_bytes,
                outbox_depth,
                uptime_s,
            )| {
                Metrics {
                    active_leases,
                    active_transfers,
                    queued_transfers,
                    cpu_percent,
                    memory_bytes,
                    outbox_depth,
                    uptime_s,
                }
            },
        )
}

fn interface() -> impl Strategy<Value = InterfaceInfo> {
    (text(), of(mac()), vec(ip(), 0..3)).prop_map(|(name, mac, addresses)| InterfaceInfo {
        name,
        mac,
        addresses,
    })
}

pub(crate) fn edge_message() -> impl Strategy<Value = EdgeMessage> {
    Union::new(vec![
        (
            version(),
            of(text()),
            of(text()),
            text(),
            text(),
            vec(ip(), 0..3),
            vec(interface(), 0..3),
            texts(),
            of(any::<u64>()),
        )
            .prop_map(
                |(
                    version,
                    worker_id,
                    site,
                    software_version,
                    hostname,
                    addresses,
                    interfaces,
                    capabilities,
                    snapshot_generation,
                )| {
                    EdgeMessage::Hello(Hello {
                        version,
                        worker_id,
                        site,
                        software_version,
                        hostname,
                        addresses,
                        interfaces,
                        capabilities,
                        snapshot_generation,
                    })
                },
            )
            .boxed(),
        (any::<u64>(), btree_map(text(), status(), 0..4), metrics())
            .prop_map(|(seq, services, metrics)| {
                EdgeMessage::Heartbeat(Heartbeat {
                    seq,
                    services,
                    metrics,
                })
            })
            .boxed(),
        vec(
            (any::<u64>(), any::<i64>(), event_kind()).prop_map(|(id, at_ms, kind)| EdgeEvent {
                id,
                at_ms,
                kind,
            }),
            0..5,
        )
        .prop_map(|batch| EdgeMessage::Events(EventBatch { batch }))
        .boxed(),
        any::<u64>()
            .prop_map(|generation| EdgeMessage::SnapshotAck(SnapshotAck { generation }))
            .boxed(),
        (of(any::<u64>()), text())
            .prop_map(|(have_generation, reason)| {
                EdgeMessage::ResyncRequest(ResyncRequest {
                    have_generation,
                    reason,
                })
            })
            .boxed(),
        (text(), vec(any::<u8>(), 0..64), text(), text())
            .prop_map(|(token, csr_der, hostname, software_version)| {
                EdgeMessage::EnrollRequest(EnrollRequest {
                    token,
                    csr_der,
                    hostname,
                    software_version,
                })
            })
            .boxed(),
    ])
}

pub(crate) fn control_message() -> impl Strategy<Value = ControlMessage> {
    Union::new(vec![
        (
            version(),
            text(),
            text(),
            any::<u64>(),
            any::<i64>(),
            texts(),
        )
            .prop_map(
                |(
                    version,
                    worker_id,
                    site,
                    heartbeat_interval_ms,
                    server_time_ms,
                    capabilities,
                )| {
                    ControlMessage::Welcome(Welcome {
                        version,
                        worker_id,
                        site,
                        heartbeat_interval_ms,
                        server_time_ms,
                        capabilities,
                    })
                },
            )
            .boxed(),
        (any::<u64>(), any::<i64>())
            .prop_map(|(seq, server_time_ms)| {
                ControlMessage::HeartbeatAck(HeartbeatAck {
                    seq,
                    server_time_ms,
                })
            })
            .boxed(),
        snapshot().prop_map(ControlMessage::Snapshot).boxed(),
        (
            any::<u64>(),
            any::<u64>(),
            vec(machine(), 0..3),
            vec(mac(), 0..3),
            vec(boot_profile(), 0..2),
            texts(),
            vec(subnet_strategy(), 0..2),
            vec(cidr(), 0..2),
        )
            .prop_map(
                |(
                    generation,
                    base_generation,
                    upsert_machines,
                    remove_machines,
                    upsert_boot_profiles,
                    remove_boot_profiles,
                    upsert_subnets,
                    remove_subnets,
                )| {
                    ControlMessage::Delta(Delta {
                        generation,
                        base_generation,
                        upsert_machines,
                        remove_machines,
                        upsert_boot_profiles,
                        remove_boot_profiles,
                        upsert_subnets,
                        remove_subnets,
                    })
                },
            )
            .boxed(),
        any::<u64>()
            .prop_map(|up_to| ControlMessage::EventsAck(EventsAck { up_to }))
            .boxed(),
        (error_code(), text(), of(any::<u64>()))
            .prop_map(|(code, message, retry_after_ms)| {
                ControlMessage::Error(ErrorReply {
                    code,
                    message,
                    retry_after_ms,
                })
            })
            .boxed(),
        (
            text(),
            text(),
            vec(any::<u8>(), 0..64),
            vec(any::<u8>(), 0..64),
            of(text()),
        )
            .prop_map(
                |(worker_id, site, certificate_der, ca_der, control_endpoint)| {
                    ControlMessage::EnrollResponse(EnrollResponse {
                        worker_id,
                        site,
                        certificate_der,
                        ca_der,
                        control_endpoint,
                    })
                },
            )
            .boxed(),
    ])
}

pub(crate) fn any_message() -> impl Strategy<Value = AnyMessage> {
    prop_oneof![
        edge_message().prop_map(AnyMessage::Edge),
        control_message().prop_map(AnyMessage::Control),
    ]
}
