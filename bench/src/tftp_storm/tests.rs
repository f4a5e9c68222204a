//! Transcripts of the client and the storm on virtual time against scripted server packets.

use std::time::{Duration, Instant};

use super::client::{Client, ClientParams, Failure, Payload, State, Target, Transmit};
use super::packet::{OP_DATA, OP_ERROR, OP_OACK};
use super::storm::{Storm, StormConfig};

const TID: u16 = 40000;

/// The virtual clock's origin: `Instant` has no constructor, so read the real clock once; all
/// later times are offsets from it.
#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

fn params() -> ClientParams {
    ClientParams {
        blksize: 1468,
        windowsize: 4,
        options: true,
        timeout: Duration::from_secs(1),
        retries: 2,
        expect_size: None,
    }
}

fn data(block: u16) -> [u8; 4] {
    let b = block.to_be_bytes();
    let op = OP_DATA.to_be_bytes();
    [op[0], op[1], b[0], b[1]]
}

fn oack(opts: &[(&str, &str)]) -> Vec<u8> {
    let mut p = OP_OACK.to_be_bytes().to_vec();
    for (k, v) in opts {
        p.extend_from_slice(k.as_bytes());
        p.push(0);
        p.extend_from_slice(v.as_bytes());
        p.push(0);
    }
    p
}

fn ack(block: u16) -> Option<Transmit> {
    Some(Transmit {
        target: Target::Tid(TID),
        payload: Payload::Ack(block),
    })
}

/// Feed DATA `block` with `len` payload bytes.
fn feed(c: &mut Client, now: Instant, block: u16, len: usize) -> Option<Transmit> {
    c.handle(now, TID, &data(block), len + 4)
}

#[test]
fn windowed_transfer_acks_each_window_and_the_last_block() {
    let t0 = origin();
    let mut c = Client::new(params());
    assert_eq!(c.start(t0).target, Target::Listener);
    let o = oack(&[("blksize", "1468"), ("windowsize", "4"), ("tsize", "14900")]);
    assert_eq!(c.handle(t0, TID, &o, o.len()), ack(0));
    // 10 full blocks and a short 220-byte one: 14,900 bytes.
    let mut acks = Vec::new();
    for b in 1..=10u16 {
        if let Some(t) = feed(&mut c, t0, b, 1468) {
            acks.push(t);
        }
    }
    assert_eq!(acks, vec![ack(4).unwrap(), ack(8).unwrap()]);
    let end = t0 + Duration::from_millis(30);
    assert_eq!(feed(&mut c, end, 11, 220), ack(11));
    assert_eq!(c.state(), State::Done);
    assert_eq!(c.bytes(), 14_900);
    assert_eq!(c.completion_time(), Some(Duration::from_millis(30)));
    // A late duplicate after the end is ignored.
    assert_eq!(feed(&mut c, end, 11, 220), None);
}

#[test]
fn no_oack_means_512_byte_blocks_acked_one_by_one() {
    let t0 = origin();
    let mut c = Client::new(params());
    c.start(t0);
    assert_eq!(feed(&mut c, t0, 1, 512), ack(1));
    assert_eq!(feed(&mut c, t0, 2, 512), ack(2));
    assert_eq!(feed(&mut c, t0, 3, 0), ack(3));
    assert_eq!(c.state(), State::Done);
    assert_eq!((c.bytes(), c.blksize(), c.window()), (1024, 512, 1));
}

#[test]
fn block_numbers_wrap_past_65535() {
    let t0 = origin();
    let mut c = Client::new(params());
    c.start(t0);
    let o = oack(&[("blksize", "512")]);
    assert_eq!(c.handle(t0, TID, &o, o.len()), ack(0));
    let blocks = 70_000u64;
    for n in 1..=blocks {
        let b = (n % 65_536) as u16;
        assert_eq!(feed(&mut c, t0, b, 512), ack(b), "block {n}");
    }
    let last = ((blocks + 1) % 65_536) as u16;
    assert_eq!(feed(&mut c, t0, last, 7), ack(last));
    assert_eq!(c.state(), State::Done);
    assert_eq!(c.bytes(), blocks * 512 + 7);
}

#[test]
fn a_gap_is_answered_once_with_the_last_in_order_ack() {
    let t0 = origin();
    let mut c = Client::new(params());
    c.start(t0);
    let o = oack(&[("blksize", "1468"), ("windowsize", "4")]);
    c.handle(t0, TID, &o, o.len());
    assert_eq!(feed(&mut c, t0, 1, 1468), None);
    assert_eq!(feed(&mut c, t0, 2, 1468), None);
    // Block 3 lost: 4 is out of order, answered with ACK 2 once; 5 and 6 are dropped quietly.
    assert_eq!(feed(&mut c, t0, 4, 1468), ack(2));
    assert_eq!(feed(&mut c, t0, 5, 1468), None);
    assert_eq!(feed(&mut c, t0, 6, 1468), None);
    // The server resends a window from 3.
    for b in 3..=5 {
        assert_eq!(feed(&mut c, t0, b, 1468), None, "block {b}");
    }
    assert_eq!(feed(&mut c, t0, 6, 1468), ack(6));
    assert_eq!(c.counters().out_of_order, 3);
    assert_eq!(c.counters().reacks, 1);
    assert_eq!(c.bytes(), 6 * 1468);
}

#[test]
fn silence_resends_then_fails() {
    let t0 = origin();
    let mut c = Client::new(params());
    c.start(t0);
    let s = Duration::from_millis(1000);
    assert_eq!(c.handle_timeout(t0 + s / 2), None);
    let rrq = Some(Transmit {
        target: Target::Listener,
        payload: Payload::Rrq,
    });
    assert_eq!(c.handle_timeout(t0 + s), rrq);
    assert_eq!(c.handle_timeout(t0 + 2 * s), rrq);
    assert_eq!(c.handle_timeout(t0 + 3 * s), None);
    assert_eq!(c.state(), State::Failed(Failure::Timeout));
    assert_eq!(c.counters().rrq_resends, 2);

    // Mid-transfer, the last ACK is what goes out again; progress resets the count.
    let mut c = Client::new(params());
    c.start(t0);
    assert_eq!(feed(&mut c, t0, 1, 512), ack(1));
    assert_eq!(c.handle_timeout(t0 + s), ack(1));
    assert_eq!(feed(&mut c, t0 + s, 2, 512), ack(2));
    assert_eq!(c.handle_timeout(t0 + 2 * s), ack(2));
    assert_eq!(c.handle_timeout(t0 + 3 * s), ack(2));
    assert_eq!(c.handle_timeout(t0 + 4 * s), None);
    assert_eq!(c.state(), State::Failed(Failure::Timeout));
}

#[test]
fn errors_sizes_and_strays() {
    let t0 = origin();
    let mut c = Client::new(params());
    c.start(t0);
    let mut e = OP_ERROR.to_be_bytes().to_vec();
    e.extend_from_slice(&[0, 1]);
    e.extend_from_slice(b"File not found\0");
    assert_eq!(c.handle(t0, TID, &e, e.len()), None);
    assert_eq!(c.state(), State::Failed(Failure::ServerError(1)));

    let mut c = Client::new(params());
    c.start(t0);
    let o = oack(&[("blksize", "512"), ("tsize", "1000")]);
    c.handle(t0, TID, &o, o.len());
    // A packet from another port is not the transfer's.
    assert_eq!(c.handle(t0, TID + 1, &data(1), 516), None);
    assert_eq!(c.counters().stray, 1);
    feed(&mut c, t0, 1, 512);
    feed(&mut c, t0, 2, 100);
    assert_eq!(c.state(), State::Failed(Failure::SizeMismatch));

    let mut c = Client::new(params());
    c.start(t0);
    assert_eq!(feed(&mut c, t0, 1, 600), None);
    assert_eq!(c.state(), State::Failed(Failure::Protocol));
}

#[test]
fn storm_starts_clients_and_reports() {
    let t0 = origin();
    let config = StormConfig {
        clients: 3,
        params: params(),
        ramp: Some(10.0),
    };
    let mut s = Storm::new(config, t0);
    assert_eq!(s.poll_transmit(t0).map(|t| t.0), Some(0));
    assert_eq!(
        s.poll_transmit(t0),
        None,
        "the ramp spaces starts 100 ms apart"
    );
    assert_eq!(s.next_start(), Some(t0 + Duration::from_millis(100)));
    let t1 = t0 + Duration::from_millis(200);
    assert_eq!(s.poll_transmit(t1).map(|t| t.0), Some(1));
    assert_eq!(s.poll_transmit(t1).map(|t| t.0), Some(2));
    // Clients 0 and 1 get a 2-block file; client 2 never hears back.
    for i in 0..2 {
        s.handle(t1, i, TID, &data(1), 516);
        s.handle(t1 + Duration::from_millis(500), i, TID, &data(2), 4 + 488);
    }
    let acks: Vec<usize> = std::iter::from_fn(|| s.poll_transmit(t1).map(|t| t.0)).collect();
    assert_eq!(acks, vec![0, 0, 1, 1]);
    assert!(!s.is_done());
    let r = s.report(t1 + Duration::from_millis(800));
    assert_eq!((r.counters.completed, r.counters.unfinished), (2, 1));
    assert_eq!(r.counters.bytes, 2 * 1000);
    // Client 0 started at t0, client 1 at t1 = t0 + 200 ms; both finished at t1 + 500 ms.
    assert_eq!((r.completion.p50_ms, r.completion.max_ms), (500.0, 700.0));
    assert!(
        (r.elapsed_s - 1.0).abs() < 1e-9,
        "first start to the cut-off"
    );
    assert!((r.aggregate_mb_per_s - 0.002).abs() < 1e-9);
    for k in 1..=3u32 {
        s.handle_timeout(t1 + Duration::from_secs(u64::from(k)));
    }
    assert!(s.is_done());
    let r = s.report(t1 + Duration::from_secs(10));
    assert_eq!(r.counters.failed_timeout, 1);
    assert_eq!(r.counters.rrq_resends, 2);
}
