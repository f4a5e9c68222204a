//! One transfer at a time: negotiation, windows, ACK handling, timeouts, rollover.

use super::super::netascii;
use super::super::wire::code;
use super::*;

/// The OACK in `cmds` (from `id` to `peer`), as (name, value) pairs.
fn oack(cmds: &[Command], id: TransferId, peer: SocketAddr) -> Vec<(String, String)> {
    match sent(cmds).as_slice() {
        [(Source::Transfer(i), p, wire::Packet::Oack { options })] if *i == id && *p == peer => {
            options.clone()
        }
        other => panic!("expected one OACK, got {other:?}"),
    }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn octet_without_options_is_lock_step_at_512() {
    let mut h = Harness::new(limits());
    let peer = client(1);
    let (id, cmds) = h.start(peer, "pxelinux.0", &[], 1300);
    assert_eq!(data(&cmds, id, peer), [(1, 0, 512)]);
    assert_eq!(h.server.poll_timeout(), Some(h.now + TIMEOUT));
    h.now += Duration::from_millis(3);
    assert_eq!(data(&h.ack(id, peer, 1), id, peer), [(2, 512, 512)]);
    assert_eq!(data(&h.ack(id, peer, 2), id, peer), [(3, 1024, 276)]);
    h.now += Duration::from_millis(4);
    let cmds = h.ack(id, peer, 3);
    assert_eq!(
        ended(&cmds, id),
        Outcome::Completed {
            bytes: 1300,
            retransmits: 0,
            duration: Duration::from_millis(7),
            blksize: 512,
            windowsize: 1
        }
    );
    assert_eq!(h.server.poll_timeout(), None);
    let s = h.server.stats();
    assert_eq!(
        (s.started, s.completed, s.data_packets_sent, s.bytes_sent),
        (1, 1, 3, 1300)
    );
    assert_eq!((s.last_blksize, s.last_windowsize), (512, 1));
    // Late packets for a closed transfer are ignored.
    assert!(h.ack(id, peer, 3).is_empty());
    check_stats(&h.server);
}

#[test]
fn started_event_reports_negotiation() {
    let mut h = Harness::new(limits());
    let id = h.admit(
        client(1),
        "f",
        &[("blksize", "1024"), ("windowsize", "4"), ("tsize", "0")],
    );
    let cmds = h.opened(id, 5000);
    assert_eq!(
        cmds[0],
        Command::Event(TransferEvent::Started {
            id,
            peer: client(1),
            path: "f".into(),
            blksize: 1024,
            windowsize: 4,
            tsize: true
        })
    );
}

#[test]
fn options_get_an_oack_then_data_after_ack_0() {
    let mut h = Harness::new(limits());
    let peer = client(1);
    let (id, cmds) = h.start(
        peer,
        "f",
        &[("tsize", "0"), ("BlkSize", "1024"), ("unknown", "1")],
        3000,
    );
    assert_eq!(
        oack(&cmds, id, peer),
        pairs(&[("tsize", "3000"), ("blksize", "1024")])
    );
    assert!(data(&cmds, id, peer).is_empty(), "no DATA before ACK 0");
    assert_eq!(data(&h.ack(id, peer, 0), id, peer), [(1, 0, 1024)]);
    // A duplicated ACK 0 does not send DATA 1 again.
    assert!(h.ack(id, peer, 0).is_empty());
    assert_eq!(h.server.stats().duplicate_acks, 1);
    assert_eq!(data(&h.ack(id, peer, 1), id, peer), [(2, 1024, 1024)]);
    assert_eq!(data(&h.ack(id, peer, 2), id, peer), [(3, 2048, 952)]);
    assert!(matches!(
        ended(&h.ack(id, peer, 3), id),
        Outcome::Completed { bytes: 3000, .. }
    ));
    check_stats(&h.server);
}

#[test]
fn grants_are_capped_and_invalid_options_ignored() {
    let mut h = Harness::new(limits());
    let peer = client(1);
    let (id, cmds) = h.start(
        peer,
        "f",
        &[("blksize", "65464"), ("windowsize", "500")],
        10,
    );
    assert_eq!(
        oack(&cmds, id, peer),
        pairs(&[("blksize", "1468"), ("windowsize", "16")])
    );
    // Only invalid options: no OACK, DATA at 512 right away.
    let peer = client(2);
    let (id, cmds) = h.start(
        peer,
        "f",
        &[("blksize", "4"), ("timeout", "0"), ("windowsize", "x")],
        600,
    );
    assert!(sent(&cmds).is_empty(), "{cmds:?}");
    assert_eq!(data(&cmds, id, peer), [(1, 0, 512)]);
}

#[test]
fn oack_is_retransmitted_then_given_up() {
    let mut h = Harness::new(limits());
    let peer = client(1);
    let (id, cmds) = h.start(peer, "f", &[("blksize", "1024")], 10);
    let first = oack(&cmds, id, peer);
    for _ in 0..RETRIES {
        assert_eq!(oack(&h.advance(TIMEOUT), id, peer), first);
    }
    let cmds = h.advance(TIMEOUT);
    assert_eq!(error(&cmds).2, code::NOT_DEFINED);
    assert_eq!(
        ended(&cmds, id),
        Outcome::Failed {
            reason: FailReason::Timeout
        }
    );
    check_stats(&h.server);
}

#[test]
fn timeout_option_sets_the_retransmission_timer() {
    let mut h = Harness::new(limits());
    let peer = client(1);
    let (id, cmds) = h.start(peer, "f", &[("timeout", "3")], 10);
    assert_eq!(oack(&cmds, id, peer), pairs(&[("timeout", "3")]));
    h.ack(id, peer, 0);
    assert!(h.advance(Duration::from_millis(2999)).is_empty());
    assert_eq!(
        data(&h.advance(Duration::from_millis(1)), id, peer),
        [(1, 0, 10)]
    );
}

#[test]
fn window_of_4_with_a_lost_data_restarts_after_the_partial_ack() {
    let mut h = Harness::new(limits());
    let peer = client(1);
    // 11 blocks: ten full, one of 100 bytes.
    let (id, _) = h.start(peer, "f", &[("windowsize", "4")], 10 * 512 + 100);
    let w = data(&h.ack(id, peer, 0), id, peer);
    assert_eq!(
        w,
        [(1, 0, 512), (2, 512, 512), (3, 1024, 512), (4, 1536, 512)]
    );
    // DATA 2 was lost: the client acknowledges 1; the window restarts at 2.
    let w = data(&h.ack(id, peer, 1), id, peer);
    assert_eq!(w.iter().map(|d| d.0).collect::<Vec<_>>(), [2, 3, 4, 5]);
    assert_eq!(h.server.stats().retransmitted_packets, 3);
    // Stale ACK 1 again (the client saw 3 and 4 out of order): ignored.
    assert!(h.ack(id, peer, 1).is_empty());
    // ACK of a block never sent: ignored.
    assert!(h.ack(id, peer, 9).is_empty());
    let w = data(&h.ack(id, peer, 5), id, peer);
    assert_eq!(w.iter().map(|d| d.0).collect::<Vec<_>>(), [6, 7, 8, 9]);
    let w = data(&h.ack(id, peer, 9), id, peer);
    assert_eq!(w, [(10, 9 * 512, 512), (11, 10 * 512, 100)]);
    let cmds = h.ack(id, peer, 11);
    assert!(matches!(
        ended(&cmds, id),
        Outcome::Completed {
            bytes: 5220,
            retransmits: 3,
            ..
        }
    ));
    let s = h.server.stats();
    assert_eq!(
        (
            s.data_packets_sent,
            s.retransmitted_packets,
            s.duplicate_acks,
            s.ignored_datagrams
        ),
        (14, 3, 1, 1)
    );
    check_stats(&h.server);
}

#[test]
fn duplicate_acks_never_trigger_duplicate_data() {
    let mut h = Harness::new(limits());
    let peer = client(1);
    let (id, _) = h.start(peer, "f", &[], 2000);
    assert_eq!(data(&h.ack(id, peer, 1), id, peer), [(2, 512, 512)]);
    // Sorcerer's Apprentice: the delayed duplicate of ACK 1 must not resend DATA 2.
    for _ in 0..3 {
        assert!(h.ack(id, peer, 1).is_empty());
    }
    assert_eq!(h.server.stats().duplicate_acks, 3);
    assert_eq!(h.server.stats().retransmitted_packets, 0);
    assert_eq!(data(&h.ack(id, peer, 2), id, peer), [(3, 1024, 512)]);
}

#[test]
fn lost_acks_retransmit_the_window_then_give_up() {
    let mut h = Harness::new(limits());
    let peer = client(1);
    let (id, _) = h.start(peer, "f", &[("windowsize", "2")], 5000);
    assert_eq!(data(&h.ack(id, peer, 0), id, peer).len(), 2);
    // One ACK lost: the window goes again; progress resets the retry count.
    assert_eq!(
        data(&h.advance(TIMEOUT), id, peer),
        [(1, 0, 512), (2, 512, 512)]
    );
    assert_eq!(data(&h.advance(TIMEOUT), id, peer).len(), 2);
    assert_eq!(data(&h.ack(id, peer, 2), id, peer).len(), 2);
    for n in 1..=RETRIES {
        let cmds = h.advance(TIMEOUT);
        assert_eq!(
            data(&cmds, id, peer),
            [(3, 1024, 512), (4, 1536, 512)],
            "retry {n}"
        );
    }
    let cmds = h.advance(TIMEOUT);
    assert!(data(&cmds, id, peer).is_empty());
    let (source, p, c, message) = error(&cmds);
    assert_eq!(
        (source, p, c),
        (Source::Transfer(id), peer, code::NOT_DEFINED)
    );
    assert!(message.contains("timed out"), "{message}");
    assert_eq!(
        ended(&cmds, id),
        Outcome::Failed {
            reason: FailReason::Timeout
        }
    );
    assert_eq!(h.server.stats().failed[&FailReason::Timeout], 1);
    assert_eq!(
        h.server.stats().retransmitted_packets,
        4 + 2 * u64::from(RETRIES)
    );
    assert_eq!(h.server.poll_timeout(), None);
    check_stats(&h.server);
}

#[test]
fn exact_multiple_of_blksize_ends_with_an_empty_block() {
    let mut h = Harness::new(limits());
    let peer = client(1);
    let (id, cmds) = h.start(peer, "f", &[], 1024);
    assert_eq!(data(&cmds, id, peer), [(1, 0, 512)]);
    assert_eq!(data(&h.ack(id, peer, 1), id, peer), [(2, 512, 512)]);
    assert_eq!(data(&h.ack(id, peer, 2), id, peer), [(3, 1024, 0)]);
    assert!(matches!(
        ended(&h.ack(id, peer, 3), id),
        Outcome::Completed { bytes: 1024, .. }
    ));
    // An empty file is one empty block.
    let (id, cmds) = h.start(client(2), "empty", &[], 0);
    assert_eq!(data(&cmds, id, client(2)), [(1, 0, 0)]);
}

#[test]
fn netascii_is_served_at_its_converted_size() {
    let mut h = Harness::new(limits());
    let peer = client(1);
    let text = b"line one\nline two\r\nend\n".repeat(30);
    let size = netascii::encoded_len(&text);
    assert_eq!(size, netascii::encode(&text).len() as u64);
    assert_eq!(size, text.len() as u64 + 4 * 30);
    let cmds = h.request(peer, &rrq("boot.cfg", "netascii", &[("tsize", "0")]));
    let [
        Command::Open {
            id,
            mode: Mode::Netascii,
            ..
        },
    ] = cmds.as_slice()
    else {
        panic!("{cmds:?}")
    };
    let id = *id;
    let cmds = h.opened(id, size);
    assert_eq!(
        oack(&cmds, id, peer),
        pairs(&[("tsize", &size.to_string())])
    );
    let mut covered = 0;
    let mut block = 0u16;
    let mut cmds = h.ack(id, peer, 0);
    loop {
        let d = data(&cmds, id, peer);
        if d.is_empty() {
            break;
        }
        let [(b, offset, len)] = d[..] else {
            panic!("{d:?}")
        };
        assert_eq!((b, offset), (block + 1, covered));
        covered += len as u64;
        block = b;
        cmds = h.ack(id, peer, b);
    }
    assert_eq!(covered, size);
    assert!(matches!(ended(&cmds, id), Outcome::Completed { bytes, .. } if bytes == size));
}

#[test]
fn block_numbers_roll_over_on_a_40_mib_file() {
    let mut h = Harness::new(limits());
    let peer = client(1);
    let size: u64 = 40 << 20;
    let (id, mut cmds) = h.start(peer, "big.img", &[], size);
    let mut expect_abs = 1u64;
    let mut wraps = 0;
    let outcome = loop {
        let d = data(&cmds, id, peer);
        let [(block, offset, len)] = d[..] else {
            break ended(&cmds, id);
        };
        assert_eq!(block, expect_abs as u16);
        assert_eq!(offset, (expect_abs - 1) * 512);
        assert_eq!(len as u64, (size - offset).min(512));
        if block == 0 {
            wraps += 1;
        }
        expect_abs += 1;
        cmds = h.ack(id, peer, block);
    };
    assert_eq!(expect_abs - 1, size / 512 + 1);
    assert_eq!(wraps, 1);
    assert!(matches!(outcome, Outcome::Completed { bytes, retransmits: 0, .. } if bytes == size));
    assert_eq!(h.server.stats().bytes_sent, size);
}

#[test]
fn rollover_with_windows_and_a_partial_ack_across_the_wrap() {
    let mut h = Harness::new(TftpLimits {
        max_blksize: 8,
        ..limits()
    });
    let peer = client(1);
    // 70 000 blocks of 8 bytes, window 16.
    let size = 70_000 * 8 - 3;
    let (id, _) = h.start(peer, "f", &[("blksize", "8"), ("windowsize", "16")], size);
    let mut cmds = h.ack(id, peer, 0);
    let mut acked = 0u64;
    let mut partial_done = false;
    let outcome = loop {
        let d = data(&cmds, id, peer);
        if d.is_empty() {
            break ended(&cmds, id);
        }
        assert_eq!(d[0].1, acked * 8, "window starts after the last ACK");
        let (last, ..) = *d.last().unwrap();
        // Around the wrap, acknowledge only part of a window once (a lost DATA).
        let ack = if !partial_done && acked >= 65530 {
            partial_done = true;
            acked += 3;
            d[2].0
        } else {
            acked += d.len() as u64;
            last
        };
        cmds = h.ack(id, peer, ack);
    };
    assert!(partial_done);
    assert!(matches!(outcome, Outcome::Completed { bytes, retransmits: 13, .. } if bytes == size));
}

#[test]
fn foreign_tid_gets_error_5_and_the_transfer_goes_on() {
    let mut h = Harness::new(limits());
    let peer = client(1);
    let stranger = SocketAddr::from(([10, 0, 0, 66], 4444));
    let (id, _) = h.start(peer, "f", &[], 1000);
    let cmds = h.ack(id, stranger, 1);
    let (source, p, c, _) = error(&cmds);
    assert_eq!(
        (source, p, c),
        (Source::Transfer(id), stranger, code::UNKNOWN_TID)
    );
    assert_eq!(cmds.len(), 1);
    // Same address, other port: also foreign. An ERROR from a stranger is not answered.
    assert_eq!(error(&h.ack(id, client(2), 1)).2, code::UNKNOWN_TID);
    assert!(
        h.datagram(id, stranger, &wire::emit_error(0, "x"))
            .is_empty()
    );
    assert_eq!(h.server.stats().foreign_tid_packets, 3);
    assert_eq!(data(&h.ack(id, peer, 1), id, peer), [(2, 512, 488)]);
    assert!(matches!(
        ended(&h.ack(id, peer, 2), id),
        Outcome::Completed { .. }
    ));
    check_stats(&h.server);
}

#[test]
fn client_error_ends_the_transfer_silently() {
    let mut h = Harness::new(limits());
    let peer = client(1);
    let (id, _) = h.start(peer, "f", &[], 5000);
    h.ack(id, peer, 1);
    // Garbage and requests on the TID are ignored.
    assert!(h.datagram(id, peer, b"\0\x09zz").is_empty());
    assert!(h.datagram(id, peer, &rrq("f", "octet", &[])).is_empty());
    let cmds = h.datagram(id, peer, &wire::emit_error(code::DISK_FULL, "disk full"));
    assert!(sent(&cmds).is_empty());
    assert_eq!(
        ended(&cmds, id),
        Outcome::Failed {
            reason: FailReason::ClientError
        }
    );
    assert_eq!(h.server.stats().ignored_datagrams, 2);
    check_stats(&h.server);
}

#[test]
fn packets_before_the_file_is_open_are_ignored() {
    let mut h = Harness::new(limits());
    let peer = client(1);
    let id = h.admit(peer, "f", &[]);
    assert!(h.ack(id, peer, 0).is_empty());
    assert_eq!(
        h.server.poll_timeout(),
        None,
        "no timer while the driver opens the file"
    );
    assert_eq!(data(&h.opened(id, 1)[1..], id, peer), [(1, 0, 1)]);
    // A second open answer is ignored.
    assert!(h.opened(id, 1).is_empty());
}

#[test]
fn an_early_timer_after_progress_is_re_armed_at_the_real_deadline() {
    let mut h = Harness::new(limits());
    let peer = client(1);
    let (id, _) = h.start(peer, "f", &[], 5000);
    let first = h.server.poll_timeout().unwrap();
    assert_eq!(first, h.t0 + TIMEOUT);
    // Progress half a timeout later moves the deadline; the timer index keeps its entry (it
    // fires early), so a wake-up at the old time must neither retransmit nor give up.
    h.now += TIMEOUT / 2;
    assert_eq!(data(&h.ack(id, peer, 1), id, peer), [(2, 512, 512)]);
    let deadline = h.now + TIMEOUT;
    assert!(h.server.poll_timeout().unwrap() <= deadline);
    let early = h.server.poll_timeout().unwrap();
    h.now = early;
    h.server.handle_timeout(h.now);
    assert!(h.drain().is_empty(), "an early wake-up sends nothing");
    assert_eq!(h.server.poll_timeout(), Some(deadline), "re-armed");
    h.now = deadline - Duration::from_millis(1);
    h.server.handle_timeout(h.now);
    assert!(h.drain().is_empty());
    h.now = deadline;
    h.server.handle_timeout(h.now);
    assert_eq!(data(&h.drain(), id, peer), [(2, 512, 512)]);
    assert_eq!(h.server.stats().retransmitted_packets, 1);
    // The transfer ends: no timer is left behind.
    let cmds = h.ack(id, peer, 2);
    let blocks = data(&cmds, id, peer);
    assert_eq!(blocks.len(), 1);
    for block in 3..=10u16 {
        h.ack(id, peer, block);
    }
    assert_eq!(h.server.active_transfers(), 0);
    assert_eq!(h.server.poll_timeout(), None);
    check_stats(&h.server);
}
