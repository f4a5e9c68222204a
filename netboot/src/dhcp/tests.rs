//! Scenario tests of the DHCP core on virtual time.
//!
//! Requests are real encoded frames (`Message::emit` inside `UdpFrame::emit`) or relay datagrams;
//! replies are decoded back with `Message::parse`. The shared fixture is a small site:
//! - `eth0` at 10.0.0.1 serving 10.0.0.0/24, range .100–.199 minus .150–.159;
//! - relayed subnet 10.1.0.0/24 (relay 10.1.0.1, our address 192.0.2.1), range .10–.20;
//! - registered machines: `RESERVED` (10.0.0.50), `DYNAMIC`, `ARM` (dynamic, arm64 profile),
//!   `RELAYED` (10.1.0.5), `INSTALLED` (netboot off).

mod dora;
mod lifecycle;
mod property;
mod pxe;
mod relay;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use ims_proto::MacAddr;

use super::frame::UdpFrame;
use super::wire::{Message, MessageType, code};
use super::{Command, Destination, InterfaceId, Lease, Reply, Server, UnixTime};
use crate::config::{BootProfile, DhcpConfig, Interface, Machine, Subnet};

const T0: UnixTime = UnixTime(1_700_000_000);
const ETH0: InterfaceId = InterfaceId(0);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const RELAY_LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const GIADDR: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const LEASE_TIME: u32 = 3600;
const OFFER_TIMEOUT: u64 = 30;
const QUARANTINE: u64 = 600;

const RESERVED: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x01]);
const DYNAMIC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x02]);
const ARM: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x03]);
const RELAYED: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x04]);
const INSTALLED: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x05]);
const STRANGER: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 0x99]);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn profiles() -> BTreeMap<String, BootProfile> {
    let default = BootProfile {
        name: "default".into(),
        bios: Some("undionly.kpxe".into()),
        uefi_x64: Some("ipxe.efi".into()),
        uefi_arm64: Some("arm64/ipxe.efi".into()),
        http: Some("http://10.0.0.1:8080/ipxe.efi".into()),
        http_arm64: None,
        ipxe_script: Some("http://10.0.0.1:8080/boot.ipxe".into()),
        ..BootProfile::default()
    };
    let arm = BootProfile {
        name: "arm".into(),
        uefi_arm64: Some("grubaa64.efi".into()),
        ..BootProfile::default()
    };
    [("default".to_owned(), default), ("arm".to_owned(), arm)].into()
}

fn machine(mac: MacAddr, ip: Option<&str>, host: &str) -> (MacAddr, Machine) {
    (
        mac,
        Machine {
            mac,
            ip: ip.map(|s| s.parse().unwrap()),
            hostname: host.into(),
            boot_profile: None,
            netboot: true,
        },
    )
}

fn config() -> DhcpConfig {
    let mut machines: BTreeMap<MacAddr, Machine> = [
        machine(RESERVED, Some("10.0.0.50"), "node1"),
        machine(DYNAMIC, None, "node2"),
        machine(ARM, None, "node3"),
        machine(RELAYED, Some("10.1.0.5"), "far1"),
        machine(INSTALLED, None, "done1"),
    ]
    .into();
    if let Some(m) = machines.get_mut(&ARM) {
        m.boot_profile = Some("arm".into());
    }
    if let Some(m) = machines.get_mut(&INSTALLED) {
        m.netboot = false;
    }
    DhcpConfig {
        interfaces: vec![Interface {
            name: "eth0".into(),
            address: SERVER,
        }],
        subnets: vec![
            Subnet {
                cidr: "10.0.0.0/24".parse().unwrap(),
                router: Some(SERVER),
                dns: vec![ip("10.0.0.2"), ip("10.0.0.3")],
                domain: Some("lab.example".into()),
                lease_time: LEASE_TIME,
                range: Some((ip("10.0.0.100"), ip("10.0.0.199"))),
                exclude: vec![(ip("10.0.0.150"), ip("10.0.0.159"))],
                allow_unknown: false,
                boot_profile: None,
                next_server: None,
            },
            Subnet {
                cidr: "10.1.0.0/24".parse().unwrap(),
                router: Some(GIADDR),
                dns: vec![],
                domain: None,
                lease_time: 600,
                range: Some((ip("10.1.0.10"), ip("10.1.0.20"))),
                exclude: vec![],
                allow_unknown: false,
                boot_profile: None,
                next_server: Some(ip("10.1.0.2")),
            },
        ],
        boot_profiles: profiles(),
        machines,
        offer_timeout: OFFER_TIMEOUT,
        decline_quarantine: QUARANTINE,
        unknown_log_per_minute: 5,
    }
}

/// A client request of type `t` from `mac`.
fn msg(mac: MacAddr, t: MessageType) -> Message {
    let mut chaddr = [0u8; 16];
    chaddr[..6].copy_from_slice(&mac.0);
    let mut m = Message::new_reply(
        &Message {
            op: 1,
            htype: 1,
            hlen: 6,
            hops: 0,
            xid: 0x1234_5678,
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            sname: vec![],
            file: vec![],
            options: Default::default(),
        },
        t,
    );
    m.op = 1;
    m
}

/// `m` wrapped in an Ethernet/IPv4/UDP frame from the client to `dst`.
fn frame(m: &Message, dst: Ipv4Addr) -> Vec<u8> {
    let mut payload = Vec::new();
    m.emit(&mut payload);
    let src_mac = m.client_mac().unwrap_or_default();
    let src_ip = if m.ciaddr.is_unspecified() {
        Ipv4Addr::UNSPECIFIED
    } else {
        m.ciaddr
    };
    let mut out = Vec::new();
    UdpFrame {
        src_mac,
        dst_mac: MacAddr::BROADCAST,
        src_ip,
        dst_ip: dst,
        src_port: 68,
        dst_port: 67,
        payload: &payload,
    }
    .emit(&mut out);
    out
}

/// The server plus a virtual clock.
struct Site {
    server: Server,
    now: UnixTime,
}

impl Site {
    fn new() -> Self {
        Self::with(config(), vec![])
    }

    fn with(config: DhcpConfig, leases: Vec<Lease>) -> Self {
        Self {
            server: Server::new(config, leases, T0),
            now: T0,
        }
    }

    fn advance(&mut self, secs: u64) {
        self.now = self.now.plus(secs);
    }

    fn drain(&mut self) -> Vec<Command> {
        std::iter::from_fn(|| self.server.poll_command()).collect()
    }

    /// Broadcast `m` on eth0 and collect the commands.
    fn link(&mut self, m: &Message) -> Vec<Command> {
        self.link_to(m, Ipv4Addr::BROADCAST)
    }

    /// Send `m` on eth0 to IPv4 destination `dst`.
    fn link_to(&mut self, m: &Message, dst: Ipv4Addr) -> Vec<Command> {
        let f = frame(m, dst);
        self.server.handle_frame(self.now, ETH0, &f);
        self.drain()
    }

    /// Deliver `m` as the relay 10.1.0.1 would (giaddr set by the caller or here).
    fn relay(&mut self, m: &Message) -> Vec<Command> {
        let mut m = m.clone();
        if m.giaddr.is_unspecified() {
            m.giaddr = GIADDR;
        }
        let mut payload = Vec::new();
        m.emit(&mut payload);
        self.server.handle_datagram(
            self.now,
            RELAY_LOCAL,
            SocketAddrV4::new(GIADDR, 67),
            &payload,
        );
        self.drain()
    }

    fn timeout(&mut self) -> Vec<Command> {
        self.server.handle_timeout(self.now);
        self.drain()
    }

    fn drops(&self, reason: super::DropReason) -> u64 {
        self.server.stats().drops.get(&reason).copied().unwrap_or(0)
    }

    /// Full DORA on eth0 for `mac`; returns the bound address.
    fn dora(&mut self, mac: MacAddr) -> Ipv4Addr {
        let offer = only_reply(&self.link(&msg(mac, MessageType::Discover))).1;
        let mut req = msg(mac, MessageType::Request);
        req.options.set_ipv4(code::SERVER_ID, SERVER);
        req.options.set_ipv4(code::REQUESTED_IP, offer.yiaddr);
        let (_, ack) = only_reply(&self.link(&req));
        assert_eq!(ack.message_type(), Some(MessageType::Ack));
        ack.yiaddr
    }
}

/// The replies among `cmds`, decoded.
fn replies(cmds: &[Command]) -> Vec<(Destination, Message)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Send(Reply {
                destination,
                message_type,
                payload,
            }) => {
                let m = Message::parse(payload).unwrap();
                assert_eq!(m.message_type(), Some(*message_type));
                Some((*destination, m))
            }
            _ => None,
        })
        .collect()
}

/// The one reply among `cmds`.
fn only_reply(cmds: &[Command]) -> (Destination, Message) {
    let mut r = replies(cmds);
    assert_eq!(r.len(), 1, "expected one reply in {cmds:#?}");
    r.remove(0)
}

/// The persisted leases among `cmds`.
fn persisted(cmds: &[Command]) -> Vec<Lease> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Persist(l) => Some(l.clone()),
            _ => None,
        })
        .collect()
}

/// The broadcast destination on eth0.
fn link_broadcast() -> Destination {
    Destination::Link {
        interface: ETH0,
        mac: MacAddr::BROADCAST,
        ip: Ipv4Addr::BROADCAST,
    }
}
