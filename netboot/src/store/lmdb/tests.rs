//! LMDB store tests: round trips, atomicity, restarts, read-only access from another process,
//! corrupt records, schema versions and commit latency.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::dhcp::{LeaseState, UnixTime};

/// A unique directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("netbootd-store-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn lease(last: u8, mac_last: u8) -> Lease {
    Lease {
        ip: Ipv4Addr::new(10, 77, 0, last),
        mac: MacAddr([0x52, 0x54, 0, 0, 0, mac_last]),
        state: LeaseState::Bound,
        starts: UnixTime(1_700_000_000),
        ends: UnixTime(1_700_003_600),
        hostname: Some(format!("node{mac_last}")),
        client_id: Some(vec![1, 0x52, 0x54, 0, 0, 0, mac_last]),
        uuid: None,
        arch: Some(7),
        boot_file: Some("ipxe.efi".to_owned()),
        next_server: Some(Ipv4Addr::new(10, 77, 0, 1)),
    }
}

pub(crate) fn discovered(mac_last: u8) -> DiscoveredMachine {
    DiscoveredMachine {
        mac: MacAddr([0x52, 0x54, 0, 0, 1, mac_last]),
        ip: Ipv4Addr::new(10, 77, 0, 100 + mac_last),
        first_seen: UnixTime(1_700_000_000),
        last_seen: UnixTime(1_700_000_500),
        arch: Some(0),
        vendor_class: Some("PXEClient:Arch:00000:UNDI:002001".to_owned()),
        uuid: Some(vec![0xab; 17]),
        hostname: None,
    }
}

#[test]
fn put_get_round_trip() {
    let dir = TempDir::new("roundtrip");
    let mut store = LmdbStore::open(dir.path()).unwrap();
    assert_eq!(store.path(), dir.path());
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert!(store.load_leases().unwrap().is_empty());
    // Inserted out of order: loading returns them sorted by address.
    let (a, b) = (lease(20, 2), lease(10, 1));
    let d = discovered(1);
    store
        .commit(&[
            StoreOp::PutLease(a.clone()),
            StoreOp::PutLease(b.clone()),
            StoreOp::PutDiscovered(d.clone()),
        ])
        .unwrap();
    assert_eq!(store.load_leases().unwrap(), vec![b.clone(), a]);
    assert_eq!(store.load_discovered().unwrap(), vec![d]);
    assert_eq!(store.lease_count().unwrap(), 2);
    // Replace in place.
    let mut b2 = b;
    b2.state = LeaseState::Released;
    store.commit(&[StoreOp::PutLease(b2.clone())]).unwrap();
    assert_eq!(store.load_leases().unwrap()[0], b2);
    assert_eq!(store.lease_count().unwrap(), 2);
    // The directory is private to the daemon.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn remove_deletes_and_tolerates_absent() {
    let dir = TempDir::new("remove");
    let mut store = LmdbStore::open(dir.path()).unwrap();
    store
        .commit(&[
            StoreOp::PutLease(lease(10, 1)),
            StoreOp::PutLease(lease(11, 2)),
        ])
        .unwrap();
    store
        .commit(&[
            StoreOp::RemoveLease(Ipv4Addr::new(10, 77, 0, 10)),
            StoreOp::RemoveLease(Ipv4Addr::new(10, 77, 0, 99)),
        ])
        .unwrap();
    assert_eq!(store.load_leases().unwrap(), vec![lease(11, 2)]);
    // Put then remove in one batch: applied in order.
    store
        .commit(&[
            StoreOp::PutLease(lease(12, 3)),
            StoreOp::RemoveLease(Ipv4Addr::new(10, 77, 0, 12)),
        ])
        .unwrap();
    assert_eq!(store.lease_count().unwrap(), 1);
}

#[test]
fn reopen_keeps_leases() {
    let dir = TempDir::new("reopen");
    let leases: Vec<Lease> = (1..=50).map(|i| lease(i, i)).collect();
    {
        let mut store = LmdbStore::open(dir.path()).unwrap();
        let ops: Vec<StoreOp> = leases.iter().cloned().map(StoreOp::PutLease).collect();
        store.commit(&ops).unwrap();
        store
            .commit(&[StoreOp::PutDiscovered(discovered(9))])
            .unwrap();
    }
    let store = LmdbStore::open(dir.path()).unwrap();
    assert_eq!(store.load_leases().unwrap(), leases);
    assert_eq!(store.load_discovered().unwrap(), vec![discovered(9)]);
}

#[test]
fn second_writer_is_refused() {
    let dir = TempDir::new("locked");
    let _first = LmdbStore::open(dir.path()).unwrap();
    let err = LmdbStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("another netbootd"), "{err}");
}

#[test]
fn failed_batch_applies_nothing() {
    let dir = TempDir::new("atomic");
    // A 256 KiB map: a big batch cannot fit and fails with MDB_MAP_FULL part-way through.
    let mut store = LmdbStore::open_with_map_size(dir.path(), 256 * 1024).unwrap();
    store.commit(&[StoreOp::PutLease(lease(1, 1))]).unwrap();
    let big: Vec<StoreOp> = (0..5000u32)
        .map(|i| {
            let mut l = lease(0, 0);
            l.ip = Ipv4Addr::from(0x0a4e_0000 + i);
            l.hostname = Some(format!("{i:0>200}"));
            StoreOp::PutLease(l)
        })
        .collect();
    let err = store.commit(&big).unwrap_err();
    assert!(matches!(err, StoreError::Lmdb { .. }), "{err:?}");
    assert!(err.to_string().contains(&dir.path().display().to_string()));
    assert_eq!(store.load_leases().unwrap(), vec![lease(1, 1)]);
    // The store stays usable after the failed transaction.
    store.commit(&[StoreOp::PutLease(lease(2, 2))]).unwrap();
    assert_eq!(store.lease_count().unwrap(), 2);
    drop(store);
    let store = LmdbStore::open_with_map_size(dir.path(), 256 * 1024).unwrap();
    assert_eq!(store.lease_count().unwrap(), 2);
}

/// Run in a child process by `read_only_sees_writer_commits` (LMDB forbids opening one
/// environment twice in a process): prints what a read-only open sees.
#[test]
#[ignore = "child process of read_only_sees_writer_commits"]
fn read_only_child() {
    let dir = std::env::var_os("NETBOOTD_TEST_STORE_DIR").expect("run by the parent test");
    let store = LmdbStore::open_read_only(Path::new(&dir)).unwrap();
    let ips: Vec<String> = store
        .load_leases()
        .unwrap()
        .iter()
        .map(|l| l.ip.to_string())
        .collect();
    println!("CHILD-LEASES={}", ips.join(","));
}

fn read_in_child(dir: &Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "store::lmdb::tests::read_only_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NETBOOTD_TEST_STORE_DIR", dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| {
            l.split_once("CHILD-LEASES=")
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no CHILD-LEASES line in {stdout}"))
}

#[test]
fn read_only_sees_writer_commits() {
    let dir = TempDir::new("readonly");
    let mut writer = LmdbStore::open(dir.path()).unwrap();
    writer
        .commit(&[
            StoreOp::PutLease(lease(10, 1)),
            StoreOp::PutLease(lease(11, 2)),
        ])
        .unwrap();
    assert_eq!(read_in_child(dir.path()), "10.77.0.10,10.77.0.11");
    writer
        .commit(&[
            StoreOp::RemoveLease(Ipv4Addr::new(10, 77, 0, 10)),
            StoreOp::PutLease(lease(12, 3)),
        ])
        .unwrap();
    assert_eq!(read_in_child(dir.path()), "10.77.0.11,10.77.0.12");
    // In this process the environment is already open: refused with an error, not a panic.
    let err = LmdbStore::open_read_only(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Lmdb { .. }), "{err:?}");
}

#[test]
fn read_only_store_refuses_commit() {
    let dir = TempDir::new("rocommit");
    LmdbStore::open(dir.path())
        .unwrap()
        .commit(&[StoreOp::PutLease(lease(10, 1))])
        .unwrap();
    let mut reader = LmdbStore::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.lease_count().unwrap(), 1);
    let err = reader
        .commit(&[StoreOp::PutLease(lease(11, 2))])
        .unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");
    assert_eq!(reader.load_leases().unwrap(), vec![lease(10, 1)]);
}

#[test]
fn read_only_missing_store_is_a_clear_error() {
    let dir = TempDir::new("missing");
    let err = LmdbStore::open_read_only(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("no lease store here"), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(
        !dir.path().exists(),
        "a read-only open must not create anything"
    );
}

/// Write raw bytes under a key, bypassing the encoder.
fn put_raw(store: &LmdbStore, db: &RawDb, key: &[u8], value: &[u8]) {
    let mut wtxn = store.env.write_txn().unwrap();
    db.put(&mut wtxn, key, value).unwrap();
    wtxn.commit().unwrap();
}

#[test]
fn corrupt_records_are_errors_naming_the_key() {
    let good = encode("x", &lease(10, 1)).unwrap();
    let mut wrong_version = good.clone();
    wrong_version[0] = 9;
    let mut trailing = good.clone();
    trailing.push(0);
    let cases: [(&[u8], Vec<u8>, &str, &str); 6] = [
        (
            &[10, 77, 0, 10],
            vec![],
            "leases/10.77.0.10",
            "empty record",
        ),
        (
            &[10, 77, 0, 10],
            wrong_version,
            "leases/10.77.0.10",
            "format version 9",
        ),
        (
            &[10, 77, 0, 10],
            vec![1, 0xff, 0x00, 0x13],
            "leases/10.77.0.10",
            "CBOR",
        ),
        (
            &[10, 77, 0, 10],
            good[..good.len() / 2].to_vec(),
            "leases/10.77.0.10",
            "CBOR",
        ),
        (&[10, 77, 0, 10], trailing, "leases/10.77.0.10", "trailing"),
        // A valid lease stored under another address.
        (
            &[10, 77, 0, 11],
            good.clone(),
            "leases/10.77.0.11",
            "10.77.0.10",
        ),
    ];
    for (key, value, want_key, want_reason) in cases {
        let dir = TempDir::new("corrupt");
        let store = LmdbStore::open(dir.path()).unwrap();
        put_raw(&store, &store.leases, key, &value);
        match store.load_leases() {
            Err(StoreError::Corrupt { key, reason }) => {
                assert_eq!(key, want_key);
                assert!(reason.contains(want_reason), "{reason}");
            }
            other => panic!("{want_reason}: expected Corrupt, got {other:?}"),
        }
    }

    let dir = TempDir::new("corrupt-key");
    let store = LmdbStore::open(dir.path()).unwrap();
    put_raw(&store, &store.leases, &[1, 2, 3], &good);
    let err = store.load_leases().unwrap_err();
    assert!(err.to_string().contains("leases/010203"), "{err}");

    let dir = TempDir::new("corrupt-discovered");
    let store = LmdbStore::open(dir.path()).unwrap();
    put_raw(
        &store,
        &store.discovered,
        &[0x52, 0x54, 0, 0, 1, 1],
        &[1, 0x80],
    );
    let err = store.load_discovered().unwrap_err();
    assert!(
        err.to_string().contains("discovered/52:54:00:00:01:01"),
        "{err}"
    );
    assert!(store.load_leases().unwrap().is_empty());
}

#[test]
fn newer_schema_is_refused() {
    let dir = TempDir::new("schema");
    {
        let mut store = LmdbStore::open(dir.path()).unwrap();
        store.commit(&[StoreOp::PutLease(lease(10, 1))]).unwrap();
        put_raw(
            &store,
            &store.meta,
            SCHEMA_KEY,
            &(SCHEMA_VERSION + 1).to_be_bytes(),
        );
    }
    for err in [
        LmdbStore::open(dir.path()).unwrap_err(),
        LmdbStore::open_read_only(dir.path()).unwrap_err(),
    ] {
        match &err {
            StoreError::NewerSchema {
                found, supported, ..
            } => {
                assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected NewerSchema, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("newer") && msg.contains("data_dir"), "{msg}");
    }
}

/// Measures durable commit latency on this machine's temp disk (`--nocapture` to see it).
#[test]
fn commit_latency_batch_1_vs_100() {
    let dir = TempDir::new("latency");
    let mut store = LmdbStore::open(dir.path()).unwrap();
    let rounds = 20u32;
    let mut report = Vec::new();
    for batch in [1u32, 100] {
        let mut times: Vec<Duration> = Vec::new();
        for round in 0..rounds {
            let ops: Vec<StoreOp> = (0..batch)
                .map(|i| {
                    let mut l = lease(0, 0);
                    l.ip = Ipv4Addr::from(0x0a4d_0000 + batch * 100_000 + round * 1000 + i);
                    StoreOp::PutLease(l)
                })
                .collect();
            #[allow(clippy::disallowed_methods)]
            let start = Instant::now();
            store.commit(&ops).unwrap();
            times.push(start.elapsed());
        }
        times.sort();
        let median = times[times.len() / 2];
        report.push(format!(
            "batch {batch:>3}: median {median:?}, min {:?}, max {:?} per commit ({:?} per lease)",
            times[0],
            times[times.len() - 1],
            median / batch
        ));
    }
    println!(
        "LMDB durable commit latency ({}):\n  {}",
        dir.path().display(),
        report.join("\n  ")
    );
    assert_eq!(store.lease_count().unwrap(), u64::from(rounds * 101));
}
