//! How soon a recorded event leaves: at once (within `outbox_linger`) when the driver reports
//! the append, at the next `outbox_poll` otherwise; bursts still go out in few batches.

use ims_proto::EventsAck;

use super::*;

/// Milliseconds.
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Established, with the first (empty) outbox read done, `offset` after the Welcome.
fn idle_session(offset: Duration) -> Harness {
    let mut h = Harness::new(None);
    h.establish(2_000);
    h.advance(offset);
    h.take_sent();
    h
}

#[test]
fn a_recorded_phone_home_is_sent_within_the_linger_not_at_the_next_poll() {
    let linger = SessionConfig::default().outbox_linger;
    assert!(linger <= ms(20), "{linger:?}");
    // Recorded at several points of the 500 ms poll cycle: always out within the linger.
    for offset in [1, 10, 120, 250, 499] {
        let mut h = idle_session(ms(offset));
        let recorded_at = h.now;
        h.record(1);
        h.run_until(recorded_at + linger);
        assert_eq!(
            batches(&h.take_sent()),
            vec![vec![1]],
            "recorded {offset} ms into the poll cycle: sent by {:?} after it",
            h.now - recorded_at
        );
    }
}

#[test]
fn without_a_report_the_poll_still_finds_events() {
    let mut h = idle_session(ms(100));
    h.add_events(1);
    h.advance(ms(300));
    assert!(batches(&h.take_sent()).is_empty(), "not before the poll");
    h.advance(ms(100));
    assert_eq!(batches(&h.take_sent()), vec![vec![1]], "at the 500 ms poll");
}

#[test]
fn an_event_recorded_during_a_read_is_read_again_at_once() {
    let mut h = Harness::new(None);
    h.serve_outbox = false;
    h.establish(2_000);
    // The read asked at the Welcome is still running when event 1 is recorded.
    assert_eq!(h.pending_reads, vec![(0, 256)]);
    h.pending_reads.clear();
    h.record(1);
    // It returns what it saw before the append: nothing.
    h.session.handle_outbox(h.now, 0, Vec::new(), 0, false);
    h.drain();
    let linger = SessionConfig::default().outbox_linger;
    h.advance(linger);
    assert_eq!(
        h.pending_reads,
        vec![(0, 256)],
        "read again after the linger, not after the 500 ms poll"
    );
}

#[test]
fn a_burst_still_goes_out_in_batches_within_the_in_flight_limit() {
    let mut h = idle_session(ms(50));
    // 1,000 events, one per 100 µs (each reported), no acknowledgements yet.
    for _ in 0..1_000 {
        h.record(1);
        h.advance(Duration::from_micros(100));
    }
    let sent = batches(&h.take_sent());
    assert_eq!(sent.len(), 4, "at most four batches in flight: {sent:?}");
    assert!(
        sent.iter().skip(1).all(|b| b.len() >= 40),
        "the linger gathers events: {:?}",
        sent.iter().map(Vec::len).collect::<Vec<_>>()
    );
    // The acknowledgements free the slots and the rest follows, in order, with no gap.
    let mut all: Vec<u64> = sent.concat();
    for _ in 0..20 {
        let Some(&last) = all.last() else { break };
        h.receive(EventsAck { up_to: last });
        h.advance(ms(10));
        all.extend(batches(&h.take_sent()).concat());
        if all.len() == 1_000 {
            break;
        }
    }
    assert_eq!(all, (1..=1_000).collect::<Vec<u64>>());
}

#[test]
fn a_report_while_not_connected_changes_nothing() {
    let mut h = Harness::new(None);
    assert_eq!(h.session.phase(), Phase::Connecting);
    h.record(1);
    assert!(h.take_sent().is_empty());
    // Once established the event goes with the first read.
    let sent = h.establish(2_000);
    assert_eq!(batches(&sent), vec![vec![1]]);
}
