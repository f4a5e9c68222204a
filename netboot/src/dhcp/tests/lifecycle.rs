//! DECLINE, RELEASE, expiry, loading from the store and scale.

use super::*;
use crate::dhcp::{DropReason, LeaseState};

fn decline(mac: MacAddr, addr: Ipv4Addr) -> Message {
    let mut m = msg(mac, MessageType::Decline);
    m.options.set_ipv4(code::SERVER_ID, SERVER);
    m.options.set_ipv4(code::REQUESTED_IP, addr);
    m
}

fn release(mac: MacAddr, addr: Ipv4Addr) -> Message {
    let mut m = msg(mac, MessageType::Release);
    m.ciaddr = addr;
    m.options.set_ipv4(code::SERVER_ID, SERVER);
    m
}

#[test]
fn declined_address_is_quarantined_until_the_end() {
    let mut site = Site::new();
    let addr = site.dora(DYNAMIC);
    site.advance(3);
    let cmds = site.link_to(&decline(DYNAMIC, addr), SERVER);
    assert!(replies(&cmds).is_empty(), "no reply to a DECLINE");
    let lease = &persisted(&cmds)[0];
    assert_eq!(lease.ip, addr);
    assert_eq!(lease.mac, DYNAMIC);
    assert_eq!(lease.state, LeaseState::Declined);
    assert_eq!(lease.ends, T0.plus(3 + QUARANTINE));
    assert_eq!(site.server.stats().declines, 1);
    assert_eq!(site.server.active_leases(site.now), 0);
    assert_eq!(site.server.pool_usage(site.now)[0].used, 1);

    // Neither the decliner nor anyone else is offered it, even when asking for it.
    for mac in [DYNAMIC, ARM] {
        let mut d = msg(mac, MessageType::Discover);
        d.options.set_ipv4(code::REQUESTED_IP, addr);
        let (_, offer) = only_reply(&site.link(&d));
        assert_ne!(offer.yiaddr, addr);
    }
    assert_eq!(
        site.server.poll_timeout(),
        Some(site.now.plus(OFFER_TIMEOUT))
    );
    site.advance(OFFER_TIMEOUT);
    assert!(site.timeout().is_empty(), "offers lapse silently");
    assert_eq!(site.server.poll_timeout(), Some(T0.plus(3 + QUARANTINE)));

    site.now = T0.plus(3 + QUARANTINE - 1);
    let mut d = msg(INSTALLED, MessageType::Discover);
    d.options.set_ipv4(code::REQUESTED_IP, addr);
    assert_ne!(only_reply(&site.link(&d)).1.yiaddr, addr);
    site.now = T0.plus(3 + QUARANTINE);
    let cmds = site.timeout();
    assert_eq!(cmds, [Command::Remove(addr)]);
    let mut d = msg(ARM, MessageType::Discover);
    d.options.set_ipv4(code::REQUESTED_IP, addr);
    assert_eq!(only_reply(&site.link(&d)).1.yiaddr, addr);
}

#[test]
fn decline_of_a_reservation_blocks_the_machine() {
    let mut site = Site::new();
    let addr = site.dora(RESERVED);
    site.link(&decline(RESERVED, addr));
    assert!(site.link(&msg(RESERVED, MessageType::Discover)).is_empty());
    assert_eq!(site.drops(DropReason::Quarantined), 1);
    site.advance(QUARANTINE);
    let (_, offer) = only_reply(&site.link(&msg(RESERVED, MessageType::Discover)));
    assert_eq!(offer.yiaddr, addr);
}

#[test]
fn decline_only_by_the_holder_and_for_us() {
    let mut site = Site::new();
    let addr = site.dora(DYNAMIC);
    // Another client cannot quarantine it; nor can a DECLINE for another server.
    assert!(site.link(&decline(ARM, addr)).is_empty());
    assert_eq!(site.drops(DropReason::NoLease), 1);
    let mut foreign = decline(DYNAMIC, addr);
    foreign.options.set_ipv4(code::SERVER_ID, ip("10.0.0.254"));
    assert!(site.link(&foreign).is_empty());
    assert_eq!(site.drops(DropReason::ForeignServerId), 1);
    assert_eq!(site.server.stats().declines, 0);
    assert_eq!(site.server.active_leases(site.now), 1);
}

#[test]
fn released_address_is_free_and_the_client_gets_it_back() {
    let mut site = Site::new();
    let addr = site.dora(DYNAMIC);
    site.advance(10);
    let cmds = site.link_to(&release(DYNAMIC, addr), SERVER);
    assert!(replies(&cmds).is_empty());
    let lease = &persisted(&cmds)[0];
    assert_eq!(
        (lease.state, lease.ends, lease.mac),
        (LeaseState::Released, site.now, DYNAMIC)
    );
    assert_eq!(site.server.active_leases(site.now), 0);
    assert_eq!(site.server.pool_usage(site.now)[0].used, 0);
    assert_eq!(site.server.poll_timeout(), None);
    // Free for anyone asking for it...
    let mut d = msg(ARM, MessageType::Discover);
    d.options.set_ipv4(code::REQUESTED_IP, addr);
    assert_eq!(only_reply(&site.link(&d)).1.yiaddr, addr);
    // ...and the previous holder gets it back once that offer lapses.
    site.advance(OFFER_TIMEOUT);
    assert_eq!(site.dora(DYNAMIC), addr);
    // A RELEASE by someone else, or of an address not bound, changes nothing.
    assert!(site.link(&release(ARM, addr)).is_empty());
    assert!(site.link(&release(DYNAMIC, ip("10.0.0.140"))).is_empty());
    assert_eq!(site.drops(DropReason::NoLease), 2);
    assert_eq!(site.server.active_leases(site.now), 1);
}

#[test]
fn expiry_via_handle_timeout_and_poll_timeout() {
    let mut site = Site::new();
    assert_eq!(site.server.poll_timeout(), None);
    let (_, offer) = only_reply(&site.link(&msg(DYNAMIC, MessageType::Discover)));
    assert_eq!(site.server.poll_timeout(), Some(T0.plus(OFFER_TIMEOUT)));
    // The offer lapses: the address goes back, nothing is persisted.
    site.advance(OFFER_TIMEOUT - 1);
    assert!(site.timeout().is_empty());
    assert_eq!(site.server.pool_usage(site.now)[0].used, 1);
    site.advance(1);
    assert!(site.timeout().is_empty());
    assert_eq!(site.server.pool_usage(site.now)[0].used, 0);
    assert_eq!(site.server.poll_timeout(), None);

    let addr = site.dora(DYNAMIC);
    // The cursor moved on past the lapsed offer.
    assert_eq!((offer.yiaddr, addr), (ip("10.0.0.100"), ip("10.0.0.101")));
    let bound_at = site.now;
    assert_eq!(
        site.server.poll_timeout(),
        Some(bound_at.plus(u64::from(LEASE_TIME)))
    );
    site.now = bound_at.plus(u64::from(LEASE_TIME) - 1);
    assert!(site.timeout().is_empty());
    assert_eq!(site.server.active_leases(site.now), 1);
    site.now = bound_at.plus(u64::from(LEASE_TIME));
    assert_eq!(site.server.active_leases(site.now), 0);
    let cmds = site.timeout();
    let expired = persisted(&cmds);
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (expired[0].ip, expired[0].state),
        (addr, LeaseState::Expired)
    );
    assert_eq!(site.server.stats().expirations, 1);
    assert_eq!(site.server.poll_timeout(), None);
    // Renewing after expiry: the address is still its own and free, so it is granted again.
    let mut renew = msg(DYNAMIC, MessageType::Request);
    renew.ciaddr = addr;
    let (_, ack) = only_reply(&site.link_to(&renew, SERVER));
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
}

#[test]
fn expired_address_returns_to_its_owner_first() {
    let mut site = Site::new();
    let a = site.dora(DYNAMIC);
    site.advance(u64::from(LEASE_TIME) + 1);
    site.timeout();
    // Other clients take the next addresses, not the expired one...
    let b = site.dora(ARM);
    assert_ne!(a, b);
    // ...and the owner gets its old address back.
    assert_eq!(site.dora(DYNAMIC), a);
}

#[test]
fn reservation_versus_dynamic() {
    let mut site = Site::new();
    // Asking for another address does not move a reserved machine.
    let mut d = msg(RESERVED, MessageType::Discover);
    d.options.set_ipv4(code::REQUESTED_IP, ip("10.0.0.120"));
    assert_eq!(only_reply(&site.link(&d)).1.yiaddr, ip("10.0.0.50"));
    // A dynamic machine asking for a reserved address does not get it.
    let mut d = msg(DYNAMIC, MessageType::Discover);
    d.options.set_ipv4(code::REQUESTED_IP, ip("10.0.0.50"));
    assert_eq!(only_reply(&site.link(&d)).1.yiaddr, ip("10.0.0.100"));
    // A reservation inside the range is carved out of the pool.
    let mut cfg = config();
    if let Some(m) = cfg.machines.get_mut(&ARM) {
        m.ip = Some(ip("10.0.0.100"));
    }
    let mut site = Site::with(cfg, vec![]);
    assert_eq!(site.server.pool_usage(site.now)[0].size, 89);
    assert_eq!(site.dora(DYNAMIC), ip("10.0.0.101"));
    assert_eq!(site.dora(ARM), ip("10.0.0.100"));
}

#[test]
fn pool_exhaustion_is_a_drop() {
    let mut cfg = config();
    cfg.subnets[0].range = Some((ip("10.0.0.100"), ip("10.0.0.101")));
    let mut site = Site::with(cfg, vec![]);
    site.dora(DYNAMIC);
    site.dora(ARM);
    assert!(site.link(&msg(INSTALLED, MessageType::Discover)).is_empty());
    assert_eq!(site.drops(DropReason::PoolExhausted), 1);
    assert_eq!(
        site.server.pool_usage(site.now)[0],
        super::super::server::PoolUsage {
            subnet: "10.0.0.0/24".parse().unwrap(),
            size: 2,
            used: 2,
        }
    );
}

fn stored(addr: &str, mac: MacAddr, state: LeaseState, starts: u64, ends: u64) -> Lease {
    Lease {
        ip: ip(addr),
        mac,
        state,
        starts: UnixTime(starts),
        ends: UnixTime(ends),
        hostname: None,
        client_id: None,
        uuid: None,
        arch: None,
        boot_file: None,
        next_server: None,
    }
}

#[test]
fn leases_loaded_from_the_store_are_honoured() {
    let t = T0.0;
    let leases = vec![
        // DYNAMIC holds .120 for a while yet.
        stored("10.0.0.120", DYNAMIC, LeaseState::Bound, t - 10, t + 100),
        // ARM's old address, expired: it gets it back.
        stored("10.0.0.130", ARM, LeaseState::Expired, t - 5000, t - 1000),
        // A quarantined address.
        stored("10.0.0.100", STRANGER, LeaseState::Declined, t - 10, t + 50),
        // Already past its end at start-up.
        stored("10.0.0.140", INSTALLED, LeaseState::Bound, t - 500, t - 1),
    ];
    let mut site = Site::with(config(), leases);
    assert_eq!(site.server.poll_timeout(), Some(UnixTime(t - 1)));
    assert_eq!(site.server.active_leases(site.now), 1);
    let usage = site.server.pool_usage(site.now);
    assert_eq!(usage[0].used, 2, "bound .120 and quarantined .100");
    let cmds = site.timeout();
    assert_eq!(persisted(&cmds).len(), 1);
    assert_eq!(persisted(&cmds)[0].state, LeaseState::Expired);
    assert_eq!(site.server.poll_timeout(), Some(UnixTime(t + 50)));

    let (_, o) = only_reply(&site.link(&msg(DYNAMIC, MessageType::Discover)));
    assert_eq!(o.yiaddr, ip("10.0.0.120"));
    let (_, o) = only_reply(&site.link(&msg(ARM, MessageType::Discover)));
    assert_eq!(o.yiaddr, ip("10.0.0.130"));
    let (_, o) = only_reply(&site.link(&msg(INSTALLED, MessageType::Discover)));
    assert_eq!(o.yiaddr, ip("10.0.0.140"));
    // Nobody gets the quarantined .100: the next new client starts at .101.
    let mut cfg = config();
    cfg.subnets[0].allow_unknown = true;
    let mut site = Site::with(
        cfg,
        vec![stored(
            "10.0.0.100",
            STRANGER,
            LeaseState::Declined,
            t - 10,
            t + 50,
        )],
    );
    assert_eq!(
        only_reply(&site.link(&msg(DYNAMIC, MessageType::Discover)))
            .1
            .yiaddr,
        ip("10.0.0.101")
    );
}

#[test]
fn rebinding_elsewhere_releases_the_old_binding() {
    let mut site = Site::new();
    let a = site.dora(DYNAMIC);
    // The operator reserves an address for it; its next renewal is refused and it rebinds.
    let mut cfg = config();
    if let Some(m) = cfg.machines.get_mut(&DYNAMIC) {
        m.ip = Some(ip("10.0.0.60"));
    }
    let leases = vec![stored(
        &a.to_string(),
        DYNAMIC,
        LeaseState::Bound,
        T0.0,
        T0.0 + 3600,
    )];
    let mut site = Site::with(cfg, leases);
    let mut renew = msg(DYNAMIC, MessageType::Request);
    renew.ciaddr = a;
    let (_, nak) = only_reply(&site.link_to(&renew, SERVER));
    assert_eq!(nak.message_type(), Some(MessageType::Nak));
    let cmds = site.link(&{
        let mut r = msg(DYNAMIC, MessageType::Request);
        r.options.set_ipv4(code::REQUESTED_IP, ip("10.0.0.60"));
        r
    });
    let p = persisted(&cmds);
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!((p[0].ip, p[0].state), (a, LeaseState::Released));
    assert_eq!((p[1].ip, p[1].state), (ip("10.0.0.60"), LeaseState::Bound));
    assert_eq!(site.server.active_leases(site.now), 1);
}

#[test]
#[allow(clippy::disallowed_methods)]
fn new_with_20000_machines_and_leases_is_fast() {
    let mut cfg = config();
    cfg.subnets[0].cidr = "10.0.0.0/16".parse().unwrap();
    cfg.subnets[0].range = Some((ip("10.0.1.0"), ip("10.0.255.254")));
    let mut leases = Vec::new();
    for i in 0..20_000u32 {
        let mac = MacAddr([0x52, 0x55, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        let reserved = i % 2 == 0;
        let addr = Ipv4Addr::from(u32::from(ip("10.0.1.0")) + i);
        cfg.machines.insert(
            mac,
            Machine {
                mac,
                ip: reserved.then_some(addr),
                hostname: format!("n{i}"),
                boot_profile: None,
                netboot: true,
            },
        );
        leases.push(stored(
            &addr.to_string(),
            mac,
            LeaseState::Bound,
            T0.0,
            T0.0 + 3600,
        ));
    }
    let start = std::time::Instant::now();
    let mut site = Site::with(cfg, leases);
    let took = start.elapsed();
    println!("Server::new with 20000 machines and leases: {took:?}");
    // Release builds take a few milliseconds; this bound holds for unoptimised builds too.
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");
    assert_eq!(site.server.active_leases(site.now), 20_000);
    let usage = &site.server.pool_usage(site.now)[0];
    assert_eq!(usage.size, 65_279 - 10_000);
    assert_eq!(usage.used, 10_000);
    // A new machine gets the first free address after all of them.
    assert_eq!(site.dora(DYNAMIC), ip("10.0.79.32"));
}
