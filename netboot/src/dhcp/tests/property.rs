//! Property tests: random sequences of client messages and clock moves from registered and
//! unknown MACs, checked against the invariants the server must keep whatever the order.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::dhcp::LeaseState;

/// Clients: the registered machines plus two unknown MACs.
const CLIENTS: [MacAddr; 7] = [
    RESERVED,
    DYNAMIC,
    ARM,
    RELAYED,
    INSTALLED,
    STRANGER,
    MacAddr([0x02, 0xbb, 0, 0, 0, 1]),
];

/// Addresses clients may name: the small ranges, reservations, an exclusion, off-range and
/// off-subnet addresses.
const ADDRS: [Ipv4Addr; 17] = [
    Ipv4Addr::new(10, 0, 0, 100),
    Ipv4Addr::new(10, 0, 0, 101),
    Ipv4Addr::new(10, 0, 0, 102),
    Ipv4Addr::new(10, 0, 0, 103),
    Ipv4Addr::new(10, 0, 0, 104),
    Ipv4Addr::new(10, 0, 0, 105),
    Ipv4Addr::new(10, 0, 0, 106),
    Ipv4Addr::new(10, 0, 0, 50),
    Ipv4Addr::new(10, 0, 0, 9),
    Ipv4Addr::new(10, 1, 0, 5),
    Ipv4Addr::new(10, 1, 0, 10),
    Ipv4Addr::new(10, 1, 0, 11),
    Ipv4Addr::new(10, 1, 0, 12),
    Ipv4Addr::new(10, 1, 0, 40),
    Ipv4Addr::new(172, 16, 0, 1),
    Ipv4Addr::new(10, 0, 0, 1),
    Ipv4Addr::new(0, 0, 0, 0),
];

/// Range of subnet 0 in this test; .103 excluded, .105 reserved for `ARM`.
const RANGE0: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 106));
const EXCLUDED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 103);
const RANGE1: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(10, 1, 0, 10), Ipv4Addr::new(10, 1, 0, 12));

#[derive(Debug, Clone)]
enum Op {
    Discover {
        c: usize,
        relay: bool,
        addr: Option<usize>,
        bcast: bool,
    },
    Select {
        c: usize,
        relay: bool,
        ours: bool,
        addr: Option<usize>,
    },
    InitReboot {
        c: usize,
        relay: bool,
        addr: usize,
    },
    Renew {
        c: usize,
        relay: bool,
        addr: Option<usize>,
    },
    Decline {
        c: usize,
        relay: bool,
        addr: Option<usize>,
    },
    Release {
        c: usize,
        relay: bool,
        addr: Option<usize>,
    },
    Inform {
        c: usize,
        relay: bool,
    },
    Advance(u64),
    Timeout,
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..CLIENTS.len();
    let a = 0..ADDRS.len();
    prop_oneof![
        4 => (c.clone(), any::<bool>(), proptest::option::of(a.clone()), any::<bool>())
            .prop_map(|(c, relay, addr, bcast)| Op::Discover { c, relay, addr, bcast }),
        4 => (
            c.clone(),
            any::<bool>(),
            prop::bool::weighted(0.85),
            proptest::option::weighted(0.3, a.clone()),
        )
            .prop_map(|(c, relay, ours, addr)| Op::Select { c, relay, ours, addr }),
        1 => (c.clone(), any::<bool>(), a.clone())
            .prop_map(|(c, relay, addr)| Op::InitReboot { c, relay, addr }),
        2 => (c.clone(), any::<bool>(), proptest::option::weighted(0.3, a.clone()))
            .prop_map(|(c, relay, addr)| Op::Renew { c, relay, addr }),
        1 => (c.clone(), any::<bool>(), proptest::option::weighted(0.3, a.clone()))
            .prop_map(|(c, relay, addr)| Op::Decline { c, relay, addr }),
        1 => (c.clone(), any::<bool>(), proptest::option::weighted(0.3, a))
            .prop_map(|(c, relay, addr)| Op::Release { c, relay, addr }),
        1 => (c, any::<bool>()).prop_map(|(c, relay)| Op::Inform { c, relay }),
        2 => (0u64..800).prop_map(Op::Advance),
        1 => Just(Op::Timeout),
    ]
}

fn property_config(allow_unknown: bool) -> DhcpConfig {
    let mut cfg = config();
    cfg.subnets[0].range = Some(RANGE0);
    cfg.subnets[0].exclude = vec![(EXCLUDED, EXCLUDED)];
    cfg.subnets[0].allow_unknown = allow_unknown;
    cfg.subnets[1].range = Some(RANGE1);
    cfg.subnets[1].allow_unknown = allow_unknown;
    if let Some(m) = cfg.machines.get_mut(&ARM) {
        m.ip = Some(ip("10.0.0.105"));
    }
    cfg.decline_quarantine = 300;
    cfg.offer_timeout = 20;
    cfg
}

/// What the test knows: the store as the commands left it, live offers, and each client's last
/// offered / acknowledged address.
#[derive(Default)]
struct Model {
    store: BTreeMap<Ipv4Addr, Lease>,
    offers: BTreeMap<Ipv4Addr, (MacAddr, UnixTime)>,
    last_offer: BTreeMap<MacAddr, Ipv4Addr>,
    last_ack: BTreeMap<MacAddr, Ipv4Addr>,
}

fn in_range(a: Ipv4Addr, r: (Ipv4Addr, Ipv4Addr)) -> bool {
    r.0 <= a && a <= r.1
}

fn check(
    cfg: &DhcpConfig,
    model: &mut Model,
    now: UnixTime,
    mac: Option<MacAddr>,
    relay: bool,
    cmds: &[Command],
) -> Result<(), TestCaseError> {
    let reserved: BTreeMap<Ipv4Addr, MacAddr> = cfg
        .machines
        .values()
        .filter_map(|m| Some((m.ip?, m.mac)))
        .collect();
    let subnet = cfg.subnets[usize::from(relay)].clone();
    let mut persisted_bound: Vec<(Ipv4Addr, MacAddr)> = vec![];
    for cmd in cmds {
        match cmd {
            Command::Persist(l) => {
                if l.state == LeaseState::Bound {
                    if let Some(old) = model.store.get(&l.ip) {
                        let held = matches!(old.state, LeaseState::Bound | LeaseState::Declined)
                            && now < old.ends;
                        prop_assert!(
                            !held || (old.mac == l.mac && old.state == LeaseState::Bound),
                            "{} bound to {} while {:?}",
                            l.ip,
                            l.mac,
                            old
                        );
                    }
                    if let Some(owner) = reserved.get(&l.ip) {
                        prop_assert_eq!(*owner, l.mac, "reserved {} bound to another", l.ip);
                    }
                    prop_assert!(l.ends > now);
                    persisted_bound.push((l.ip, l.mac));
                    model.offers.retain(|_, (m, _)| *m != l.mac);
                    model.offers.remove(&l.ip);
                }
                if l.state == LeaseState::Declined {
                    model.offers.remove(&l.ip);
                }
                if l.state == LeaseState::Released {
                    model.offers.retain(|_, (m, _)| *m != l.mac);
                }
                model.store.insert(l.ip, l.clone());
            }
            Command::Remove(ip) => {
                prop_assert!(
                    model
                        .store
                        .get(ip)
                        .is_some_and(|l| l.state == LeaseState::Declined)
                );
                model.store.remove(ip);
            }
            Command::Discovered(d) => {
                prop_assert!(!cfg.machines.contains_key(&d.mac));
                prop_assert!(subnet.allow_unknown);
            }
            Command::Send(r) => {
                let m =
                    Message::parse(&r.payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let client = m.client_mac().unwrap();
                prop_assert_eq!(Some(client), mac);
                prop_assert!(cfg.machines.contains_key(&client) || subnet.allow_unknown);
                if relay {
                    prop_assert_eq!(
                        r.destination,
                        Destination::Relay(SocketAddrV4::new(GIADDR, 67))
                    );
                }
                let y = m.yiaddr;
                if y.is_unspecified() {
                    continue;
                }
                prop_assert!(subnet.cidr.contains(&y), "{} outside {}", y, subnet.cidr);
                prop_assert_ne!(y, EXCLUDED);
                match cfg.machines.get(&client).and_then(|m| m.ip) {
                    Some(r) => prop_assert_eq!(y, r),
                    None => {
                        let range = subnet.range.unwrap();
                        prop_assert!(in_range(y, range), "{} outside the range", y);
                        prop_assert!(!reserved.contains_key(&y), "reserved {} given away", y);
                    }
                }
                if let Some(l) = model.store.get(&y) {
                    let held =
                        matches!(l.state, LeaseState::Bound | LeaseState::Declined) && now < l.ends;
                    prop_assert!(
                        !held || (l.mac == client && l.state == LeaseState::Bound),
                        "{} given to {} while {:?}",
                        y,
                        client,
                        l
                    );
                }
                match r.message_type {
                    MessageType::Offer => {
                        if let Some((other, expires)) = model.offers.get(&y) {
                            prop_assert!(
                                *other == client || *expires <= now,
                                "{} offered twice",
                                y
                            );
                        }
                        model.offers.retain(|_, (m, _)| *m != client);
                        model
                            .offers
                            .insert(y, (client, now.plus(cfg.offer_timeout)));
                        model.last_offer.insert(client, y);
                    }
                    MessageType::Ack => {
                        prop_assert!(persisted_bound.contains(&(y, client)), "ACK before Persist");
                        model.last_ack.insert(client, y);
                    }
                    other => prop_assert!(false, "unexpected {:?} with yiaddr", other),
                }
            }
        }
    }
    Ok(())
}

fn run(allow_unknown: bool, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let cfg = property_config(allow_unknown);
    let mut site = Site::with(cfg.clone(), vec![]);
    let mut model = Model::default();
    for op in ops {
        let pick = |a: Option<usize>, fallback: Option<&Ipv4Addr>| {
            a.map(|i| ADDRS[i])
                .or(fallback.copied())
                .unwrap_or(Ipv4Addr::UNSPECIFIED)
        };
        let (m, relay) = match op {
            Op::Advance(s) => {
                site.advance(s);
                continue;
            }
            Op::Timeout => {
                let cmds = site.timeout();
                check(&cfg, &mut model, site.now, None, false, &cmds)?;
                continue;
            }
            Op::Discover {
                c,
                relay,
                addr,
                bcast,
            } => {
                let mut m = msg(CLIENTS[c], MessageType::Discover);
                if let Some(a) = addr {
                    m.options.set_ipv4(code::REQUESTED_IP, ADDRS[a]);
                }
                if bcast {
                    m.flags = Message::BROADCAST_FLAG;
                }
                (m, relay)
            }
            Op::Select {
                c,
                relay,
                ours,
                addr,
            } => {
                let mac = CLIENTS[c];
                let mut m = msg(mac, MessageType::Request);
                let id = match (ours, relay) {
                    (false, _) => ip("10.0.0.254"),
                    (true, false) => SERVER,
                    (true, true) => RELAY_LOCAL,
                };
                m.options.set_ipv4(code::SERVER_ID, id);
                m.options
                    .set_ipv4(code::REQUESTED_IP, pick(addr, model.last_offer.get(&mac)));
                (m, relay)
            }
            Op::InitReboot { c, relay, addr } => {
                let mut m = msg(CLIENTS[c], MessageType::Request);
                m.options.set_ipv4(code::REQUESTED_IP, ADDRS[addr]);
                (m, relay)
            }
            Op::Renew { c, relay, addr } => {
                let mac = CLIENTS[c];
                let mut m = msg(mac, MessageType::Request);
                m.ciaddr = pick(addr, model.last_ack.get(&mac));
                (m, relay)
            }
            Op::Decline { c, relay, addr } => {
                let mac = CLIENTS[c];
                let mut m = msg(mac, MessageType::Decline);
                m.options
                    .set_ipv4(code::SERVER_ID, if relay { RELAY_LOCAL } else { SERVER });
                m.options
                    .set_ipv4(code::REQUESTED_IP, pick(addr, model.last_ack.get(&mac)));
                (m, relay)
            }
            Op::Release { c, relay, addr } => {
                let mac = CLIENTS[c];
                let mut m = msg(mac, MessageType::Release);
                m.options
                    .set_ipv4(code::SERVER_ID, if relay { RELAY_LOCAL } else { SERVER });
                m.ciaddr = pick(addr, model.last_ack.get(&mac));
                (m, relay)
            }
            Op::Inform { c, relay } => {
                let mut m = msg(CLIENTS[c], MessageType::Inform);
                m.ciaddr = model
                    .last_ack
                    .get(&CLIENTS[c])
                    .copied()
                    .unwrap_or(ip("10.0.0.9"));
                (m, relay)
            }
        };
        let mac = m.client_mac();
        let foreign = m.options.server_id() == Some(ip("10.0.0.254"));
        let cmds = if relay { site.relay(&m) } else { site.link(&m) };
        if foreign {
            // The client chose another server: ours is no longer held.
            model.offers.retain(|_, (o, _)| Some(*o) != mac);
        }
        check(&cfg, &mut model, site.now, mac, relay, &cmds)?;
        // Bookkeeping agrees with the store the commands built.
        let bound = model
            .store
            .values()
            .filter(|l| l.state == LeaseState::Bound && site.now < l.ends)
            .count();
        prop_assert_eq!(site.server.active_leases(site.now), bound);
        for usage in site.server.pool_usage(site.now) {
            prop_assert!(usage.used <= usage.size, "{:?}", usage);
        }
        if let Some(t) = site.server.poll_timeout() {
            prop_assert!(t > T0, "deadline before the test began");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_for_registered_only(ops in prop::collection::vec(op(), 1..80)) {
        run(false, ops)?;
    }

    #[test]
    fn invariants_hold_in_discovery_mode(ops in prop::collection::vec(op(), 1..80)) {
        run(true, ops)?;
    }
}
