//! Event log tests: append and list, ordering, restart persistence, read-only listing,
//! removal without reusing numbers, corrupt records and unknown kinds.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::*;
use crate::store::lmdb::LmdbStore;
use crate::store::lmdb::tests::TempDir;

fn peer() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 7), 3456))
}

fn mac(last: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, last])
}

/// One of every kind this build appends.
fn every_kind() -> Vec<EventKind> {
    vec![
        EventKind::PhoneHome {
            mac: mac(1),
            ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))),
            body: Some("installed ok\n".to_owned()),
        },
        EventKind::IpxeScript {
            mac: mac(1),
            peer: peer(),
            profile: Some("default".to_owned()),
            refused: None,
        },
        EventKind::TftpStarted {
            peer: peer(),
            path: "ipxe.efi".to_owned(),
            blksize: 1468,
            windowsize: 16,
            tsize: true,
        },
        EventKind::TftpCompleted {
            peer: peer(),
            path: "ipxe.efi".to_owned(),
            bytes: 1_048_576,
            duration_ms: 120,
            retransmits: 2,
            blksize: 1468,
            windowsize: 16,
        },
        EventKind::TftpFailed {
            peer: peer(),
            path: "missing".to_owned(),
            reason: "not_found".to_owned(),
        },
        EventKind::HttpCompleted {
            peer: "[fd00::7]:40000".parse().expect("addr"),
            path: "vmlinuz".to_owned(),
            bytes: 9_000_000,
            duration_ms: 800,
            status: 200,
        },
    ]
}

#[test]
fn append_and_list_every_kind_in_order() {
    let dir = TempDir::new("events-basic");
    let store = LmdbStore::open(dir.path()).expect("open");
    let log = store.event_log().expect("log");
    assert!(log.is_empty().expect("empty"));
    let kinds = every_kind();
    for (i, kind) in kinds.iter().enumerate() {
        let seq = log
            .append(UnixTime(1_700_000_000 + i as u64), kind.clone())
            .expect("append");
        assert_eq!(seq, i as u64 + 1);
    }
    assert_eq!(log.len().expect("len"), kinds.len() as u64);
    let listed = log.list(0, usize::MAX).expect("list");
    assert_eq!(listed.len(), kinds.len());
    for (i, (event, kind)) in listed.iter().zip(&kinds).enumerate() {
        assert_eq!(event.seq, i as u64 + 1);
        assert_eq!(event.at, UnixTime(1_700_000_000 + i as u64));
        assert_eq!(&event.kind, kind);
        assert!(EventKind::KNOWN.contains(&kind.name()), "{}", kind.name());
    }
    // Paging: after / limit.
    let page = log.list(2, 3).expect("page");
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert!(log.list(6, 10).expect("tail").is_empty());
    assert!(log.list(0, 0).expect("none").is_empty());
}

#[test]
fn append_many_is_one_ordered_batch_and_survives_restart() {
    let dir = TempDir::new("events-restart");
    {
        let store = LmdbStore::open(dir.path()).expect("open");
        let log = store.event_log().expect("log");
        drop(store); // the log alone keeps the environment and the writer lock
        assert!(matches!(
            LmdbStore::open(dir.path()),
            Err(StoreError::Locked { .. })
        ));
        let batch: Vec<_> = every_kind().into_iter().map(|k| (UnixTime(5), k)).collect();
        assert_eq!(
            log.append_many(batch).expect("batch"),
            vec![1, 2, 3, 4, 5, 6]
        );
        assert!(log.append_many([]).expect("empty batch").is_empty());
    }
    let store = LmdbStore::open(dir.path()).expect("reopen");
    let log = store.event_log().expect("log");
    assert_eq!(log.len().expect("len"), 6);
    assert_eq!(
        log.append(UnixTime(6), every_kind().remove(0))
            .expect("append"),
        7
    );
    let all = log.list(0, usize::MAX).expect("list");
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    assert_eq!(
        all[..6].iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
        every_kind()
    );
}

#[test]
fn concurrent_appends_get_distinct_ordered_numbers() {
    let dir = TempDir::new("events-threads");
    let store = LmdbStore::open(dir.path()).expect("open");
    let log = store.event_log().expect("log");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        log.append(
                            UnixTime(i),
                            EventKind::TftpFailed {
                                peer: peer(),
                                path: format!("t{t}/{i}"),
                                reason: "timeout".to_owned(),
                            },
                        )
                        .expect("append")
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("join"))
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    let listed = log.list(0, usize::MAX).expect("list");
    assert!(listed.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
}

#[test]
fn removal_never_reuses_numbers() {
    let dir = TempDir::new("events-remove");
    {
        let store = LmdbStore::open(dir.path()).expect("open");
        let log = store.event_log().expect("log");
        for kind in every_kind() {
            log.append(UnixTime(1), kind).expect("append");
        }
        assert_eq!(log.remove_through(4).expect("remove"), 4);
        assert_eq!(
            log.list(0, 10)
                .expect("list")
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>(),
            vec![5, 6]
        );
        assert_eq!(log.remove_through(100).expect("remove all"), 2);
        assert!(log.is_empty().expect("empty"));
    }
    let store = LmdbStore::open(dir.path()).expect("reopen");
    let log = store.event_log().expect("log");
    assert_eq!(
        log.append(UnixTime(2), every_kind().remove(0))
            .expect("append"),
        7
    );
}

#[test]
fn read_only_log_lists_but_refuses_appends() {
    let dir = TempDir::new("events-ro");
    {
        let store = LmdbStore::open(dir.path()).expect("open");
        let log = store.event_log().expect("log");
        log.append(UnixTime(1), every_kind().remove(0))
            .expect("append");
    }
    let listed = LmdbStore::open_read_only(dir.path())
        .expect("open ro")
        .event_log()
        .expect("log")
        .list(0, usize::MAX)
        .expect("list");
    assert_eq!(listed.len(), 1);
    let ro = LmdbStore::open_read_only(dir.path()).expect("open ro");
    let log = ro.event_log().expect("log");
    assert!(matches!(
        log.append(UnixTime(2), every_kind().remove(0)),
        Err(StoreError::ReadOnly { .. })
    ));
}

/// Write raw bytes under `key` in the events database.
fn put_raw(log: &EventLog, key: &[u8], value: &[u8]) {
    let db = log.events.expect("db");
    let mut wtxn = log.env.write_txn().expect("wtxn");
    db.put(&mut wtxn, key, value).expect("put");
    wtxn.commit().expect("commit");
}

#[test]
fn corrupt_records_are_errors_naming_the_key() {
    let dir = TempDir::new("events-corrupt");
    let store = LmdbStore::open(dir.path()).expect("open");
    let log = store.event_log().expect("log");
    log.append(UnixTime(1), every_kind().remove(0))
        .expect("append");

    put_raw(&log, &2u64.to_be_bytes(), &[1, 0xff, 0x00]);
    match log.list(0, 10) {
        Err(StoreError::Corrupt { key, .. }) => assert_eq!(key, "events/2"),
        other => panic!("expected corrupt events/2, got {other:?}"),
    }
    // Events before the bad one are still readable.
    assert_eq!(log.list(0, 1).expect("first").len(), 1);

    // A valid record stored under the wrong key.
    let mut good = Vec::new();
    good.push(crate::store::lmdb::RECORD_VERSION);
    let event = Event {
        seq: 9,
        at: UnixTime(1),
        kind: every_kind().remove(0),
    };
    ciborium::into_writer(&event, &mut good).expect("cbor");
    put_raw(&log, &2u64.to_be_bytes(), &good);
    match log.list(1, 10) {
        Err(StoreError::Corrupt { key, reason }) => {
            assert_eq!(key, "events/2");
            assert!(reason.contains("event 9"), "{reason}");
        }
        other => panic!("expected mismatch, got {other:?}"),
    }
    // A future record version and a bad key length.
    put_raw(&log, &2u64.to_be_bytes(), &[9]);
    assert!(matches!(log.list(1, 10), Err(StoreError::Corrupt { .. })));
    put_raw(&log, &2u64.to_be_bytes(), &good[..good.len() - 1]);
    assert!(matches!(log.list(1, 10), Err(StoreError::Corrupt { .. })));
    {
        let mut wtxn = log.env.write_txn().expect("wtxn");
        log.events
            .expect("db")
            .delete(&mut wtxn, &2u64.to_be_bytes())
            .expect("delete");
        wtxn.commit().expect("commit");
    }
    assert_eq!(log.list(0, 10).expect("repaired").len(), 1);
    put_raw(&log, b"bad", &good);
    match log.list(0, 10) {
        Err(StoreError::Corrupt { key, reason }) => {
            assert_eq!(key, "events/626164");
            assert!(reason.contains("3 bytes"), "{reason}");
        }
        other => panic!("expected a bad key, got {other:?}"),
    }
}

#[test]
fn unknown_kinds_from_a_newer_version_decode_as_unknown() {
    #[derive(Serialize)]
    enum Future {
        Rebooted { mac: MacAddr, reason: String },
    }
    #[derive(Serialize)]
    struct FutureEvent {
        seq: u64,
        at: UnixTime,
        kind: Future,
    }
    let dir = TempDir::new("events-unknown");
    let store = LmdbStore::open(dir.path()).expect("open");
    let log = store.event_log().expect("log");
    log.append(UnixTime(1), every_kind().remove(0))
        .expect("append");
    let mut value = vec![crate::store::lmdb::RECORD_VERSION];
    ciborium::into_writer(
        &FutureEvent {
            seq: 2,
            at: UnixTime(2),
            kind: Future::Rebooted {
                mac: mac(3),
                reason: "bios update".to_owned(),
            },
        },
        &mut value,
    )
    .expect("cbor");
    put_raw(&log, &2u64.to_be_bytes(), &value);
    let listed = log.list(0, 10).expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!(
        listed[1].kind,
        EventKind::Unknown {
            name: "Rebooted".to_owned()
        }
    );
    assert_eq!(listed[1].at, UnixTime(2));
}

fn lease_record(last: u8) -> LeaseRecord {
    LeaseRecord {
        mac: mac(last),
        ip: Ipv4Addr::new(10, 77, 0, last),
        hostname: Some(format!("node-{last}")),
        ends: UnixTime(1_700_003_600),
        boot_file: Some("ipxe.efi".to_owned()),
        subnet: Some("10.77.0.0/24".parse().expect("net")),
    }
}

#[test]
fn http_started_and_failed_round_trip() {
    let dir = TempDir::new("events-http-kinds");
    let store = LmdbStore::open(dir.path()).expect("open");
    let log = store.event_log().expect("log");
    let kinds = vec![
        EventKind::HttpStarted {
            peer: "[fd00::7]:40000".parse().expect("addr"),
            path: "vmlinuz".to_owned(),
            range: None,
            size: 9_000_000,
        },
        EventKind::HttpStarted {
            peer: peer(),
            path: "initrd.img".to_owned(),
            range: Some("bytes=4096-".to_owned()),
            size: 50_000_000,
        },
        EventKind::HttpFailed {
            peer: peer(),
            path: "initrd.img".to_owned(),
            reason: "client_closed".to_owned(),
            bytes: 131_072,
            duration_ms: 15,
            status: 206,
        },
    ];
    for kind in &kinds {
        log.append(UnixTime(9), kind.clone()).expect("append");
        assert!(EventKind::KNOWN.contains(&kind.name()), "{}", kind.name());
    }
    let listed: Vec<EventKind> = log
        .list(0, usize::MAX)
        .expect("list")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(listed, kinds);
    assert_eq!(
        listed.iter().map(EventKind::name).collect::<Vec<_>>(),
        ["HttpStarted", "HttpStarted", "HttpFailed"]
    );

    // `range` is optional: a record without it (as a writer that never saw a range wrote it)
    // decodes with `None`.
    #[derive(Serialize)]
    enum Minimal {
        HttpStarted {
            peer: SocketAddr,
            path: String,
            size: u64,
        },
    }
    #[derive(Serialize)]
    struct MinimalEvent {
        seq: u64,
        at: UnixTime,
        kind: Minimal,
    }
    let mut value = vec![crate::store::lmdb::RECORD_VERSION];
    ciborium::into_writer(
        &MinimalEvent {
            seq: 4,
            at: UnixTime(10),
            kind: Minimal::HttpStarted {
                peer: peer(),
                path: "ipxe.efi".to_owned(),
                size: 1024,
            },
        },
        &mut value,
    )
    .expect("cbor");
    put_raw(&log, &4u64.to_be_bytes(), &value);
    let last = log.list(3, 10).expect("list");
    assert_eq!(
        last.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
        [EventKind::HttpStarted {
            peer: peer(),
            path: "ipxe.efi".to_owned(),
            range: None,
            size: 1024,
        }]
    );
}

#[test]
fn lease_and_service_error_kinds_round_trip() {
    let dir = TempDir::new("events-lease-kinds");
    let store = LmdbStore::open(dir.path()).expect("open");
    let log = store.event_log().expect("log");
    let kinds = vec![
        EventKind::LeaseGranted(lease_record(1)),
        EventKind::LeaseRenewed(lease_record(1)),
        EventKind::LeaseReleased(lease_record(1)),
        EventKind::LeaseExpired(lease_record(2)),
        EventKind::ServiceError {
            service: "dhcp".to_owned(),
            message: "lease commit failed: disk full".to_owned(),
        },
    ];
    for kind in &kinds {
        log.append(UnixTime(9), kind.clone()).expect("append");
        assert!(EventKind::KNOWN.contains(&kind.name()), "{}", kind.name());
    }
    let listed: Vec<EventKind> = log
        .list(0, usize::MAX)
        .expect("list")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(listed, kinds);
}

#[test]
fn trim_drops_oldest_renewals_first_then_others_never_phone_home() {
    let dir = TempDir::new("events-trim");
    let store = LmdbStore::open(dir.path()).expect("open");
    let log = store.event_log().expect("log");
    let phone = || EventKind::PhoneHome {
        mac: mac(9),
        ip: None,
        body: None,
    };
    let failed = || EventKind::TftpFailed {
        peer: peer(),
        path: "x".to_owned(),
        reason: "timeout".to_owned(),
    };
    // 1 phone, 2 renew, 3 tftp, 4 renew, 5 phone, 6 renew, 7 tftp, 8 phone
    let kinds = vec![
        phone(),
        EventKind::LeaseRenewed(lease_record(1)),
        failed(),
        EventKind::LeaseRenewed(lease_record(2)),
        phone(),
        EventKind::LeaseRenewed(lease_record(3)),
        failed(),
        phone(),
    ];
    log.append_many(kinds.into_iter().map(|k| (UnixTime(1), k)))
        .expect("append");
    let seqs = |log: &EventLog| -> Vec<u64> {
        log.list(0, usize::MAX)
            .expect("list")
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(log.trim(8).expect("no-op"), Trimmed::default());
    assert_eq!(
        log.trim(6).expect("trim"),
        Trimmed {
            renewals: 2,
            others: 0
        }
    );
    assert_eq!(
        seqs(&log),
        vec![1, 3, 5, 6, 7, 8],
        "the two oldest renewals"
    );
    let t = log.trim(3).expect("trim");
    assert_eq!((t.renewals, t.others, t.total()), (1, 2, 3));
    assert_eq!(seqs(&log), vec![1, 5, 8], "only phone-homes left");
    assert_eq!(
        log.trim(1).expect("trim"),
        Trimmed::default(),
        "never a phone-home"
    );
    assert_eq!(log.len().expect("len"), 3);
    // Trimming the newest events does not reuse their numbers.
    log.remove_through(8).expect("remove");
    assert_eq!(log.append(UnixTime(2), phone()).expect("append"), 9);
}

#[test]
fn append_event_ops_share_the_lease_transaction() {
    use crate::store::lmdb::tests::lease;
    use crate::store::{LeaseStore, StoreOp};
    let dir = TempDir::new("events-op");
    let mut store = LmdbStore::open(dir.path()).expect("open");
    let log = store.event_log().expect("log");
    log.append(UnixTime(1), every_kind().remove(0))
        .expect("append");
    store
        .commit(&[
            StoreOp::PutLease(lease(1, 1)),
            StoreOp::AppendEvent {
                at: UnixTime(2),
                kind: EventKind::LeaseGranted(lease_record(1)),
            },
            StoreOp::AppendEvent {
                at: UnixTime(2),
                kind: EventKind::LeaseGranted(lease_record(2)),
            },
        ])
        .expect("commit");
    let listed = log.list(0, usize::MAX).expect("list");
    assert_eq!(
        listed.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(listed[2].kind, EventKind::LeaseGranted(lease_record(2)));
    assert_eq!(
        log.append(UnixTime(3), every_kind().remove(0))
            .expect("next"),
        4
    );
}

/// Whether `appended()` has a wake-up waiting (it would return at once), without blocking.
fn woken(log: &EventLog) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        tokio::time::timeout(std::time::Duration::from_millis(20), log.appended())
            .await
            .is_ok()
    })
}

#[test]
fn appends_through_the_log_or_the_store_wake_the_uplink() {
    use crate::store::lmdb::tests::lease;
    use crate::store::{LeaseStore, StoreOp};
    let dir = TempDir::new("events-appended");
    let mut store = LmdbStore::open(dir.path()).expect("open");
    let log = store.event_log().expect("log");
    assert!(!woken(&log), "nothing appended yet");

    log.append(UnixTime(1), every_kind().remove(0))
        .expect("append");
    assert!(woken(&log), "an append through the log");
    assert!(!woken(&log), "one wake-up per append burst");

    // A lease without events wakes nobody; the DHCP committer's lease events do.
    store
        .commit(&[StoreOp::PutLease(lease(1, 1))])
        .expect("commit");
    assert!(!woken(&log), "a commit without events");
    store
        .commit(&[
            StoreOp::PutLease(lease(2, 2)),
            StoreOp::AppendEvent {
                at: UnixTime(2),
                kind: EventKind::LeaseGranted(lease_record(2)),
            },
        ])
        .expect("commit");
    assert!(woken(&log), "lease events in the store's own transaction");
}
