//! Requests relayed by a DHCP relay agent (giaddr set, RFC 3046 option 82).

use super::*;
use crate::dhcp::DropReason;

const AGENT_INFO: &[u8] = &[1, 4, b'p', b'o', b'r', b't', 2, 2, 0xab, 0xcd];

fn relayed(mac: MacAddr, t: MessageType) -> Message {
    let mut m = msg(mac, t);
    m.giaddr = GIADDR;
    m.hops = 1;
    m.options.set(code::RELAY_AGENT_INFO, AGENT_INFO.to_vec());
    m
}

/// The option codes of an encoded message, in wire order.
fn wire_order(payload: &[u8]) -> Vec<u8> {
    let mut codes = Vec::new();
    let mut rest = &payload[240..];
    while let [c, tail @ ..] = rest {
        match *c {
            0 => rest = tail,
            255 => break,
            _ => {
                let len = usize::from(tail[0]);
                codes.push(*c);
                rest = &tail[1 + len..];
            }
        }
    }
    codes
}

#[test]
fn relayed_dora_goes_back_through_the_relay() {
    let mut site = Site::new();
    let cmds = site.relay(&relayed(RELAYED, MessageType::Discover));
    let Command::Send(reply) = &cmds[0] else {
        panic!("{cmds:?}")
    };
    assert_eq!(
        reply.destination,
        Destination::Relay(SocketAddrV4::new(GIADDR, 67))
    );
    let order = wire_order(&reply.payload);
    assert_eq!(order.first(), Some(&code::MESSAGE_TYPE));
    assert_eq!(
        order.last(),
        Some(&code::RELAY_AGENT_INFO),
        "82 last: {order:?}"
    );
    let offer = Message::parse(&reply.payload).unwrap();
    assert_eq!(offer.giaddr, GIADDR);
    assert_eq!(offer.yiaddr, ip("10.1.0.5"));
    assert_eq!(offer.options.server_id(), Some(RELAY_LOCAL));
    assert_eq!(offer.options.relay_agent_info(), Some(AGENT_INFO));
    assert_eq!(offer.options.ipv4(code::ROUTER), Some(GIADDR));
    assert_eq!(offer.options.u32(code::LEASE_TIME), Some(600));

    let mut req = relayed(RELAYED, MessageType::Request);
    req.options.set_ipv4(code::SERVER_ID, RELAY_LOCAL);
    req.options.set_ipv4(code::REQUESTED_IP, ip("10.1.0.5"));
    let cmds = site.relay(&req);
    assert_eq!(persisted(&cmds)[0].ip, ip("10.1.0.5"));
    let (dest, ack) = only_reply(&cmds);
    assert_eq!(dest, Destination::Relay(SocketAddrV4::new(GIADDR, 67)));
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.options.relay_agent_info(), Some(AGENT_INFO));
    let relay = super::super::stats::IngressLabel::Relay;
    assert_eq!(
        site.server
            .stats()
            .received
            .get(&(relay, MessageType::Request)),
        Some(&1)
    );
}

#[test]
fn relayed_dynamic_and_pxe_use_the_relay_subnet() {
    let mut site = Site::new();
    let mut d = relayed(DYNAMIC, MessageType::Discover);
    d.options.set_u16(code::CLIENT_ARCH, 0);
    d.options
        .set_str(code::VENDOR_CLASS, "PXEClient:Arch:00000:UNDI:002001");
    let (_, offer) = only_reply(&site.relay(&d));
    assert_eq!(offer.yiaddr, ip("10.1.0.10"));
    // The relayed subnet's next_server.
    assert_eq!(offer.siaddr, ip("10.1.0.2"));
    assert_eq!(offer.sname, b"10.1.0.2");
}

#[test]
fn relayed_nak_sets_broadcast_and_echoes_82() {
    let mut site = Site::new();
    let mut req = relayed(RELAYED, MessageType::Request);
    req.options.set_ipv4(code::SERVER_ID, RELAY_LOCAL);
    req.options.set_ipv4(code::REQUESTED_IP, ip("10.1.0.9"));
    let (dest, nak) = only_reply(&site.relay(&req));
    assert_eq!(dest, Destination::Relay(SocketAddrV4::new(GIADDR, 67)));
    assert_eq!(nak.message_type(), Some(MessageType::Nak));
    assert!(nak.is_broadcast());
    assert_eq!(nak.options.relay_agent_info(), Some(AGENT_INFO));
    assert_eq!(nak.options.server_id(), Some(RELAY_LOCAL));
    assert_eq!(nak.yiaddr, Ipv4Addr::UNSPECIFIED);
}

#[test]
fn relay_from_an_unconfigured_network_is_no_subnet() {
    let mut site = Site::new();
    let mut d = relayed(RELAYED, MessageType::Discover);
    d.giaddr = ip("172.16.5.1");
    assert!(site.relay(&d).is_empty());
    assert_eq!(site.drops(DropReason::NoSubnet), 1);
}

#[test]
fn server_id_of_the_other_path_is_foreign() {
    let mut site = Site::new();
    site.relay(&relayed(DYNAMIC, MessageType::Discover));
    let mut req = relayed(DYNAMIC, MessageType::Request);
    // Our eth0 address is not the identifier this client was given.
    req.options.set_ipv4(code::SERVER_ID, SERVER);
    req.options.set_ipv4(code::REQUESTED_IP, ip("10.1.0.10"));
    assert!(site.relay(&req).is_empty());
    assert_eq!(site.drops(DropReason::ForeignServerId), 1);
}

/// A relayed client renewing at T1 unicasts straight to us (RFC 2131 §4.4.5): no `giaddr`, its
/// address in `ciaddr`. It reaches the relay socket (routed) and must be answered at `ciaddr`:68;
/// the raw socket of a link it is not on must neither answer nor NAK it.
#[test]
fn routed_unicast_renewal_is_answered_at_ciaddr() {
    let mut site = Site::new();
    let mut req = relayed(RELAYED, MessageType::Request);
    req.options.set_ipv4(code::SERVER_ID, RELAY_LOCAL);
    req.options.set_ipv4(code::REQUESTED_IP, ip("10.1.0.5"));
    let (_, ack) = only_reply(&site.relay(&req));
    assert_eq!(ack.message_type(), Some(MessageType::Ack));

    site.advance(300);
    let mut renew = msg(RELAYED, MessageType::Request);
    renew.ciaddr = ip("10.1.0.5");

    // Seen on eth0 (same frame reaches the link's raw socket): not ours to judge there.
    let cmds = site.link_to(&renew, SERVER);
    assert!(cmds.is_empty(), "{cmds:?}");
    assert_eq!(site.drops(DropReason::WrongPath), 1);

    let mut payload = Vec::new();
    renew.emit(&mut payload);
    site.server.handle_datagram(
        site.now,
        RELAY_LOCAL,
        SocketAddrV4::new(ip("10.1.0.5"), 68),
        &payload,
    );
    let cmds = site.drain();
    let lease = &persisted(&cmds)[0];
    assert_eq!(lease.ip, ip("10.1.0.5"));
    assert_eq!(lease.ends, site.now.plus(600));
    let (dest, ack) = only_reply(&cmds);
    assert_eq!(
        dest,
        Destination::Unicast(SocketAddrV4::new(ip("10.1.0.5"), 68))
    );
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr, ip("10.1.0.5"));

    // A renewal from a client on eth0's own link is the raw socket's: the relay socket ignores it.
    let bound = site.dora(RESERVED);
    let mut local = msg(RESERVED, MessageType::Request);
    local.ciaddr = bound;
    let mut payload = Vec::new();
    local.emit(&mut payload);
    site.server
        .handle_datagram(site.now, SERVER, SocketAddrV4::new(bound, 68), &payload);
    assert!(site.drain().is_empty());
}
