//! [`Server::set_rate_limit`] on virtual time: a flood of requests from one client address is
//! cut to the limit (dropped unanswered, counted apart from `requests`), another address is
//! served, and transfers already running are never limited.

use super::*;
use crate::ratelimit::RateLimit;

fn at(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

#[test]
fn a_flood_from_one_address_is_limited_while_another_is_served() {
    let mut h = Harness::new(TftpLimits {
        max_transfers: 1000,
        max_queue: 1000,
        ..limits()
    });
    h.server.set_rate_limit(RateLimit {
        per_second: 1,
        burst: 3,
    });
    let mut answered = 0;
    // Ten virtual seconds; 50 requests a second from 10.0.0.66 (each from a new port, as a
    // flood tool would), one every two seconds from 10.0.0.10.
    for s in 0..10u16 {
        for i in 0..50u16 {
            if !h
                .rrq(at([10, 0, 0, 66], 3000 + s * 50 + i), "f", &[])
                .is_empty()
            {
                answered += 1;
            }
        }
        if s % 2 == 0 {
            h.admit(at([10, 0, 0, 10], 2000 + s), "f", &[]);
        }
        h.now += Duration::from_secs(1);
    }
    assert_eq!(answered, 3 + 9, "the burst, then one a second");
    let s = h.server.stats();
    assert_eq!(s.rate_limited, 500 - 12);
    assert_eq!(
        s.requests,
        12 + 5,
        "rate-limited datagrams are not requests"
    );
}

#[test]
fn running_transfers_are_never_limited() {
    let mut h = Harness::new(limits());
    h.server.set_rate_limit(RateLimit {
        per_second: 1,
        burst: 1,
    });
    let peer = at([10, 0, 0, 10], 2000);
    let id = h.admit(peer, "f", &[]);
    // The next request from this address is over the limit...
    assert!(h.rrq(at([10, 0, 0, 10], 2001), "g", &[]).is_empty());
    // ...but the admitted transfer runs to the end: 3 blocks of 512, all acknowledged.
    let cmds = h.opened(id, 1100);
    assert!(!cmds.is_empty());
    for block in 1..=3 {
        let cmds = h.ack(id, peer, block);
        if block < 3 {
            assert!(
                cmds.iter().any(|c| matches!(c, Command::Send { packet: Packet::Data { block: b, .. }, .. } if *b == block + 1)),
                "no DATA {} after ACK {block}: {cmds:?}",
                block + 1
            );
        }
    }
    assert_eq!(h.server.stats().completed, 1);
    assert_eq!(h.server.stats().rate_limited, 1);
}
