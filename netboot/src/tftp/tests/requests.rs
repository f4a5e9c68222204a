//! Requests on the listening socket: refusals, duplicates, admission and the queue.

use super::super::FileError;
use super::super::wire::code;
use super::*;

#[test]
fn write_request_is_refused_from_the_listener() {
    let mut h = Harness::new(limits());
    let wrq = wire::Packet::Wrq(Request {
        filename: b"x".to_vec(),
        mode: b"octet".to_vec(),
        options: vec![],
    });
    let cmds = h.request(client(1), &wrq.emit());
    let (source, peer, c, message) = error(&cmds);
    assert_eq!(
        (source, peer, c),
        (Source::Listener, client(1), code::ACCESS_VIOLATION)
    );
    assert!(message.contains("read-only"), "{message}");
    assert_eq!(refused(&cmds), FailReason::WriteRefused);
    assert_eq!(h.server.stats().refused[&FailReason::WriteRefused], 1);
    assert_eq!(h.server.active_transfers(), 0);
    check_stats(&h.server);
}

#[test]
fn unsupported_mode_is_refused() {
    let mut h = Harness::new(limits());
    let cmds = h.request(client(1), &rrq("f", "mail", &[]));
    let (source, _, c, message) = error(&cmds);
    assert_eq!((source, c), (Source::Listener, code::NOT_DEFINED));
    assert!(
        message.contains("'mail'") && message.contains("octet"),
        "{message}"
    );
    assert_eq!(refused(&cmds), FailReason::Malformed);
    // Mode is case-insensitive.
    let cmds = h.request(client(2), &rrq("f", "NetASCII", &[]));
    assert!(
        matches!(
            cmds.as_slice(),
            [Command::Open {
                mode: Mode::Netascii,
                ..
            }]
        ),
        "{cmds:?}"
    );
    check_stats(&h.server);
}

#[test]
fn path_attacks_are_refused_before_any_file_access() {
    let mut h = Harness::new(limits());
    let long = "a".repeat(300);
    for bad in [
        "../etc/passwd",
        "/../x",
        "a/../../x",
        "a\0b",
        long.as_str(),
        "",
        "/",
        "..\\..\\boot.ini",
    ] {
        // Build by hand: `rrq` cannot carry a NUL inside the name.
        let mut bytes = vec![0, 1];
        bytes.extend_from_slice(bad.as_bytes());
        bytes.extend_from_slice(b"\0octet\0");
        let cmds = h.request(client(1), &bytes);
        assert!(
            !cmds.iter().any(|c| matches!(c, Command::Open { .. })),
            "{bad:?}: {cmds:?}"
        );
        if bad.contains('\0') {
            // The NUL ends the file name: "a" with mode "b" → unsupported mode.
            assert_eq!(refused(&cmds), FailReason::Malformed);
            continue;
        }
        let (source, _, c, _) = error(&cmds);
        assert_eq!(
            (source, c),
            (Source::Listener, code::ACCESS_VIOLATION),
            "{bad:?}"
        );
        assert_eq!(refused(&cmds), FailReason::BadPath, "{bad:?}");
    }
    assert_eq!(h.server.active_transfers(), 0);
    check_stats(&h.server);
}

#[test]
fn odd_names_are_normalised_before_open() {
    let mut h = Harness::new(limits());
    for (n, (raw, want)) in [
        ("\\windows\\style", "windows/style"),
        ("/leading/slash", "leading/slash"),
        ("a//./b", "a/b"),
    ]
    .into_iter()
    .enumerate()
    {
        let cmds = h.rrq(client(n as u16), raw, &[]);
        assert!(
            matches!(cmds.as_slice(), [Command::Open { path, .. }] if path == want),
            "{raw}: {cmds:?}"
        );
    }
}

#[test]
fn malformed_and_stray_packets_on_the_listener() {
    let mut h = Harness::new(limits());
    // Unterminated file name: ERROR 4.
    let cmds = h.request(client(1), b"\0\x01pxelinux.0");
    assert_eq!(error(&cmds).2, code::ILLEGAL_OPERATION);
    assert_eq!(refused(&cmds), FailReason::Malformed);
    // An ACK on port 69: ERROR 4.
    let cmds = h.request(client(1), &wire::emit_ack(1));
    assert_eq!(error(&cmds).2, code::ILLEGAL_OPERATION);
    // An ERROR, a runt, garbage ERROR: counted, never answered.
    for bytes in [&wire::emit_error(0, "x")[..], b"\0", b"", b"\0\x05\0"] {
        let cmds = h.request(client(1), bytes);
        assert!(sent(&cmds).is_empty(), "{bytes:?}: {cmds:?}");
        assert_eq!(refused(&cmds), FailReason::Malformed);
    }
    assert_eq!(h.server.stats().refused[&FailReason::Malformed], 6);
    check_stats(&h.server);
}

#[test]
fn retransmitted_request_is_ignored_until_the_client_speaks() {
    let mut h = Harness::new(limits());
    let id = h.admit(client(1), "f", &[("blksize", "1024")]);
    assert!(h.rrq(client(1), "f", &[]).is_empty());
    let cmds = h.opened(id, 10);
    assert_eq!(sent(&cmds).len(), 1); // OACK
    assert!(h.rrq(client(1), "f", &[]).is_empty());
    assert_eq!(h.server.stats().duplicate_requests, 2);
    // Another port, or another file, is another request.
    assert!(matches!(
        h.rrq(client(2), "f", &[]).as_slice(),
        [Command::Open { .. }]
    ));
    assert!(matches!(
        h.rrq(client(1), "g", &[]).as_slice(),
        [Command::Open { .. }]
    ));
    // Once the client has answered on the TID, the same request again is a new transfer (a
    // PXE ROM that probed `tsize`, refused the OACK and asks again from the same port).
    let cmds = h.datagram(
        id,
        client(1),
        &wire::emit_error(code::OPTIONS_REFUSED, "tsize probe"),
    );
    assert_eq!(
        ended(&cmds, id),
        Outcome::Failed {
            reason: FailReason::OptionsRefused
        }
    );
    assert!(sent(&cmds).is_empty(), "ERROR 8 is not answered: {cmds:?}");
    assert!(matches!(
        h.rrq(client(1), "f", &[]).as_slice(),
        [Command::Open { .. }]
    ));
    assert_eq!(h.server.active_transfers(), 3);
    check_stats(&h.server);
}

#[test]
fn a_tsize_probe_ended_after_the_oack_is_a_size_query_not_a_failure() {
    // UEFI PXE (OVMF, most vendor firmware) asks for blksize + tsize, reads the OACK and ends
    // the transfer with ERROR 8 "User aborted the transfer" (some send code 0), then asks again.
    for abort_code in [code::OPTIONS_REFUSED, 0] {
        let mut h = Harness::new(limits());
        let id = h.admit(client(1), "f", &[("blksize", "1468"), ("tsize", "0")]);
        let cmds = h.opened(id, 10_000);
        assert_eq!(sent(&cmds).len(), 1); // OACK
        let cmds = h.datagram(
            id,
            client(1),
            &wire::emit_error(abort_code, "User aborted the transfer"),
        );
        assert_eq!(ended(&cmds, id), Outcome::SizeQueried);
        assert!(
            sent(&cmds).is_empty(),
            "the abort is not answered: {cmds:?}"
        );
        let s = h.server.stats();
        assert_eq!((s.size_queries, s.failed.values().sum::<u64>()), (1, 0));
        check_stats(&h.server);
    }
    // Any other ERROR once DATA flows is still a failure.
    let mut h = Harness::new(limits());
    let id = h.admit(client(1), "f", &[("tsize", "0")]);
    h.opened(id, 10_000);
    h.datagram(id, client(1), &wire::emit_ack(0));
    let cmds = h.datagram(
        id,
        client(1),
        &wire::emit_error(code::OPTIONS_REFUSED, "stop"),
    );
    assert_eq!(
        ended(&cmds, id),
        Outcome::Failed {
            reason: FailReason::ClientError
        }
    );
    check_stats(&h.server);
}

#[test]
fn file_errors_reach_the_client_and_end_the_transfer() {
    let mut h = Harness::new(limits());
    for (n, (err, c, reason)) in [
        (
            FileError::NotFound,
            code::FILE_NOT_FOUND,
            FailReason::NotFound,
        ),
        (
            FileError::AccessViolation,
            code::ACCESS_VIOLATION,
            FailReason::AccessViolation,
        ),
        (FileError::Io, code::NOT_DEFINED, FailReason::Io),
    ]
    .into_iter()
    .enumerate()
    {
        let id = h.admit(client(n as u16), "missing.efi", &[("tsize", "0")]);
        h.server.handle_file_error(h.now, id, err);
        let cmds = h.drain();
        let (source, peer, code, message) = error(&cmds);
        assert_eq!(
            (source, peer, code),
            (Source::Transfer(id), client(n as u16), c)
        );
        assert!(message.contains("missing.efi"), "{message}");
        assert_eq!(ended(&cmds, id), Outcome::Failed { reason });
        assert_eq!(h.server.stats().failed[&reason], 1);
        // A late answer from the driver changes nothing.
        assert!(h.opened(id, 5).is_empty());
    }
    assert_eq!(h.server.stats().started, 0);
    assert_eq!(h.server.active_transfers(), 0);
    check_stats(&h.server);
}

#[test]
fn a_long_missing_name_is_trimmed_in_the_error() {
    let mut h = Harness::new(TftpLimits {
        max_path_len: 1024,
        ..limits()
    });
    // 1000 characters, the last ones multi-byte: cut on a character boundary.
    let long = format!("{}{}", "a".repeat(990), "é".repeat(10));
    let id = h.admit(client(1), &long, &[]);
    h.server.handle_file_error(h.now, id, FileError::NotFound);
    let cmds = h.drain();
    let (_, _, code, message) = error(&cmds);
    assert_eq!(code, code::FILE_NOT_FOUND);
    assert_eq!(message, format!("file not found: {}...", "a".repeat(64)));
    // The event keeps the whole name.
    assert!(cmds.iter().any(|c| matches!(
        c,
        Command::Event(TransferEvent::Ended { path, .. }) if *path == long
    )));

    // A name of exactly 64 characters is shown whole, one more is cut; multi-byte characters
    // count as one.
    let exact = "é".repeat(64);
    let id = h.admit(client(2), &exact, &[]);
    h.server
        .handle_file_error(h.now, id, FileError::AccessViolation);
    let (_, _, _, message) = error(&h.drain());
    assert!(
        message.contains(&exact) && !message.contains("..."),
        "{message}"
    );
    let longer = format!("{exact}x");
    let id = h.admit(client(3), &longer, &[]);
    h.server.handle_file_error(h.now, id, FileError::Io);
    let (_, _, _, message) = error(&h.drain());
    assert!(message.contains(&format!("{exact}...;")), "{message}");
    check_stats(&h.server);
}

/// Finish transfer `id` (no options, empty file): DATA 1 (0 bytes), ACK 1.
fn finish_empty(h: &mut Harness, id: TransferId, peer: SocketAddr) -> Vec<Command> {
    let cmds = h.opened(id, 0);
    assert_eq!(data(&cmds, id, peer), [(1, 0, 0)]);
    let cmds = h.ack(id, peer, 1);
    assert!(matches!(
        ended(&cmds, id),
        Outcome::Completed { bytes: 0, .. }
    ));
    cmds
}

#[test]
fn admission_two_slots_five_requests_fifo() {
    let mut h = Harness::new(TftpLimits {
        max_transfers: 2,
        max_queue: 3,
        ..limits()
    });
    let a = h.admit(client(0), "f", &[]);
    let b = h.admit(client(1), "f", &[]);
    for n in 2..5 {
        h.now += Duration::from_millis(10);
        assert!(h.rrq(client(n), "f", &[]).is_empty(), "queued silently");
    }
    assert_eq!(
        (h.server.active_transfers(), h.server.queued_requests()),
        (2, 3)
    );
    assert_eq!(h.server.stats().queue_peak, 3);
    // A retransmission of a queued request is not queued twice.
    assert!(h.rrq(client(3), "f", &[]).is_empty());
    assert_eq!(h.server.queued_requests(), 3);
    // The queue is full: ERROR 0 "server busy" from the listener.
    let cmds = h.rrq(client(9), "f", &[]);
    let (source, peer, c, message) = error(&cmds);
    assert_eq!(
        (source, peer, c),
        (Source::Listener, client(9), code::NOT_DEFINED)
    );
    assert_eq!(
        message,
        "server busy: 2 transfers running, 3 waiting; retry later"
    );
    assert_eq!(refused(&cmds), FailReason::Busy);
    // Each end starts the oldest waiting request, after the ended one's Close and Ended.
    let mut order = vec![];
    let mut running = vec![(a, client(0)), (b, client(1))];
    while !running.is_empty() {
        let (id, peer) = running.remove(0);
        let cmds = finish_empty(&mut h, id, peer);
        if let Some(Command::Open {
            id: next, peer: p, ..
        }) = cmds.last()
        {
            let ended_at = cmds
                .iter()
                .position(|c| matches!(c, Command::Event(TransferEvent::Ended { .. })))
                .unwrap();
            assert_eq!(ended_at, cmds.len() - 2, "{cmds:?}");
            order.push(p.port() - 2000);
            running.push((*next, *p));
        }
    }
    assert_eq!(order, [2, 3, 4]);
    assert_eq!(h.server.stats().completed, 5);
    assert_eq!(
        (h.server.active_transfers(), h.server.queued_requests()),
        (0, 0)
    );
    check_stats(&h.server);
}

#[test]
fn queued_requests_expire_silently() {
    let mut h = Harness::new(TftpLimits {
        max_transfers: 1,
        max_queue: 4,
        ..limits()
    });
    let a = h.admit(client(0), "f", &[]);
    assert!(h.rrq(client(1), "f", &[]).is_empty());
    h.now += Duration::from_secs(20);
    assert!(h.rrq(client(2), "f", &[]).is_empty());
    // The transfer's file open is slow; meanwhile the first queued request times out.
    assert_eq!(h.server.poll_timeout(), Some(h.t0 + QUEUE_TIMEOUT));
    let cmds = h.advance(Duration::from_secs(10));
    assert!(cmds.is_empty(), "{cmds:?}");
    assert_eq!(
        (h.server.queued_requests(), h.server.stats().queue_expired),
        (1, 1)
    );
    // Expired: the same request is new again (queued, not a duplicate).
    assert!(h.rrq(client(1), "f", &[]).is_empty());
    assert_eq!(h.server.queued_requests(), 2);
    let cmds = finish_empty(&mut h, a, client(0));
    assert!(
        matches!(cmds.last(), Some(Command::Open { peer, .. }) if *peer == client(2)),
        "{cmds:?}"
    );
    check_stats(&h.server);
}

#[test]
fn zero_slots_means_every_request_waits_then_expires() {
    let mut h = Harness::new(TftpLimits {
        max_transfers: 0,
        max_queue: 1,
        ..limits()
    });
    assert!(h.rrq(client(1), "f", &[]).is_empty());
    assert_eq!(refused(&h.rrq(client(2), "f", &[])), FailReason::Busy);
    h.advance(QUEUE_TIMEOUT);
    assert_eq!(h.server.queued_requests(), 0);
    assert_eq!(h.server.poll_timeout(), None);
    check_stats(&h.server);
}

use super::super::QUEUE_TIMEOUT;
