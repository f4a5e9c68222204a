//! Connecting, Hello/Welcome, heartbeats, liveness, errors and reconnection with backoff.

use ims_proto::{CAP_DELTA, ErrorCode, ErrorReply, ProtocolVersion};

use super::*;

#[test]
fn hello_welcome_then_a_heartbeat_at_each_interval() {
    let mut h = Harness::new(None);
    let hello = h.connect();
    assert_eq!(hello.worker_id.as_deref(), Some("site-a-edge1"));
    assert_eq!(hello.snapshot_generation, None, "nothing stored yet");
    assert!(hello.capabilities.iter().any(|c| c == CAP_DELTA));
    assert_eq!(h.session.phase(), Phase::Handshaking);

    h.receive(welcome(10_000));
    let cmds = h.take_commands();
    assert_eq!(
        cmds,
        vec![Command::Up {
            worker_id: "site-a-edge1".into(),
            site: "site-a".into(),
            heartbeat_interval: 10 * SEC,
        }]
    );
    // The first heartbeat goes out with the Welcome's answer, then one per interval.
    assert_eq!(heartbeats(&h.take_sent()), vec![1]);
    h.advance(SEC);
    h.receive(hb_ack(1));
    assert_eq!(h.session.last_rtt(), Some(SEC));
    let mut seen = Vec::new();
    for _ in 0..5 {
        let before = h.now;
        h.run_until(before + 10 * SEC);
        let sent = heartbeats(&h.take_sent());
        for seq in &sent {
            h.receive(hb_ack(*seq));
        }
        seen.extend(sent);
    }
    assert_eq!(seen, vec![2, 3, 4, 5, 6], "one heartbeat every 10 s");
    assert!(h.session.is_up());
    assert!(h.take_commands().is_empty(), "nothing else happened");
}

#[test]
fn silence_for_four_intervals_is_a_dead_connection_and_reconnects_with_backoff() {
    let mut h = Harness::new(None);
    h.establish(1_000);
    // No acks at all: heartbeats keep going for 4 intervals, then the session gives up.
    h.run_until(Duration::from_millis(3_999));
    assert!(h.session.is_up());
    h.run_until(Duration::from_millis(4_000));
    let cmds = h.take_commands();
    assert!(
        matches!(&cmds[0], Command::Close { reply: None, reason } if reason.contains("no message")),
        "{cmds:?}"
    );
    let first = retry_in(&cmds[1]).expect("Down");
    assert!(matches!(cmds[1], Command::Down { .. }), "{cmds:?}");
    assert!(first >= Duration::from_millis(800) && first <= Duration::from_millis(1200));
    assert_eq!(h.session.phase(), Phase::Waiting);
    assert_eq!(heartbeats(&h.take_sent()), vec![2, 3, 4], "sent meanwhile");

    // Attempts fail; each later one is a quiet Retry, and the delays double (±20 %) to 60 s.
    let mut delays = vec![first];
    for _ in 0..9 {
        h.run_until(h.now + *delays.last().expect("delay"));
        let cmds = h.take_commands();
        assert_eq!(cmds, vec![Command::Connect]);
        h.session.handle_connect_failed(h.now, "connection refused");
        h.drain();
        let cmds = h.take_commands();
        assert!(
            matches!(cmds.as_slice(), [Command::Retry { .. }]),
            "{cmds:?}"
        );
        delays.push(retry_in(&cmds[0]).expect("retry"));
    }
    for (i, d) in delays.iter().enumerate() {
        let base = Duration::from_secs((1u64 << i).min(60));
        assert!(
            *d >= base.mul_f64(0.8) && *d <= base.mul_f64(1.2),
            "attempt {i}: {d:?} not within ±20 % of {base:?}"
        );
    }
    // Success resets the backoff; the next outage is reported again.
    h.run_until(h.now + *delays.last().expect("delay"));
    h.establish(1_000);
    h.session.handle_closed(h.now, "connection lost");
    h.drain();
    let cmds = h.take_commands();
    assert!(
        matches!(cmds.as_slice(), [Command::Down { .. }]),
        "{cmds:?}"
    );
    assert!(retry_in(&cmds[0]).expect("down") <= Duration::from_millis(1200));
}

#[test]
fn no_welcome_in_time_and_slow_connects_time_out() {
    let mut h = Harness::new(None);
    h.connect();
    h.run_until(9 * SEC);
    assert_eq!(h.session.phase(), Phase::Handshaking);
    h.run_until(10 * SEC);
    let cmds = h.take_commands();
    assert!(
        matches!(&cmds[0], Command::Close { reason, .. } if reason.contains("no Welcome")),
        "{cmds:?}"
    );
    assert!(matches!(cmds[1], Command::Down { .. }));
    // A connection attempt that never completes is abandoned too.
    h.run_until(h.now + 2 * SEC);
    assert_eq!(h.take_commands(), vec![Command::Connect]);
    h.run_until(h.now + 10 * SEC);
    let cmds = h.take_commands();
    assert!(
        matches!(&cmds[0], Command::Close { reason, .. } if reason.contains("no connection")),
        "{cmds:?}"
    );
    assert!(matches!(cmds[1], Command::Retry { .. }), "{cmds:?}");
    // A late "connected" for the abandoned attempt changes nothing.
    h.session.handle_connected(h.now);
    h.drain();
    assert!(h.take_sent().is_empty());
    assert_eq!(h.session.phase(), Phase::Waiting);
}

#[test]
fn refusals_close_with_a_clear_reason_and_honour_retry_after() {
    let mut h = Harness::new(None);
    h.connect();
    h.receive(ErrorReply {
        code: ErrorCode::Unauthorized,
        message: "worker site-a-edge1 is revoked".into(),
        retry_after_ms: Some(30_000),
    });
    let cmds = h.take_commands();
    match cmds.as_slice() {
        [
            Command::Close {
                reply: None,
                reason,
            },
            Command::Down { retry_in, .. },
        ] => {
            assert!(reason.contains("revoked"), "{reason}");
            assert!(reason.contains("netbootd enroll"), "{reason}");
            assert!(*retry_in >= 30 * SEC, "retry_after honoured: {retry_in:?}");
        }
        other => panic!("{other:?}"),
    }
    // A Welcome of another major version is refused with UnsupportedVersion.
    h.run_until(h.now + 31 * SEC);
    h.connect();
    let mut w = welcome(10_000);
    w.version = ProtocolVersion::new(ims_proto::PROTOCOL_MAJOR + 1, 0);
    h.receive(w);
    let cmds = h.take_commands();
    match &cmds[0] {
        Command::Close {
            reply: Some(reply), ..
        } => assert_eq!(reply.code, ErrorCode::UnsupportedVersion),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.session.phase(), Phase::Waiting);
}

#[test]
fn unknown_messages_and_early_messages_are_ignored_with_a_warning() {
    let mut h = Harness::new(None);
    h.connect();
    h.receive(ims_proto::EventsAck { up_to: 3 });
    assert!(
        matches!(h.take_commands().as_slice(), [Command::Warn(w)] if w.contains("before its Welcome"))
    );
    h.receive(welcome(10_000));
    h.take_commands();
    h.take_sent();
    h.session.handle_message(
        h.now,
        ControlMessage::Unknown {
            kind: "Reboot".into(),
        },
    );
    h.drain();
    assert!(matches!(h.take_commands().as_slice(), [Command::Warn(w)] if w.contains("Reboot")));
    assert!(h.session.is_up());
    // A zero interval means the default; absurd ones are clamped.
    let mut h = Harness::new(None);
    h.establish(0);
    assert_eq!(h.session.heartbeat_interval(), 10 * SEC);
    let mut h = Harness::new(None);
    h.establish(1);
    assert_eq!(h.session.heartbeat_interval(), Duration::from_millis(100));
}

#[test]
fn a_welcome_naming_another_worker_is_warned_about() {
    let mut h = Harness::new(None);
    h.connect();
    let mut w = welcome(10_000);
    w.worker_id = "site-a-edge1-2".into();
    h.receive(w);
    let cmds = h.take_commands();
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::Warn(w) if w.contains("site-a-edge1-2"))),
        "{cmds:?}"
    );
    assert!(
        h.session.is_up(),
        "the certificate is authoritative; carry on"
    );
}
