//! Event batches, acknowledgements, in-flight limits and resending after a reconnect.

use ims_proto::EventsAck;

use super::*;

#[test]
fn events_go_in_batches_of_256_and_acks_remove_them() {
    let mut h = Harness::new(None);
    h.add_events(600);
    let sent = h.establish(10_000);
    assert_eq!(
        batches(&sent)
            .iter()
            .map(|b| (b[0], b[b.len() - 1], b.len()))
            .collect::<Vec<_>>(),
        vec![(1, 256, 256), (257, 512, 256), (513, 600, 88)],
        "three batches in order, within the in-flight limit"
    );
    h.receive(EventsAck { up_to: 256 });
    assert_eq!(
        h.take_commands(),
        vec![Command::RemoveOutbox { through: 256 }]
    );
    assert_eq!(h.outbox.keys().next().copied(), Some(257));
    // A duplicate or older ack changes nothing.
    h.receive(EventsAck { up_to: 100 });
    assert!(h.take_commands().is_empty());
    h.receive(EventsAck { up_to: 600 });
    assert_eq!(
        h.take_commands(),
        vec![Command::RemoveOutbox { through: 600 }]
    );
    assert!(h.outbox.is_empty());
    // New events are picked up by the next poll.
    h.add_events(3);
    h.advance(SEC);
    assert_eq!(batches(&h.take_sent()), vec![vec![601, 602, 603]]);
    assert_eq!(h.session.acked_through(), 600);
}

#[test]
fn at_most_four_batches_wait_for_an_ack() {
    let mut h = Harness::new(None);
    h.add_events(2000);
    let sent = h.establish(10_000);
    let sent_batches = batches(&sent);
    assert_eq!(sent_batches.len(), 4);
    assert_eq!(sent_batches[3].last().copied(), Some(1024));
    h.advance(5 * SEC);
    assert!(batches(&h.take_sent()).is_empty(), "waiting for acks");
    // Each ack frees a slot: the next batch follows at once.
    h.receive(EventsAck { up_to: 256 });
    let next = batches(&h.take_sent());
    assert_eq!(next.len(), 1);
    assert_eq!((next[0][0], next[0].len()), (1025, 256));
}

#[test]
fn unacknowledged_events_are_resent_after_a_reconnect() {
    let mut h = Harness::new(None);
    h.add_events(300);
    let sent = h.establish(10_000);
    assert_eq!(batches(&sent).len(), 2);
    h.receive(EventsAck { up_to: 256 });
    h.take_commands();
    // The connection drops before 257..300 are acknowledged.
    h.session.handle_closed(h.now, "connection lost");
    h.drain();
    h.take_commands();
    h.add_events(10);
    h.run_until(h.now + 2 * SEC);
    let sent = h.establish(10_000);
    assert_eq!(
        batches(&sent),
        vec![(257..=310).collect::<Vec<u64>>()],
        "same ids again (idempotent), then the new ones"
    );
    h.receive(EventsAck { up_to: 310 });
    assert_eq!(
        h.take_commands(),
        vec![Command::RemoveOutbox { through: 310 }]
    );
}

#[test]
fn an_ack_beyond_what_was_sent_is_clamped() {
    let mut h = Harness::new(None);
    h.add_events(5);
    h.establish(10_000);
    h.receive(EventsAck { up_to: 99 });
    let cmds = h.take_commands();
    assert!(
        matches!(&cmds[0], Command::Warn(w) if w.contains("99")),
        "{cmds:?}"
    );
    assert_eq!(cmds[1], Command::RemoveOutbox { through: 5 });
}

#[test]
fn reads_from_an_earlier_connection_are_ignored() {
    let mut h = Harness::new(None);
    h.serve_outbox = false;
    h.add_events(3);
    h.establish(10_000);
    assert_eq!(h.pending_reads, vec![(0, 256)]);
    h.session.handle_closed(h.now, "lost");
    h.drain();
    // The old read completes after the connection is gone: nothing is sent.
    let events: Vec<EdgeEvent> = h.outbox.values().cloned().collect();
    h.session.handle_outbox(h.now, 0, events.clone(), 3, false);
    h.drain();
    assert!(batches(&h.take_sent()).is_empty());
    // On the next connection the read is asked again and answered.
    h.pending_reads.clear();
    h.run_until(h.now + 2 * SEC);
    h.establish(10_000);
    assert_eq!(h.pending_reads, vec![(0, 256)]);
    h.session.handle_outbox(h.now, 0, events, 3, false);
    h.drain();
    assert_eq!(batches(&h.take_sent()), vec![vec![1, 2, 3]]);
}

#[test]
fn a_read_of_only_unknown_kinds_skips_and_removes_them() {
    let mut h = Harness::new(None);
    h.serve_outbox = false;
    h.establish(10_000);
    let (after, _) = h.pending_reads.remove(0);
    // Ids 1..=4 were all of a kind this build cannot send.
    h.session.handle_outbox(h.now, after, Vec::new(), 4, false);
    h.drain();
    assert!(batches(&h.take_sent()).is_empty());
    assert_eq!(
        h.take_commands(),
        vec![Command::RemoveOutbox { through: 4 }]
    );
    // The next poll reads after them.
    h.advance(SEC);
    assert_eq!(h.pending_reads, vec![(4, 256)]);
}
