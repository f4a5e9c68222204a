//! DISCOVER/OFFER/REQUEST/ACK on a directly attached link, and the REQUEST variants.

use super::*;
use crate::dhcp::{DropReason, LeaseState};

fn u32_opt(m: &Message, c: u8) -> Option<u32> {
    m.options.u32(c)
}

#[test]
fn dora_reserved_machine_every_option_and_destination() {
    let mut site = Site::new();
    let mut discover = msg(RESERVED, MessageType::Discover);
    discover.options.set_u16(code::MAX_MESSAGE_SIZE, 1472);
    let cmds = site.link(&discover);
    assert_eq!(cmds.len(), 1, "an OFFER persists nothing: {cmds:?}");
    let (dest, offer) = only_reply(&cmds);
    // No BROADCAST flag, no ciaddr: unicast to yiaddr at chaddr.
    assert_eq!(
        dest,
        Destination::Link {
            interface: ETH0,
            mac: RESERVED,
            ip: ip("10.0.0.50")
        }
    );
    assert_eq!(offer.op, 2);
    assert_eq!(offer.xid, 0x1234_5678);
    assert_eq!(offer.yiaddr, ip("10.0.0.50"));
    assert_eq!(offer.ciaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(offer.client_mac(), Some(RESERVED));
    let o = &offer.options;
    assert_eq!(o.message_type(), Some(MessageType::Offer));
    assert_eq!(o.server_id(), Some(SERVER));
    assert_eq!(u32_opt(&offer, code::LEASE_TIME), Some(3600));
    assert_eq!(u32_opt(&offer, code::RENEWAL_TIME), Some(1800));
    assert_eq!(u32_opt(&offer, code::REBINDING_TIME), Some(3150));
    assert_eq!(o.ipv4(code::SUBNET_MASK), Some(ip("255.255.255.0")));
    assert_eq!(o.ipv4(code::ROUTER), Some(SERVER));
    assert_eq!(o.get(code::DNS), Some(&[10, 0, 0, 2, 10, 0, 0, 3][..]));
    assert_eq!(o.get(code::DOMAIN_NAME), Some(&b"lab.example"[..]));
    assert_eq!(o.hostname(), Some("node1"));
    assert_eq!(o.ipv4(code::BROADCAST_ADDRESS), Some(ip("10.0.0.255")));
    // A plain DHCP client (no 93, no PXEClient) gets no boot file.
    assert!(!o.contains(code::BOOTFILE_NAME));
    assert!(!o.contains(code::VENDOR_CLASS));
    assert!(offer.file.is_empty());
    assert_eq!(offer.siaddr, Ipv4Addr::UNSPECIFIED);
    let codes: Vec<u8> = o.iter().map(|(c, _)| c).collect();
    assert_eq!(codes, [1, 3, 6, 12, 15, 28, 51, 53, 54, 58, 59]);

    site.advance(2);
    let mut request = msg(RESERVED, MessageType::Request);
    request.flags = Message::BROADCAST_FLAG;
    request.options.set_ipv4(code::SERVER_ID, SERVER);
    request
        .options
        .set_ipv4(code::REQUESTED_IP, ip("10.0.0.50"));
    request
        .options
        .set(code::CLIENT_ID, vec![1, 0x52, 0x54, 0, 0, 0, 1]);
    let cmds = site.link(&request);
    // Persist before Send.
    assert!(matches!(cmds[0], Command::Persist(_)), "{cmds:?}");
    assert!(matches!(cmds[1], Command::Send(_)), "{cmds:?}");
    assert_eq!(cmds.len(), 2);
    let lease = &persisted(&cmds)[0];
    assert_eq!(lease.ip, ip("10.0.0.50"));
    assert_eq!(lease.mac, RESERVED);
    assert_eq!(lease.state, LeaseState::Bound);
    assert_eq!(lease.starts, T0.plus(2));
    assert_eq!(lease.ends, T0.plus(2 + 3600));
    assert_eq!(lease.hostname.as_deref(), Some("node1"));
    assert_eq!(
        lease.client_id.as_deref(),
        Some(&[1, 0x52, 0x54, 0, 0, 0, 1][..])
    );
    assert_eq!(lease.boot_file, None);
    let (dest, ack) = only_reply(&cmds);
    assert_eq!(dest, link_broadcast(), "BROADCAST flag set");
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr, ip("10.0.0.50"));
    assert_eq!(ack.flags, Message::BROADCAST_FLAG);
    assert_eq!(ack.options.server_id(), Some(SERVER));
    assert_eq!(u32_opt(&ack, code::LEASE_TIME), Some(3600));
    assert_eq!(
        ack.options.ipv4(code::SUBNET_MASK),
        Some(ip("255.255.255.0"))
    );

    let stats = site.server.stats();
    let eth0 = super::super::stats::IngressLabel::Interface("eth0".into());
    assert_eq!(
        stats.received.get(&(eth0.clone(), MessageType::Discover)),
        Some(&1)
    );
    assert_eq!(stats.received.get(&(eth0, MessageType::Request)), Some(&1));
    assert_eq!(stats.replies.get(&MessageType::Offer), Some(&1));
    assert_eq!(stats.replies.get(&MessageType::Ack), Some(&1));
    assert_eq!(site.server.active_leases(site.now), 1);
    assert_eq!(site.server.poll_timeout(), Some(T0.plus(3602)));
}

#[test]
fn dynamic_allocation_is_deterministic_and_skips_exclusions() {
    let mut site = Site::new();
    let a = site.dora(DYNAMIC);
    let b = site.dora(ARM);
    let c = site.dora(INSTALLED);
    assert_eq!(
        (a, b, c),
        (ip("10.0.0.100"), ip("10.0.0.101"), ip("10.0.0.102"))
    );
    // Rediscovering returns the same address (its current lease).
    let (_, offer) = only_reply(&site.link(&msg(DYNAMIC, MessageType::Discover)));
    assert_eq!(offer.yiaddr, a);
    let usage = site.server.pool_usage(site.now);
    assert_eq!(usage.len(), 2);
    // 100 addresses minus 10 excluded.
    assert_eq!(usage[0].size, 90);
    assert_eq!(usage[0].used, 3);
    assert_eq!(usage[1].size, 11);
    assert_eq!(usage[1].used, 0);
}

#[test]
fn requested_address_honoured_when_free_and_in_range() {
    let mut site = Site::new();
    let mut d = msg(DYNAMIC, MessageType::Discover);
    d.options.set_ipv4(code::REQUESTED_IP, ip("10.0.0.140"));
    assert_eq!(only_reply(&site.link(&d)).1.yiaddr, ip("10.0.0.140"));
    // Excluded, or outside the range: ignored.
    for wanted in ["10.0.0.155", "10.0.0.20", "10.0.0.50"] {
        let mut d = msg(ARM, MessageType::Discover);
        d.options.set_ipv4(code::REQUESTED_IP, ip(wanted));
        assert_eq!(
            only_reply(&site.link(&d)).1.yiaddr,
            ip("10.0.0.100"),
            "{wanted}"
        );
    }
    // Held by another client's offer: not given.
    let mut d = msg(INSTALLED, MessageType::Discover);
    d.options.set_ipv4(code::REQUESTED_IP, ip("10.0.0.140"));
    assert_ne!(only_reply(&site.link(&d)).1.yiaddr, ip("10.0.0.140"));
}

#[test]
fn renew_is_unicast_to_ciaddr_and_extends() {
    let mut site = Site::new();
    let addr = site.dora(DYNAMIC);
    site.advance(1800);
    let mut renew = msg(DYNAMIC, MessageType::Request);
    renew.ciaddr = addr;
    let cmds = site.link_to(&renew, SERVER);
    let lease = &persisted(&cmds)[0];
    assert_eq!(lease.ends, T0.plus(1800 + 3600));
    assert_eq!(lease.starts, T0, "an extension keeps the start");
    let (dest, ack) = only_reply(&cmds);
    assert_eq!(
        dest,
        Destination::Link {
            interface: ETH0,
            mac: DYNAMIC,
            ip: addr
        }
    );
    assert_eq!(ack.ciaddr, addr);
    assert_eq!(ack.yiaddr, addr);
}

#[test]
fn rebind_broadcast_with_ciaddr_is_answered_to_ciaddr() {
    let mut site = Site::new();
    let addr = site.dora(RESERVED);
    site.advance(3200);
    let mut rebind = msg(RESERVED, MessageType::Request);
    rebind.ciaddr = addr;
    let cmds = site.link(&rebind);
    assert_eq!(persisted(&cmds)[0].ends, T0.plus(3200 + 3600));
    let (dest, ack) = only_reply(&cmds);
    assert_eq!(
        dest,
        Destination::Link {
            interface: ETH0,
            mac: RESERVED,
            ip: addr
        }
    );
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
}

#[test]
fn renew_of_someone_elses_address_is_naked_or_ignored() {
    let mut site = Site::new();
    let addr = site.dora(DYNAMIC);
    let mut renew = msg(ARM, MessageType::Request);
    renew.ciaddr = addr;
    let (dest, nak) = only_reply(&site.link_to(&renew, SERVER));
    assert_eq!(nak.message_type(), Some(MessageType::Nak));
    assert_eq!(dest, link_broadcast());
    // An address off this link: silence here (the relay socket judges routed renewals), and
    // silence there too when it lies in no subnet we serve.
    let mut renew = msg(ARM, MessageType::Request);
    renew.ciaddr = ip("172.16.0.9");
    assert!(site.link(&renew).is_empty());
    assert_eq!(site.drops(DropReason::WrongPath), 1);
    let mut payload = Vec::new();
    renew.emit(&mut payload);
    let from = SocketAddrV4::new(renew.ciaddr, 68);
    site.server
        .handle_datagram(site.now, RELAY_LOCAL, from, &payload);
    assert!(site.drain().is_empty());
    assert_eq!(site.drops(DropReason::NoSubnet), 1);
}

#[test]
fn init_reboot_ack_for_own_address_nak_for_other_subnet() {
    let mut site = Site::new();
    let addr = site.dora(DYNAMIC);
    site.advance(100);
    let mut reboot = msg(DYNAMIC, MessageType::Request);
    reboot.options.set_ipv4(code::REQUESTED_IP, addr);
    let cmds = site.link(&reboot);
    assert_eq!(persisted(&cmds)[0].ip, addr);
    let (_, ack) = only_reply(&cmds);
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr, addr);

    let mut moved = msg(DYNAMIC, MessageType::Request);
    moved.options.set_ipv4(code::REQUESTED_IP, ip("10.1.0.12"));
    let cmds = site.link(&moved);
    assert!(persisted(&cmds).is_empty());
    let (dest, nak) = only_reply(&cmds);
    assert_eq!(dest, link_broadcast());
    assert_eq!(nak.message_type(), Some(MessageType::Nak));
    assert_eq!(nak.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(nak.options.server_id(), Some(SERVER));
    assert!(nak.options.contains(code::MESSAGE));
    assert!(!nak.options.contains(code::LEASE_TIME));

    // A reserved machine asking for a different address in its subnet: NAK.
    let mut wrong = msg(RESERVED, MessageType::Request);
    wrong.options.set_ipv4(code::REQUESTED_IP, ip("10.0.0.51"));
    let (_, nak) = only_reply(&site.link(&wrong));
    assert_eq!(nak.message_type(), Some(MessageType::Nak));
    // Unknown MAC: silence.
    let mut stranger = msg(STRANGER, MessageType::Request);
    stranger
        .options
        .set_ipv4(code::REQUESTED_IP, ip("10.0.0.120"));
    assert!(site.link(&stranger).is_empty());
}

#[test]
fn selecting_wrong_address_is_naked() {
    let mut site = Site::new();
    let (_, offer) = only_reply(&site.link(&msg(DYNAMIC, MessageType::Discover)));
    let mut req = msg(DYNAMIC, MessageType::Request);
    req.options.set_ipv4(code::SERVER_ID, SERVER);
    req.options.set_ipv4(code::REQUESTED_IP, ip("10.0.0.130"));
    assert_ne!(offer.yiaddr, ip("10.0.0.130"));
    let cmds = site.link(&req);
    assert!(persisted(&cmds).is_empty());
    let (dest, nak) = only_reply(&cmds);
    assert_eq!(nak.message_type(), Some(MessageType::Nak));
    assert_eq!(dest, link_broadcast());
    assert_eq!(site.server.stats().replies.get(&MessageType::Nak), Some(&1));
}

#[test]
fn foreign_server_id_drops_and_frees_the_offer() {
    let mut site = Site::new();
    let (_, offer) = only_reply(&site.link(&msg(DYNAMIC, MessageType::Discover)));
    assert_eq!(site.server.pool_usage(site.now)[0].used, 1);
    let mut req = msg(DYNAMIC, MessageType::Request);
    req.options.set_ipv4(code::SERVER_ID, ip("10.0.0.254"));
    req.options.set_ipv4(code::REQUESTED_IP, ip("10.0.0.77"));
    assert!(site.link(&req).is_empty());
    assert_eq!(site.drops(DropReason::ForeignServerId), 1);
    assert_eq!(site.server.pool_usage(site.now)[0].used, 0);
    assert_eq!(site.server.poll_timeout(), None);
    // The freed address goes to the next client... after the cursor moved past it.
    let (_, other) = only_reply(&site.link(&msg(ARM, MessageType::Discover)));
    assert_eq!(other.yiaddr, ip("10.0.0.101"));
    assert_eq!(offer.yiaddr, ip("10.0.0.100"));
    let mut d = msg(INSTALLED, MessageType::Discover);
    d.options.set_ipv4(code::REQUESTED_IP, offer.yiaddr);
    assert_eq!(only_reply(&site.link(&d)).1.yiaddr, offer.yiaddr);
}

#[test]
fn parameter_request_list_is_honoured() {
    let mut site = Site::new();
    let mut d = msg(RESERVED, MessageType::Discover);
    d.options.set(code::PARAMETER_REQUEST_LIST, vec![code::DNS]);
    let (_, offer) = only_reply(&site.link(&d));
    let o = &offer.options;
    assert!(o.contains(code::DNS));
    // Mask and router always; the others only when asked.
    assert!(o.contains(code::SUBNET_MASK));
    assert!(o.contains(code::ROUTER));
    assert!(!o.contains(code::DOMAIN_NAME));
    assert!(!o.contains(code::HOSTNAME));
    assert!(!o.contains(code::BROADCAST_ADDRESS));
    let mut d = msg(RESERVED, MessageType::Discover);
    d.options.set(
        code::PARAMETER_REQUEST_LIST,
        vec![code::HOSTNAME, code::DOMAIN_NAME],
    );
    let (_, offer) = only_reply(&site.link(&d));
    assert!(offer.options.contains(code::HOSTNAME));
    assert!(offer.options.contains(code::DOMAIN_NAME));
    assert!(!offer.options.contains(code::DNS));
}

#[test]
fn inform_gets_configuration_only() {
    let mut site = Site::new();
    let mut inform = msg(RESERVED, MessageType::Inform);
    inform.ciaddr = ip("10.0.0.50");
    let cmds = site.link_to(&inform, SERVER);
    assert!(persisted(&cmds).is_empty());
    let (dest, ack) = only_reply(&cmds);
    assert_eq!(
        dest,
        Destination::Link {
            interface: ETH0,
            mac: RESERVED,
            ip: ip("10.0.0.50")
        }
    );
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(ack.ciaddr, ip("10.0.0.50"));
    assert!(!ack.options.contains(code::LEASE_TIME));
    assert!(!ack.options.contains(code::RENEWAL_TIME));
    assert_eq!(ack.options.server_id(), Some(SERVER));
    assert_eq!(ack.options.ipv4(code::ROUTER), Some(SERVER));
    assert_eq!(site.server.active_leases(site.now), 0);
}

#[test]
fn unknown_mac_is_dropped_and_discovery_mode_answers_it() {
    let mut site = Site::new();
    for _ in 0..20 {
        assert!(site.link(&msg(STRANGER, MessageType::Discover)).is_empty());
    }
    assert_eq!(site.drops(DropReason::UnknownClient), 20);

    let mut cfg = config();
    cfg.subnets[0].allow_unknown = true;
    let mut site = Site::with(cfg, vec![]);
    let mut d = msg(STRANGER, MessageType::Discover);
    d.options.set_u16(code::CLIENT_ARCH, 7);
    d.options
        .set_str(code::VENDOR_CLASS, "PXEClient:Arch:00007:UNDI:003016");
    d.options.set_str(code::HOSTNAME, "mystery");
    let cmds = site.link(&d);
    let Some(Command::Discovered(seen)) = cmds.iter().find(|c| matches!(c, Command::Discovered(_)))
    else {
        panic!("no Discovered in {cmds:?}");
    };
    assert_eq!(seen.mac, STRANGER);
    assert_eq!(seen.ip, ip("10.0.0.100"));
    assert_eq!(seen.arch, Some(7));
    assert_eq!(seen.hostname.as_deref(), Some("mystery"));
    assert_eq!(seen.first_seen, T0);
    let (_, offer) = only_reply(&cmds);
    assert_eq!(offer.yiaddr, ip("10.0.0.100"));
    assert!(
        !offer.options.contains(code::BOOTFILE_NAME),
        "no boot file for unknowns"
    );
    assert!(!offer.options.contains(code::HOSTNAME));
    // A second DISCOVER does not repeat the record; the ACK refreshes it once.
    let cmds = site.link(&d);
    assert!(!cmds.iter().any(|c| matches!(c, Command::Discovered(_))));
    site.advance(5);
    let mut r = d.clone();
    r.options.set_message_type(MessageType::Request);
    r.options.set_ipv4(code::SERVER_ID, SERVER);
    r.options.set_ipv4(code::REQUESTED_IP, ip("10.0.0.100"));
    let cmds = site.link(&r);
    let discovered: Vec<_> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Discovered(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(discovered.len(), 1);
    assert_eq!(
        (discovered[0].first_seen, discovered[0].last_seen),
        (T0, T0.plus(5))
    );
    assert_eq!(persisted(&cmds)[0].hostname.as_deref(), Some("mystery"));
}

#[test]
fn reserved_address_outside_the_subnet_is_no_subnet() {
    let mut site = Site::new();
    // RELAYED is reserved 10.1.0.5 but shows up on eth0 (10.0.0.0/24).
    assert!(site.link(&msg(RELAYED, MessageType::Discover)).is_empty());
    assert!(site.link(&msg(RELAYED, MessageType::Discover)).is_empty());
    assert_eq!(site.drops(DropReason::NoSubnet), 2);
}

#[test]
fn malformed_and_misdirected_inputs_are_counted() {
    let mut site = Site::new();
    site.server.handle_frame(site.now, ETH0, &[]);
    site.server.handle_frame(site.now, ETH0, &[0xff; 60]);
    // A valid frame around a truncated DHCP message.
    let good = frame(&msg(DYNAMIC, MessageType::Discover), Ipv4Addr::BROADCAST);
    let mut bad_payload = Vec::new();
    UdpFrame {
        src_mac: DYNAMIC,
        dst_mac: MacAddr::BROADCAST,
        src_ip: Ipv4Addr::UNSPECIFIED,
        dst_ip: Ipv4Addr::BROADCAST,
        src_port: 68,
        dst_port: 67,
        payload: &[1, 1, 6, 0, 1, 2],
    }
    .emit(&mut bad_payload);
    site.server.handle_frame(site.now, ETH0, &bad_payload);
    // Corrupt one byte of a good frame's IPv4 header: checksum fails.
    let mut corrupt = good.clone();
    corrupt[22] ^= 0x40;
    site.server.handle_frame(site.now, ETH0, &corrupt);
    site.server.handle_datagram(
        site.now,
        RELAY_LOCAL,
        SocketAddrV4::new(GIADDR, 67),
        &[0; 10],
    );
    assert_eq!(site.drops(DropReason::Malformed), 5);

    // Unicast to another host, or to another port.
    assert!(
        site.link_to(&msg(DYNAMIC, MessageType::Discover), ip("10.0.0.9"))
            .is_empty()
    );
    assert_eq!(site.drops(DropReason::NotForUs), 1);
    // Unknown interface index.
    site.server.handle_frame(site.now, InterfaceId(7), &good);
    assert_eq!(site.drops(DropReason::NotForUs), 2);
    // BOOTREPLY, bad htype, plain BOOTP.
    let mut reply = msg(DYNAMIC, MessageType::Discover);
    reply.op = 2;
    assert!(site.link(&reply).is_empty());
    let mut token_ring = msg(DYNAMIC, MessageType::Discover);
    token_ring.htype = 6;
    assert!(site.link(&token_ring).is_empty());
    assert_eq!(site.drops(DropReason::WrongOp), 2);
    let mut bootp = msg(DYNAMIC, MessageType::Discover);
    bootp.options.remove(code::MESSAGE_TYPE);
    assert!(site.link(&bootp).is_empty());
    let offer_from_client = msg(DYNAMIC, MessageType::Offer);
    assert!(site.link(&offer_from_client).is_empty());
    assert_eq!(site.drops(DropReason::Unsupported), 2);
    // Relayed message on the raw socket, direct message on the relay socket.
    let mut relayed = msg(DYNAMIC, MessageType::Discover);
    relayed.giaddr = GIADDR;
    assert!(site.link(&relayed).is_empty());
    let mut direct = Vec::new();
    msg(DYNAMIC, MessageType::Discover).emit(&mut direct);
    site.server.handle_datagram(
        site.now,
        RELAY_LOCAL,
        SocketAddrV4::new(GIADDR, 67),
        &direct,
    );
    assert!(site.drain().is_empty());
    // The relay socket also sees on-link traffic by design; ignoring it is not a drop.
    assert_eq!(site.drops(DropReason::WrongPath), 1);
    // Nothing was allocated by any of it.
    assert_eq!(site.server.pool_usage(site.now)[0].used, 0);
}
