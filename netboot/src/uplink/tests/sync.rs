//! Snapshots and deltas: apply, acknowledge after storing, resync on a mismatch.

use std::net::Ipv4Addr;

use ims_proto::{Delta, ErrorCode, MachineEntry, ResyncRequest, SnapshotAck};

use super::*;

fn machine(last: u8, hostname: &str) -> MachineEntry {
    MachineEntry {
        mac: MacAddr([0x52, 0x54, 0, 0, 0, last]),
        ip: Some(Ipv4Addr::new(10, 77, 0, last)),
        hostname: hostname.into(),
        boot_profile: None,
        netboot: true,
    }
}

fn snapshot(generation: u64, machines: Vec<MachineEntry>) -> Snapshot {
    Snapshot {
        generation,
        machines,
        ..Snapshot::default()
    }
}

fn applied(cmds: &[Command]) -> Vec<Snapshot> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Apply(s) => Some((**s).clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn snapshot_is_applied_then_acknowledged_once_stored() {
    let mut h = Harness::new(None);
    h.establish(10_000);
    // Unsorted, with a repeated MAC: applied normalised.
    h.receive(snapshot(
        5,
        vec![machine(2, "b"), machine(1, "a"), machine(2, "b2")],
    ));
    let apply = applied(&h.take_commands());
    assert_eq!(
        apply,
        vec![snapshot(5, vec![machine(1, "a"), machine(2, "b2")])]
    );
    assert!(h.take_sent().is_empty(), "no ack before it is stored");
    h.session.handle_applied(h.now, 5);
    h.drain();
    assert_eq!(
        h.take_sent(),
        vec![EdgeMessage::SnapshotAck(SnapshotAck { generation: 5 })]
    );
    assert_eq!(h.session.stored_generation(), Some(5));
    // After a reconnect the Hello announces it.
    h.session.handle_closed(h.now, "lost");
    h.drain();
    h.run_until(h.now + 2 * SEC);
    assert_eq!(h.connect().snapshot_generation, Some(5));
}

#[test]
fn deltas_apply_to_the_held_snapshot_and_a_mismatch_asks_for_a_resync() {
    let stored = snapshot(5, vec![machine(1, "a"), machine(2, "b")]);
    let mut h = Harness::new(Some(stored.clone()));
    assert_eq!(h.connect().snapshot_generation, Some(5));
    h.receive(welcome(10_000));
    h.take_commands();
    h.take_sent();

    let next = snapshot(6, vec![machine(1, "a"), machine(3, "c")]);
    h.receive(Delta::between(&stored, &next));
    assert_eq!(applied(&h.take_commands()), vec![next.clone()]);
    // A second delta may build on the first before it is stored.
    let third = snapshot(7, vec![machine(3, "c")]);
    h.receive(Delta::between(&next, &third));
    assert_eq!(applied(&h.take_commands()), vec![third.clone()]);
    h.session.handle_applied(h.now, 6);
    h.session.handle_applied(h.now, 7);
    h.drain();
    assert_eq!(
        h.take_sent(),
        vec![
            EdgeMessage::SnapshotAck(SnapshotAck { generation: 6 }),
            EdgeMessage::SnapshotAck(SnapshotAck { generation: 7 }),
        ]
    );

    // A delta from a generation the edge does not hold: nothing applied, a resync asked.
    let stale = Delta {
        generation: 9,
        base_generation: 8,
        remove_machines: vec![machine(3, "c").mac],
        ..Delta::default()
    };
    h.receive(stale);
    assert!(applied(&h.take_commands()).is_empty());
    match h.take_sent().as_slice() {
        [
            EdgeMessage::ResyncRequest(ResyncRequest {
                have_generation,
                reason,
            }),
        ] => {
            assert_eq!(*have_generation, Some(7));
            assert!(reason.contains("does not apply"), "{reason}");
        }
        other => panic!("expected a ResyncRequest, got {other:?}"),
    }
    assert_eq!(h.session.latest(), Some(&third), "unchanged");
    assert_eq!(h.session.stats().resyncs, 1);
    // The full snapshot that follows replaces everything.
    h.receive(snapshot(9, vec![]));
    assert_eq!(applied(&h.take_commands()), vec![snapshot(9, vec![])]);
}

#[test]
fn a_delta_without_any_snapshot_asks_for_one() {
    let mut h = Harness::new(None);
    h.establish(10_000);
    h.receive(Delta {
        generation: 2,
        base_generation: 1,
        ..Delta::default()
    });
    assert_eq!(
        h.take_sent(),
        vec![EdgeMessage::ResyncRequest(ResyncRequest {
            have_generation: None,
            reason: "no snapshot to apply a delta to".into(),
        })]
    );
}

#[test]
fn a_failed_store_drops_the_connection_and_asks_for_a_full_snapshot_next() {
    let mut h = Harness::new(Some(snapshot(5, vec![])));
    h.establish(10_000);
    h.receive(snapshot(6, vec![machine(1, "a")]));
    h.take_commands();
    h.session.handle_apply_failed(h.now, "MDB_MAP_FULL");
    h.drain();
    let cmds = h.take_commands();
    match &cmds[0] {
        Command::Close {
            reply: Some(reply),
            reason,
        } => {
            assert_eq!(reply.code, ErrorCode::Internal);
            assert!(reason.contains("MDB_MAP_FULL"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.session.latest(), None);
    assert_eq!(h.session.stored_generation(), Some(5), "what is on disk");
    h.run_until(h.now + 2 * SEC);
    assert_eq!(
        h.connect().snapshot_generation,
        None,
        "announce nothing: a delta could not be applied"
    );
}

#[test]
fn an_apply_finishing_while_disconnected_is_not_acknowledged_on_a_dead_connection() {
    let mut h = Harness::new(None);
    h.establish(10_000);
    h.receive(snapshot(3, vec![]));
    h.take_commands();
    h.session.handle_closed(h.now, "lost");
    h.drain();
    h.take_commands();
    h.session.handle_applied(h.now, 3);
    h.drain();
    assert!(h.take_sent().is_empty());
    h.run_until(h.now + 2 * SEC);
    assert_eq!(h.connect().snapshot_generation, Some(3));
}

#[test]
fn the_same_snapshot_again_after_a_reconnect_is_acknowledged_without_applying() {
    let stored = snapshot(4, vec![machine(1, "a")]);
    let mut h = Harness::new(Some(stored.clone()));
    h.establish(10_000);
    h.receive(stored.clone());
    assert!(
        applied(&h.take_commands()).is_empty(),
        "nothing to store again"
    );
    assert_eq!(
        h.take_sent(),
        vec![EdgeMessage::SnapshotAck(SnapshotAck { generation: 4 })]
    );
    // Same generation, other content: applied.
    let changed = snapshot(4, vec![machine(2, "b")]);
    h.receive(changed.clone());
    assert_eq!(applied(&h.take_commands()), vec![changed]);
}
