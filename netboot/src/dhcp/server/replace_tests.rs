//! [`Server::replace_config`]: machines pushed at run time are served, leases and counters stay.

use std::net::{Ipv4Addr, SocketAddrV4};

use ims_proto::MacAddr;

use super::*;
use crate::config::{Interface, Machine, Subnet};
use crate::dhcp::Destination;

const GIADDR: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const T0: UnixTime = UnixTime(1_700_000_000);

pub(super) fn config(machines: &[(MacAddr, Option<Ipv4Addr>)]) -> DhcpConfig {
    DhcpConfig {
        interfaces: vec![Interface {
            name: "eth0".into(),
            address: Ipv4Addr::new(10, 0, 0, 1),
        }],
        subnets: vec![Subnet {
            cidr: "10.1.0.0/24".parse().expect("net"),
            router: Some(GIADDR),
            dns: vec![],
            domain: None,
            lease_time: 600,
            range: Some((Ipv4Addr::new(10, 1, 0, 10), Ipv4Addr::new(10, 1, 0, 20))),
            exclude: vec![],
            allow_unknown: false,
            boot_profile: None,
            next_server: None,
        }],
        boot_profiles: BTreeMap::new(),
        machines: machines
            .iter()
            .map(|&(mac, ip)| {
                (
                    mac,
                    Machine {
                        mac,
                        ip,
                        hostname: "node".into(),
                        boot_profile: None,
                        netboot: false,
                    },
                )
            })
            .collect(),
        offer_timeout: 60,
        decline_quarantine: 600,
        unknown_log_per_minute: 0,
    }
}

/// A relayed DISCOVER from `mac`; returns the offered address, if any.
fn discover(server: &mut Server, mac: MacAddr) -> Option<Ipv4Addr> {
    let mut chaddr = [0u8; 16];
    chaddr[..6].copy_from_slice(&mac.0);
    let template = Message {
        op: 1,
        htype: 1,
        hlen: 6,
        hops: 1,
        xid: 7,
        secs: 0,
        flags: 0,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        yiaddr: Ipv4Addr::UNSPECIFIED,
        siaddr: Ipv4Addr::UNSPECIFIED,
        giaddr: GIADDR,
        chaddr,
        sname: vec![],
        file: vec![],
        options: Default::default(),
    };
    let mut m = Message::new_reply(&template, MessageType::Discover);
    m.op = 1;
    m.giaddr = GIADDR;
    let mut payload = Vec::new();
    m.emit(&mut payload);
    server.handle_datagram(T0, LOCAL, SocketAddrV4::new(GIADDR, 67), &payload);
    let mut offered = None;
    while let Some(command) = server.poll_command() {
        if let Command::Send(reply) = command {
            assert!(matches!(reply.destination, Destination::Relay(_)));
            offered = Message::parse(&reply.payload).ok().map(|r| r.yiaddr);
        }
    }
    offered
}

#[test]
fn new_machines_are_served_and_leases_and_counters_survive() {
    let old = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
    let new = MacAddr([0x52, 0x54, 0, 0, 0, 2]);
    let lease = Lease {
        ip: Ipv4Addr::new(10, 1, 0, 10),
        mac: old,
        state: LeaseState::Bound,
        starts: T0,
        ends: T0.plus(600),
        hostname: None,
        client_id: None,
        uuid: None,
        arch: None,
        boot_file: None,
        next_server: None,
    };
    let mut server = Server::new(config(&[(old, None)]), vec![lease.clone()], T0);
    assert_eq!(discover(&mut server, new), None, "not registered yet");
    let unknown = server
        .stats()
        .drops
        .get(&DropReason::UnknownClient)
        .copied();
    assert_eq!(unknown, Some(1));

    let reserved = Ipv4Addr::new(10, 1, 0, 5);
    let mut replacement = config(&[(old, None), (new, Some(reserved))]);
    replacement.interfaces.clear(); // ignored: interfaces are fixed at start
    server.replace_config(replacement, T0);
    assert_eq!(server.interface_name(InterfaceId(0)), Some("eth0"));
    assert_eq!(discover(&mut server, new), Some(reserved));
    // The old machine keeps its lease across the swap.
    assert_eq!(server.leases().cloned().collect::<Vec<_>>(), vec![lease]);
    assert_eq!(
        discover(&mut server, old),
        Some(Ipv4Addr::new(10, 1, 0, 10))
    );
    assert_eq!(
        server
            .stats()
            .drops
            .get(&DropReason::UnknownClient)
            .copied(),
        Some(1),
        "counters are kept"
    );
    // Removed from the configuration: no longer answered.
    server.replace_config(config(&[(old, None)]), T0);
    assert_eq!(discover(&mut server, new), None);
    assert_eq!(server.config().machines.len(), 1);
}
