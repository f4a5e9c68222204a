//! A sequence of inputs to one DHCP `Server` on advancing virtual time.
//!
//! The fuzz input is read as steps: each advances the clock, then feeds the server a DHCP
//! message assembled from fuzzer-chosen fields (mostly plausible: known MACs, addresses from the
//! configured subnets) as a raw frame or a relayed datagram, raw fuzzer bytes as a frame or
//! datagram, or a timeout. After each step every command is drained and checked against a model
//! of the lease store built only from `Persist`/`Remove` commands:
//! - every reply decodes, is a BOOTREPLY of the announced type and is addressed sensibly;
//! - persist before promise: an ACK carrying an address is backed by a `Bound` lease for that
//!   client, persisted no later than the ACK;
//! - the server's count of bound leases equals the store model's.
#![no_main]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::OnceLock;

use ims_netboot::config::{Config, DhcpConfig};
use ims_netboot::dhcp::frame::UdpFrame;
use ims_netboot::dhcp::wire::{Message, MessageType, Options, code};
use ims_netboot::dhcp::{Command, Destination, InterfaceId, Lease, LeaseState, Server, UnixTime};
use ims_proto::MacAddr;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// One link subnet with a tiny range (exhaustion is reachable) and registered machines; one
/// relayed subnet in discovery mode.
const CONFIG: &str = r#"
[dhcp]
offer_timeout = "10s"
decline_quarantine = "30s"
unknown_log_per_minute = 2

[[interface]]
name = "eth0"
address = "10.77.0.1"

[[subnet]]
cidr = "10.77.0.0/24"
router = "10.77.0.1"
dns = ["10.77.0.1"]
domain = "fuzz.example"
lease_time = "60s"
range = ["10.77.0.100", "10.77.0.103"]
exclude = ["10.77.0.102"]

[[subnet]]
cidr = "10.78.0.0/24"
router = "10.78.0.1"
lease_time = "90s"
range = ["10.78.0.10", "10.78.0.12"]
allow_unknown = true
next_server = "10.77.0.1"

[[boot_profile]]
name = "default"
bios = "undionly.kpxe"
uefi_x64 = "snponly.efi"
uefi_arm64 = "ipxe-arm64.efi"
http = "http://10.77.0.1/ipxe.efi"
ipxe_script = "tftp://10.77.0.1/boot.ipxe"

[[machine]]
mac = "52:54:00:00:00:01"
ip = "10.77.0.10"
hostname = "reserved"

[[machine]]
mac = "52:54:00:00:00:02"
hostname = "dynamic"

[[machine]]
mac = "52:54:00:00:00:03"
hostname = "installed"
netboot = false

[[machine]]
mac = "52:54:00:77:00:10"
hostname = "firmware"

[[machine]]
mac = "02:77:00:00:00:02"
ip = "10.77.0.11"
hostname = "cli"

[[machine]]
mac = "52:54:00:00:01:01"
ip = "10.78.0.20"
hostname = "relayed"
"#;

const MACS: [[u8; 6]; 6] = [
    [0x52, 0x54, 0, 0, 0, 1],
    [0x52, 0x54, 0, 0, 0, 2],
    [0x52, 0x54, 0, 0, 0, 3],
    [0x52, 0x54, 0, 0, 1, 1],
    [0x52, 0x54, 0, 0, 9, 9], // unknown
    [0x02, 0, 0, 0, 0, 5],    // unknown
];

const ADDRESSES: [[u8; 4]; 14] = [
    [0, 0, 0, 0],
    [10, 77, 0, 1],
    [10, 77, 0, 10],
    [10, 77, 0, 100],
    [10, 77, 0, 101],
    [10, 77, 0, 102],
    [10, 77, 0, 103],
    [10, 78, 0, 1],
    [10, 78, 0, 2],
    [10, 78, 0, 10],
    [10, 78, 0, 11],
    [10, 78, 0, 12],
    [10, 78, 0, 20],
    [255, 255, 255, 255],
];

/// Seed packets: `(relayed, bytes)`; frames for the link, a DHCP payload for the relay socket.
const FIXTURES: [(bool, &[u8]); 7] = [
    (
        false,
        include_bytes!("../corpus/udp_frame/ipxe_bios_discover"),
    ),
    (
        false,
        include_bytes!("../corpus/udp_frame/ovmf_uefi_discover"),
    ),
    (
        false,
        include_bytes!("../corpus/udp_frame/dhclient_request"),
    ),
    (
        false,
        include_bytes!("../corpus/udp_frame/dhclient_request_vlan10"),
    ),
    (false, include_bytes!("../corpus/udp_frame/udhcpc_discover")),
    (false, include_bytes!("../corpus/udp_frame/udhcpd_offer")),
    (
        true,
        include_bytes!("../corpus/dhcp_message/relayed_discover"),
    ),
];

const MAX_STEPS: usize = 48;

fuzz_target!(|data: &[u8]| {
    static CONFIG_ONCE: OnceLock<DhcpConfig> = OnceLock::new();
    let config = CONFIG_ONCE.get_or_init(|| match Config::from_toml_str(CONFIG) {
        Ok(config) => config.dhcp,
        Err(e) => panic!("fuzz config must be valid: {e}"),
    });
    let mut server = Server::new(config.clone(), Vec::new(), UnixTime(1_000_000));
    let mut model = Model::default();
    let mut now = UnixTime(1_000_000);
    let mut u = Unstructured::new(data);
    for _ in 0..MAX_STEPS {
        if u.is_empty() {
            break;
        }
        if step(&mut u, &mut server, &mut now).is_err() {
            break;
        }
        model.drain(&mut server, now);
    }
    // Run the clock past every lease and quarantine: everything must wind down consistently.
    now = now.plus(1_000);
    server.handle_timeout(now);
    model.drain(&mut server, now);
    assert_eq!(
        model.bound(now),
        0,
        "leases still bound long after their end"
    );
});

/// Feed the server one input at `now` (advanced first).
fn step(u: &mut Unstructured<'_>, server: &mut Server, now: &mut UnixTime) -> Result<()> {
    *now = now.plus(u64::from(u.int_in_range(0u8..=40)?));
    match u.int_in_range(0u8..=10)? {
        0..=4 => {
            let msg = message(u, false)?;
            let frame = client_frame(u, &msg)?;
            server.handle_frame(*now, InterfaceId(u.int_in_range(0..=1)?), &frame);
        }
        5..=6 => {
            let msg = message(u, true)?;
            let mut payload = Vec::new();
            msg.emit(&mut payload);
            let local: [u8; 4] = *u.choose(&[[10, 78, 0, 1], [10, 77, 0, 1]])?;
            let local = Ipv4Addr::from(local);
            let peer = SocketAddrV4::new(msg.giaddr, 67);
            server.handle_datagram(*now, local, peer, &payload);
        }
        7 => {
            let len = u.arbitrary_len::<u8>()?.min(1600);
            server.handle_frame(*now, InterfaceId(0), u.bytes(len)?);
        }
        8 => {
            let len = u.arbitrary_len::<u8>()?.min(1600);
            let peer = SocketAddrV4::new(Ipv4Addr::new(10, 78, 0, 2), 67);
            server.handle_datagram(*now, Ipv4Addr::new(10, 78, 0, 1), peer, u.bytes(len)?);
        }
        9 => {
            // A packet captured from, or laid out like, a real client (the seed corpora).
            let (relayed, bytes) = *u.choose(&FIXTURES)?;
            let mut bytes = bytes.to_vec();
            if !bytes.is_empty() && u.arbitrary()? {
                let at = u.choose_index(bytes.len())?;
                bytes[at] ^= u.arbitrary::<u8>()?;
            }
            if relayed {
                let peer = SocketAddrV4::new(Ipv4Addr::new(10, 78, 0, 2), 67);
                server.handle_datagram(*now, Ipv4Addr::new(10, 78, 0, 1), peer, &bytes);
            } else {
                server.handle_frame(*now, InterfaceId(0), &bytes);
            }
        }
        _ => {
            if let Some(due) = server.poll_timeout() {
                *now = (*now).max(due);
            }
            server.handle_timeout(*now);
        }
    }
    Ok(())
}

/// A mostly plausible client message.
fn message(u: &mut Unstructured<'_>, relayed: bool) -> Result<Message> {
    let mac = if u.ratio(1u8, 8)? {
        u.arbitrary::<[u8; 6]>()?
    } else {
        *u.choose(&MACS)?
    };
    let mut chaddr = [0u8; 16];
    chaddr[..6].copy_from_slice(&mac);
    let message_type = if u.ratio(1u8, 16)? {
        MessageType::from_code(u.arbitrary()?)
    } else {
        MessageType::from_code(u.int_in_range(1..=8)?)
    };
    // Relayed: a relay's address (or a bogus one); direct: rarely anything but zero.
    let giaddr = if relayed || u.ratio(1u8, 16)? {
        address(u)?
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let mut options = Options::default();
    options.set_message_type(message_type);
    if u.arbitrary()? {
        options.set_ipv4(code::REQUESTED_IP, address(u)?);
    }
    if u.arbitrary()? {
        options.set_ipv4(code::SERVER_ID, address(u)?);
    }
    if u.arbitrary()? {
        let mut id = vec![1];
        id.extend_from_slice(&mac);
        if u.ratio(1u8, 4)? {
            id = u.arbitrary()?;
        }
        options.set(code::CLIENT_ID, id);
    }
    if u.arbitrary()? {
        let arch: u16 = *u.choose(&[0, 6, 7, 9, 10, 11, 16, 19, 0xffff])?;
        options.set_u16(code::CLIENT_ARCH, arch);
    }
    if u.arbitrary()? {
        options.set_str(code::USER_CLASS, "iPXE");
    }
    if u.arbitrary()? {
        options.set(code::HOSTNAME, u.arbitrary::<Vec<u8>>()?);
    }
    if u.arbitrary()? {
        options.set(code::PARAMETER_REQUEST_LIST, u.arbitrary::<Vec<u8>>()?);
    }
    if u.arbitrary()? {
        options.set_u16(code::MAX_MESSAGE_SIZE, u.arbitrary()?);
    }
    if relayed && u.arbitrary()? {
        options.set(code::RELAY_AGENT_INFO, u.arbitrary::<Vec<u8>>()?);
    }
    for _ in 0..u.int_in_range(0u8..=2)? {
        options.set(u.arbitrary()?, u.arbitrary::<Vec<u8>>()?);
    }
    Ok(Message {
        op: if u.ratio(1u8, 32)? { u.arbitrary()? } else { 1 },
        htype: 1,
        hlen: if u.ratio(1u8, 32)? { u.arbitrary()? } else { 6 },
        hops: u8::from(relayed),
        xid: u.arbitrary()?,
        secs: 0,
        flags: if u.arbitrary()? {
            Message::BROADCAST_FLAG
        } else {
            0
        },
        ciaddr: if u.ratio(1u8, 4)? {
            address(u)?
        } else {
            Ipv4Addr::UNSPECIFIED
        },
        yiaddr: Ipv4Addr::UNSPECIFIED,
        siaddr: Ipv4Addr::UNSPECIFIED,
        giaddr,
        chaddr,
        sname: Vec::new(),
        file: Vec::new(),
        options,
    })
}

/// The frame a client on the link sends around `msg`.
fn client_frame(u: &mut Unstructured<'_>, msg: &Message) -> Result<Vec<u8>> {
    let mut payload = Vec::new();
    msg.emit(&mut payload);
    let frame = UdpFrame {
        src_mac: msg.client_mac().unwrap_or_default(),
        dst_mac: MacAddr::BROADCAST,
        src_ip: msg.ciaddr,
        dst_ip: if u.ratio(1u8, 4)? {
            address(u)?
        } else {
            Ipv4Addr::BROADCAST
        },
        src_port: 68,
        dst_port: if u.ratio(1u8, 32)? {
            u.arbitrary()?
        } else {
            67
        },
        payload: &payload,
    };
    let mut out = Vec::new();
    frame.emit(&mut out);
    Ok(out)
}

fn address(u: &mut Unstructured<'_>) -> Result<Ipv4Addr> {
    if u.ratio(1u8, 8)? {
        return Ok(Ipv4Addr::from(u.arbitrary::<u32>()?));
    }
    Ok(Ipv4Addr::from(*u.choose(&ADDRESSES)?))
}

/// The lease store as the driver would hold it: only `Persist` and `Remove` change it.
#[derive(Default)]
struct Model {
    leases: BTreeMap<Ipv4Addr, Lease>,
}

impl Model {
    /// Drain and check every command the server has queued.
    fn drain(&mut self, server: &mut Server, now: UnixTime) {
        while let Some(command) = server.poll_command() {
            match command {
                Command::Persist(lease) => {
                    self.leases.insert(lease.ip, lease);
                }
                Command::Remove(ip) => {
                    self.leases.remove(&ip);
                }
                Command::Discovered(_) => {}
                Command::Send(reply) => self.check_reply(&reply, now),
            }
        }
        assert_eq!(
            server.active_leases(now),
            self.bound(now),
            "the server's bound leases differ from what it persisted"
        );
    }

    fn check_reply(&self, reply: &ims_netboot::dhcp::Reply, now: UnixTime) {
        let msg = match Message::parse(&reply.payload) {
            Ok(msg) => msg,
            Err(e) => panic!("reply does not decode: {e:?}"),
        };
        assert_eq!(msg.op, 2, "reply is not a BOOTREPLY");
        assert_eq!(msg.message_type(), Some(reply.message_type));
        match reply.destination {
            Destination::Link { interface, .. } => assert_eq!(interface, InterfaceId(0)),
            Destination::Relay(peer) => assert_eq!(*peer.ip(), msg.giaddr),
            Destination::Unicast(client) => {
                assert_eq!(client.port(), 68, "unicast reply not to the client port");
                assert!(!client.ip().is_unspecified() && !client.ip().is_broadcast());
            }
        }
        if reply.message_type == MessageType::Ack && msg.yiaddr != Ipv4Addr::UNSPECIFIED {
            let Some(lease) = self.leases.get(&msg.yiaddr) else {
                panic!("ACK for {} without a persisted lease", msg.yiaddr);
            };
            assert_eq!(lease.state, LeaseState::Bound, "ACK for a lease not bound");
            assert_eq!(
                Some(lease.mac),
                msg.client_mac(),
                "ACK for another client's lease"
            );
            assert!(lease.ends > now, "ACK for a lease already over");
        }
    }

    fn bound(&self, now: UnixTime) -> usize {
        self.leases
            .values()
            .filter(|l| l.state == LeaseState::Bound && l.is_active(now))
            .count()
    }
}
