//! Transcript tests of the generator on virtual time against a scripted server.

use super::*;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const MS: Duration = Duration::from_millis(1);

/// The virtual clock's origin: `Instant` has no constructor, so read the real clock once; every
/// later instant is derived from it by adding durations.
#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

fn macs(n: u8) -> Vec<MacAddr> {
    (0..n).map(|i| MacAddr([2, 0, 0, 0, 0, i])).collect()
}

fn config(n_macs: u8, count: u64) -> LoadConfig {
    LoadConfig {
        macs: macs(n_macs),
        count,
        rate: None,
        concurrency: 64,
        timeout: 100 * MS,
        tries: 2,
        xid_base: 1000,
        addressing: Addressing::Relay {
            giaddr: Ipv4Addr::new(10, 78, 0, 2),
        },
    }
}

/// The request's message type (option 53 is the first option the generator writes).
fn request_type(payload: &[u8]) -> u8 {
    assert_eq!(&payload[240..242], &[53, 1]);
    payload[242]
}

fn xid(payload: &[u8]) -> u32 {
    u32::from_be_bytes(payload[4..8].try_into().unwrap())
}

/// A reply of `kind` to `request`, offering/assigning `yiaddr`.
fn answer(request: &[u8], kind: u8, yiaddr: Ipv4Addr) -> Vec<u8> {
    let mut out = request[..240].to_vec();
    out[0] = 2;
    out[16..20].copy_from_slice(&yiaddr.octets());
    out.extend_from_slice(&[53, 1, kind, 54, 4]);
    out.extend_from_slice(&SERVER.octets());
    out.push(255);
    out
}

/// A well-behaved server: OFFERs 10.78.0.<last MAC octet + 10> and ACKs what was requested.
fn serve(request: &[u8]) -> Vec<u8> {
    let yiaddr = Ipv4Addr::new(10, 78, 0, request[33] + 10);
    match request_type(request) {
        1 => answer(request, 2, yiaddr),
        3 => {
            assert_eq!(&request[243..245], &[50, 4], "REQUEST carries option 50");
            assert_eq!(&request[249..251], &[54, 4], "REQUEST carries option 54");
            assert_eq!(&request[251..255], &SERVER.octets());
            let requested = Ipv4Addr::new(request[245], request[246], request[247], request[248]);
            answer(request, 5, requested)
        }
        t => panic!("unexpected request type {t}"),
    }
}

fn drain(g: &mut Generator, now: Instant) -> Vec<Transmit> {
    std::iter::from_fn(|| g.poll_transmit(now)).collect()
}

#[test]
fn full_dora_for_every_client_with_mac_reuse() {
    let t0 = epoch();
    let mut g = Generator::new(
        LoadConfig {
            concurrency: 2,
            ..config(2, 5)
        },
        t0,
    )
    .unwrap();
    let mut now = t0;
    for _ in 0..20 {
        now += MS;
        for t in drain(&mut g, now) {
            assert_eq!(&t.payload[28..34], &t.mac.octets());
            let reply = serve(&t.payload);
            g.handle_reply(now + MS, &reply);
        }
        if g.is_done() {
            break;
        }
    }
    assert!(g.is_done());
    let r = g.report(now + MS);
    let c = &r.counters;
    assert_eq!(
        (c.started, c.completed, r.failed, c.unfinished),
        (5, 5, 0, 0)
    );
    assert_eq!(
        (c.offers, c.acks, c.discovers_sent, c.requests_sent),
        (5, 5, 5, 5)
    );
    assert_eq!(c.acked_macs, 2);
    assert_eq!(r.latency.max_ms, 2.0, "DISCOVER at now, ACK at now + 2 ms");
    assert!(r.sustained_dora_per_s > 0.0);
}

#[test]
fn rate_paces_starts() {
    let t0 = epoch();
    let mut g = Generator::new(
        LoadConfig {
            rate: Some(10.0),
            ..config(10, 3)
        },
        t0,
    )
    .unwrap();
    assert_eq!(drain(&mut g, t0).len(), 1);
    assert_eq!(g.poll_timeout(), Some(t0 + 100 * MS));
    assert!(drain(&mut g, t0 + 99 * MS).is_empty());
    assert_eq!(drain(&mut g, t0 + 100 * MS).len(), 1);
    // Behind schedule: catches up, but never beyond `count`.
    assert_eq!(drain(&mut g, t0 + 5000 * MS).len(), 1);
    assert_eq!(g.report(t0).counters.started, 3);
}

#[test]
fn concurrency_bounds_outstanding_and_a_mac_runs_one_dora_at_a_time() {
    let t0 = epoch();
    let mut g = Generator::new(
        LoadConfig {
            concurrency: 2,
            ..config(10, 10)
        },
        t0,
    )
    .unwrap();
    let sent = drain(&mut g, t0);
    assert_eq!(sent.len(), 2);
    g.handle_reply(t0, &serve(&sent[0].payload));
    // The OFFER's REQUEST goes out; no new DISCOVER while two DORAs are outstanding.
    let next = drain(&mut g, t0);
    assert_eq!(next.len(), 1);
    assert_eq!(request_type(&next[0].payload), 3);

    let mut one = Generator::new(
        LoadConfig {
            concurrency: 4,
            ..config(1, 3)
        },
        t0,
    )
    .unwrap();
    assert_eq!(drain(&mut one, t0).len(), 1, "the only MAC is busy");
}

#[test]
fn retransmits_then_gives_up() {
    let t0 = epoch();
    let mut g = Generator::new(config(1, 1), t0).unwrap();
    let first = drain(&mut g, t0);
    assert_eq!(g.poll_timeout(), Some(t0 + 100 * MS));
    g.handle_timeout(t0 + 99 * MS);
    assert!(drain(&mut g, t0 + 99 * MS).is_empty());
    g.handle_timeout(t0 + 100 * MS);
    let again = drain(&mut g, t0 + 100 * MS);
    assert_eq!(again, first, "same DISCOVER, same xid");
    g.handle_timeout(t0 + 200 * MS);
    assert!(g.is_done());
    let r = g.report(t0 + 300 * MS);
    assert_eq!(
        (r.counters.failed_no_offer, r.counters.retransmits, r.failed),
        (1, 1, 1)
    );
    assert_eq!(r.elapsed_s, 0.2, "ends at the last finished exchange");
    assert_eq!(g.poll_timeout(), None);
}

#[test]
fn offer_reply_cancels_the_discover_timer_and_no_ack_fails() {
    let t0 = epoch();
    let mut g = Generator::new(
        LoadConfig {
            tries: 1,
            ..config(1, 1)
        },
        t0,
    )
    .unwrap();
    let d = drain(&mut g, t0);
    g.handle_reply(t0 + 50 * MS, &serve(&d[0].payload));
    let req = drain(&mut g, t0 + 50 * MS);
    assert_eq!(request_type(&req[0].payload), 3);
    g.handle_timeout(t0 + 100 * MS); // the DISCOVER's stale deadline
    assert!(!g.is_done());
    g.handle_timeout(t0 + 150 * MS);
    assert!(g.is_done());
    assert_eq!(g.report(t0).counters.failed_no_ack, 1);
}

#[test]
fn nak_wrong_address_stray_and_malformed_are_counted() {
    let t0 = epoch();
    let mut g = Generator::new(config(3, 3), t0).unwrap();
    let d = drain(&mut g, t0);
    assert_eq!(d.len(), 3);
    for t in &d {
        g.handle_reply(t0, &serve(&t.payload));
    }
    let reqs = drain(&mut g, t0);
    g.handle_reply(t0, &answer(&reqs[0].payload, 6, Ipv4Addr::UNSPECIFIED));
    g.handle_reply(
        t0,
        &answer(&reqs[1].payload, 5, Ipv4Addr::new(10, 78, 9, 9)),
    );
    // Duplicate OFFER for an exchange already requesting; a reply for another MAC; an unknown xid.
    g.handle_reply(t0, &serve(&d[2].payload));
    let mut other_mac = serve(&reqs[2].payload);
    other_mac[33] ^= 0xff;
    g.handle_reply(t0, &other_mac);
    let mut unknown = serve(&reqs[2].payload);
    unknown[4] ^= 0xff;
    g.handle_reply(t0, &unknown);
    g.handle_reply(t0, b"not dhcp");
    g.handle_reply(t0, &serve(&reqs[2].payload));
    assert!(g.is_done());
    let r = g.report(t0);
    let c = &r.counters;
    assert_eq!(
        (c.failed_nak, c.failed_wrong_address, c.completed),
        (1, 1, 1)
    );
    assert_eq!((c.stray, c.malformed, c.naks, c.acks), (3, 1, 1, 4));
    assert_eq!(r.failed, 2);
    assert_eq!(xid(&reqs[0].payload), 1000);
}

#[test]
fn sustained_rate_ignores_the_drain() {
    let t0 = epoch();
    // Two clients, one DORA each: the second starts at 100 ms, after the first completed at
    // 10 ms; it then needs a retransmission and completes at 1.2 s.
    let mut g = Generator::new(
        LoadConfig {
            rate: Some(10.0),
            ..config(2, 2)
        },
        t0,
    )
    .unwrap();
    let first = drain(&mut g, t0);
    g.handle_reply(t0 + 5 * MS, &serve(&first[0].payload));
    let req = drain(&mut g, t0 + 5 * MS);
    g.handle_reply(t0 + 10 * MS, &serve(&req[0].payload));
    let second = drain(&mut g, t0 + 100 * MS);
    g.handle_timeout(t0 + 200 * MS);
    let again = drain(&mut g, t0 + 200 * MS);
    assert_eq!(again, second);
    g.handle_reply(t0 + 1100 * MS, &serve(&second[0].payload));
    let req = drain(&mut g, t0 + 1100 * MS);
    g.handle_reply(t0 + 1200 * MS, &serve(&req[0].payload));
    let r = g.report(t0 + 1200 * MS);
    assert_eq!(r.counters.completed, 2);
    assert!((r.dora_per_s - 2.0 / 1.2).abs() < 1e-9);
    assert!(
        (r.sustained_dora_per_s - 10.0).abs() < 1e-9,
        "1 DORA done in the 100 ms window"
    );
}

#[test]
fn cut_off_reports_unfinished() {
    let t0 = epoch();
    let mut g = Generator::new(config(4, 4), t0).unwrap();
    let d = drain(&mut g, t0);
    g.handle_reply(t0, &serve(&d[0].payload));
    let r = g.report(t0 + 1000 * MS);
    assert_eq!(
        (r.counters.unfinished, r.counters.started, r.elapsed_s),
        (4, 4, 1.0)
    );
}

#[test]
fn rejects_unusable_configs() {
    let t0 = epoch();
    let err = |c: LoadConfig| Generator::new(c, t0).unwrap_err();
    assert_eq!(
        err(LoadConfig {
            macs: vec![],
            ..config(1, 1)
        }),
        ConfigError::NoClients
    );
    assert_eq!(
        err(LoadConfig {
            macs: vec![MacAddr::BROADCAST],
            ..config(1, 1)
        }),
        ConfigError::MulticastMac(MacAddr::BROADCAST)
    );
    assert_eq!(
        err(LoadConfig {
            tries: 0,
            ..config(1, 1)
        }),
        ConfigError::Zero
    );
    assert_eq!(
        err(LoadConfig {
            concurrency: 0,
            ..config(1, 1)
        }),
        ConfigError::Zero
    );
    assert_eq!(
        err(LoadConfig {
            rate: Some(0.0),
            ..config(1, 1)
        }),
        ConfigError::BadRate(0.0)
    );
    assert!(matches!(
        err(LoadConfig {
            rate: Some(f64::NAN),
            ..config(1, 1)
        }),
        ConfigError::BadRate(_)
    ));
}
