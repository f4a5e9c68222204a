//! [`Server::set_rate_limit`] on virtual time: a flood from one MAC is cut to the limit while
//! another MAC is served, and a real PXE boot's messages all pass with the defaults.

use std::net::{Ipv4Addr, SocketAddrV4};

use ims_proto::MacAddr;

use super::replace_tests::config;
use super::*;
use crate::config::DEFAULT_DHCP_RATE_LIMIT;

const GIADDR: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const T0: UnixTime = UnixTime(1_700_000_000);
const FLOODER: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
const QUIET: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 2]);

/// A relayed DISCOVER from `mac` at `now`; whether an OFFER came back.
fn discover(server: &mut Server, now: UnixTime, mac: MacAddr) -> bool {
    let mut m = Message {
        op: 1,
        htype: 1,
        hlen: 6,
        hops: 1,
        xid: 9,
        secs: 0,
        flags: 0,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        yiaddr: Ipv4Addr::UNSPECIFIED,
        siaddr: Ipv4Addr::UNSPECIFIED,
        giaddr: GIADDR,
        chaddr: [0; 16],
        sname: vec![],
        file: vec![],
        options: Default::default(),
    };
    m.chaddr[..6].copy_from_slice(&mac.0);
    m.options.set_message_type(MessageType::Discover);
    let mut payload = Vec::new();
    m.emit(&mut payload);
    server.handle_datagram(now, LOCAL, SocketAddrV4::new(GIADDR, 67), &payload);
    let mut offered = false;
    while let Some(command) = server.poll_command() {
        if let Command::Send(reply) = command {
            offered |= Message::parse(&reply.payload)
                .is_ok_and(|r| r.message_type() == Some(MessageType::Offer));
        }
    }
    offered
}

fn server() -> Server {
    Server::new(config(&[(FLOODER, None), (QUIET, None)]), Vec::new(), T0)
}

#[test]
fn a_flood_from_one_mac_is_limited_while_another_is_served() {
    let mut server = server();
    server.set_rate_limit(RateLimit {
        per_second: 2,
        burst: 5,
    });
    let mut flood_offers = 0;
    let mut quiet_offers = 0;
    // 60 virtual seconds: the flooder sends 100 DISCOVERs a second, the quiet one one every 10 s.
    for s in 0..60 {
        let now = T0.plus(s);
        for _ in 0..100 {
            flood_offers += u64::from(discover(&mut server, now, FLOODER));
        }
        if s % 10 == 0 {
            quiet_offers += u64::from(discover(&mut server, now, QUIET));
        }
    }
    assert_eq!(quiet_offers, 6, "the quiet client is always served");
    // The burst of 5, then 2 per second for the 59 seconds after the first.
    assert_eq!(flood_offers, 5 + 2 * 59);
    assert_eq!(server.stats().rate_limited, 6000 - flood_offers);
}

#[test]
fn the_default_limit_never_refuses_a_pxe_boot() {
    let mut server = server();
    server.set_rate_limit(DEFAULT_DHCP_RATE_LIMIT);
    // Firmware retries its DISCOVER at 0, 4, 12 and 28 s, iPXE does DORA (plus a ProxyDHCP
    // wait and a retry) at 30 s, the OS does DORA twice at 45 s: 14 messages, 4 in one second.
    let times = [0, 4, 12, 28, 30, 30, 31, 31, 33, 45, 45, 45, 45, 46];
    for t in times {
        assert!(discover(&mut server, T0.plus(t), QUIET), "refused at {t} s");
    }
    assert_eq!(server.stats().rate_limited, 0);
}

#[test]
fn the_limit_survives_a_config_replacement() {
    let mut server = server();
    server.set_rate_limit(RateLimit {
        per_second: 1,
        burst: 1,
    });
    assert!(discover(&mut server, T0, FLOODER));
    server.replace_config(config(&[(FLOODER, None)]), T0);
    assert!(!discover(&mut server, T0, FLOODER));
    assert!(discover(&mut server, T0.plus(1), FLOODER));
}
