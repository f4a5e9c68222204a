//! From the edge's event log to the wire: [`Event`] (what `store::events` keeps) to
//! [`EdgeEvent`] (what the control plane records).
//!
//! The event's sequence number becomes its id (the idempotency key), its time UNIX
//! milliseconds. Transfers are recorded by client address only; the machine is named by
//! looking up which MAC holds that address (the caller's `mac_of`, the lease store). Kinds a
//! newer `netbootd` wrote and this build cannot read ([`EventKind::Unknown`]) are left out:
//! they carry no data to send.

use std::net::{IpAddr, SocketAddr};

use ims_proto::{
    EdgeEvent, EdgeEventKind, HttpCompleted, HttpStarted, Ipv4Cidr, IpxeScript, LeaseEvent,
    MacAddr, PhoneHome, ServiceError, TftpCompleted, TftpStarted, TransferFailed,
};

use crate::dhcp::UnixTime;
use crate::store::events::{Event, EventKind, LeaseRecord};

/// UNIX seconds as UNIX milliseconds.
fn millis(t: UnixTime) -> i64 {
    i64::try_from(t.0.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The wire form of a stored event, or `None` for an [`EventKind::Unknown`]. `mac_of` names
/// the machine holding a client address, when there is one.
pub fn to_edge_event(
    event: &Event,
    mac_of: &mut dyn FnMut(IpAddr) -> Option<MacAddr>,
) -> Option<EdgeEvent> {
    let mut mac_of_peer = |peer: &SocketAddr| mac_of(peer.ip());
    let kind = match &event.kind {
        EventKind::PhoneHome { mac, ip, body } => EdgeEventKind::PhoneHome(PhoneHome {
            mac: *mac,
            ip: *ip,
            body: body.clone(),
        }),
        EventKind::IpxeScript {
            mac,
            peer,
            profile,
            refused,
        } => EdgeEventKind::IpxeScript(IpxeScript {
            mac: *mac,
            peer: *peer,
            profile: profile.clone(),
            refused: refused.clone(),
        }),
        EventKind::TftpStarted {
            peer,
            path,
            blksize,
            windowsize,
            tsize,
        } => EdgeEventKind::TftpStarted(TftpStarted {
            mac: mac_of_peer(peer),
            peer: *peer,
            path: path.clone(),
            blksize: *blksize,
            windowsize: *windowsize,
            tsize: *tsize,
        }),
        EventKind::TftpCompleted {
            peer,
            path,
            bytes,
            duration_ms,
            retransmits,
            blksize,
            windowsize,
        } => EdgeEventKind::TftpCompleted(TftpCompleted {
            mac: mac_of_peer(peer),
            peer: *peer,
            path: path.clone(),
            blksize: *blksize,
            windowsize: *windowsize,
            bytes: *bytes,
            duration_ms: *duration_ms,
            retransmits: *retransmits,
        }),
        EventKind::TftpFailed { peer, path, reason } => EdgeEventKind::TftpFailed(TransferFailed {
            mac: mac_of_peer(peer),
            peer: *peer,
            path: path.clone(),
            reason: reason.clone(),
            bytes: 0,
            duration_ms: 0,
            retransmits: 0,
            status: None,
        }),
        EventKind::HttpStarted {
            peer,
            path,
            range,
            size,
        } => EdgeEventKind::HttpStarted(HttpStarted {
            mac: mac_of_peer(peer),
            peer: *peer,
            path: path.clone(),
            range: range.clone(),
            size: *size,
        }),
        EventKind::HttpFailed {
            peer,
            path,
            reason,
            bytes,
            duration_ms,
            status,
        } => EdgeEventKind::HttpFailed(TransferFailed {
            mac: mac_of_peer(peer),
            peer: *peer,
            path: path.clone(),
            reason: reason.clone(),
            bytes: *bytes,
            duration_ms: *duration_ms,
            retransmits: 0,
            status: Some(*status),
        }),
        EventKind::HttpCompleted {
            peer,
            path,
            bytes,
            duration_ms,
            status,
        } => EdgeEventKind::HttpCompleted(HttpCompleted {
            mac: mac_of_peer(peer),
            peer: *peer,
            path: path.clone(),
            bytes: *bytes,
            duration_ms: *duration_ms,
            status: *status,
        }),
        EventKind::LeaseGranted(lease) => EdgeEventKind::LeaseGranted(lease_event(lease)),
        EventKind::LeaseRenewed(lease) => EdgeEventKind::LeaseRenewed(lease_event(lease)),
        EventKind::LeaseReleased(lease) => EdgeEventKind::LeaseReleased(lease_event(lease)),
        EventKind::LeaseExpired(lease) => EdgeEventKind::LeaseExpired(lease_event(lease)),
        EventKind::ServiceError { service, message } => EdgeEventKind::ServiceError(ServiceError {
            service: service.clone(),
            message: message.clone(),
        }),
        EventKind::Unknown { .. } => return None,
    };
    Some(EdgeEvent {
        id: event.seq,
        at_ms: millis(event.at),
        kind,
    })
}

fn lease_event(lease: &LeaseRecord) -> LeaseEvent {
    LeaseEvent {
        mac: lease.mac,
        ip: lease.ip,
        hostname: lease.hostname.clone(),
        lease_end_ms: millis(lease.ends),
        boot_file: lease.boot_file.clone(),
        subnet: lease
            .subnet
            .and_then(|net| Ipv4Cidr::new(net.network(), net.prefix_len()).ok()),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn mac(last: u8) -> MacAddr {
        MacAddr([0x52, 0x54, 0, 0, 0, last])
    }

    fn event(seq: u64, kind: EventKind) -> Event {
        Event {
            seq,
            at: UnixTime(1_700_000_000),
            kind,
        }
    }

    #[test]
    fn every_kind_maps_and_unknown_is_left_out() {
        let peer: SocketAddr = "10.77.0.11:2000".parse().unwrap();
        let lease = LeaseRecord {
            mac: mac(1),
            ip: Ipv4Addr::new(10, 77, 0, 11),
            hostname: Some("node-1".into()),
            ends: UnixTime(1_700_003_600),
            boot_file: Some("ipxe.efi".into()),
            subnet: Some("10.77.0.0/24".parse().unwrap()),
        };
        let lookups = std::cell::Cell::new(0);
        let mut mac_of = |ip: IpAddr| {
            lookups.set(lookups.get() + 1);
            (ip == IpAddr::V4(Ipv4Addr::new(10, 77, 0, 11))).then_some(mac(1))
        };
        let granted = to_edge_event(
            &event(7, EventKind::LeaseGranted(lease.clone())),
            &mut mac_of,
        )
        .unwrap();
        assert_eq!(granted.id, 7);
        assert_eq!(granted.at_ms, 1_700_000_000_000);
        match &granted.kind {
            EdgeEventKind::LeaseGranted(e) => {
                assert_eq!(e.mac, mac(1));
                assert_eq!(e.lease_end_ms, 1_700_003_600_000);
                assert_eq!(
                    e.subnet.map(|s| s.to_string()).as_deref(),
                    Some("10.77.0.0/24")
                );
                assert_eq!(e.boot_file.as_deref(), Some("ipxe.efi"));
            }
            other => panic!("{other:?}"),
        }
        let tftp = to_edge_event(
            &event(
                8,
                EventKind::TftpFailed {
                    peer,
                    path: "ipxe.efi".into(),
                    reason: "timeout".into(),
                },
            ),
            &mut mac_of,
        )
        .unwrap();
        assert_eq!(
            tftp.kind.mac(),
            Some(mac(1)),
            "the machine is found by address"
        );
        let stranger = to_edge_event(
            &event(
                9,
                EventKind::HttpCompleted {
                    peer: "10.77.0.99:80".parse().unwrap(),
                    path: "vmlinuz".into(),
                    bytes: 10,
                    duration_ms: 1,
                    status: 200,
                },
            ),
            &mut mac_of,
        )
        .unwrap();
        assert_eq!(stranger.kind.mac(), None);
        let names: Vec<String> = [
            EventKind::LeaseRenewed(lease.clone()),
            EventKind::LeaseReleased(lease.clone()),
            EventKind::LeaseExpired(lease),
            EventKind::ServiceError {
                service: "dhcp".into(),
                message: "disk full".into(),
            },
            EventKind::PhoneHome {
                mac: mac(2),
                ip: None,
                body: None,
            },
        ]
        .into_iter()
        .map(|k| {
            to_edge_event(&event(1, k), &mut mac_of)
                .unwrap()
                .kind
                .kind()
                .to_owned()
        })
        .collect();
        assert_eq!(
            names,
            [
                "LeaseRenewed",
                "LeaseReleased",
                "LeaseExpired",
                "ServiceError",
                "PhoneHome"
            ]
        );
        assert_eq!(
            to_edge_event(
                &event(
                    10,
                    EventKind::Unknown {
                        name: "Rebooted".into()
                    }
                ),
                &mut mac_of
            ),
            None
        );
        assert_eq!(lookups.get(), 2, "only transfers need a lookup");
    }

    #[test]
    fn http_started_and_failed_map_with_the_machine_found_by_address() {
        let mut mac_of =
            |ip: IpAddr| (ip == IpAddr::V4(Ipv4Addr::new(10, 77, 0, 11))).then_some(mac(1));
        let peer: SocketAddr = "10.77.0.11:40000".parse().unwrap();
        let started = to_edge_event(
            &event(
                21,
                EventKind::HttpStarted {
                    peer,
                    path: "images/initrd.img".into(),
                    range: Some("bytes=65536-".into()),
                    size: 52_428_800,
                },
            ),
            &mut mac_of,
        )
        .unwrap();
        assert_eq!(started.id, 21);
        assert_eq!(started.at_ms, 1_700_000_000_000);
        assert_eq!(
            started.kind,
            EdgeEventKind::HttpStarted(HttpStarted {
                mac: Some(mac(1)),
                peer,
                path: "images/initrd.img".into(),
                range: Some("bytes=65536-".into()),
                size: 52_428_800,
            })
        );
        let failed = to_edge_event(
            &event(
                22,
                EventKind::HttpFailed {
                    peer,
                    path: "images/initrd.img".into(),
                    reason: "client_closed".into(),
                    bytes: 131_072,
                    duration_ms: 40,
                    status: 206,
                },
            ),
            &mut mac_of,
        )
        .unwrap();
        assert_eq!(
            failed.kind,
            EdgeEventKind::HttpFailed(TransferFailed {
                mac: Some(mac(1)),
                peer,
                path: "images/initrd.img".into(),
                reason: "client_closed".into(),
                bytes: 131_072,
                duration_ms: 40,
                retransmits: 0,
                status: Some(206),
            })
        );
        // A client no lease names: the event still goes, without a machine.
        let stranger = to_edge_event(
            &event(
                23,
                EventKind::HttpStarted {
                    peer: "10.77.0.99:40000".parse().unwrap(),
                    path: "vmlinuz".into(),
                    range: None,
                    size: 10,
                },
            ),
            &mut mac_of,
        )
        .unwrap();
        assert_eq!(stranger.kind.kind(), "HttpStarted");
        assert_eq!(stranger.kind.mac(), None);
    }
}
