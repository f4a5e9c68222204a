//! End-to-end tests of netbootd's TFTP server against real clients we did not write (tftp-hpa's
//! `tftp`, `atftp`, `curl`) and hand-crafted requests, in network namespaces the tests create
//! and remove. Every scenario runs once per TFTP driver: `tokio::…` and `uring::…` (forced
//! through the config and `NETBOOTD_TFTP_DRIVER`, and checked on `netbootd_tftp_driver`). If
//! the kernel refuses io_uring, the `uring::…` tests fail and say so (skip them with
//! `-- --skip uring::`).
//!
//! They need root (CI runs them as root through `.ci/run`) and the packages `.ci/run` installs:
//! iproute2, tftp-hpa, atftp, curl. Files are random, made at test time; every download is
//! compared byte for byte.
// Tests drive real processes in real time: reading the clock is what they must do.
#![allow(clippy::disallowed_methods)]

mod support;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::tftp::{
    Driver, Lab, MiB, TFTP_ADDR, assert_download, curl_tftp_argv, random_bytes, same_bytes,
};
use support::tftp_wire::{
    self, FetchError, Pkt, RRQ, UdpClient, WRQ, expect_refused, fetch, request, short, to_netascii,
};

const ACTIVE: &str = "netbootd_tftp_active_transfers";
const QUEUED: &str = "netbootd_tftp_queued_requests";
const BYTES: &str = "netbootd_tftp_bytes_sent_total";
const RETRANSMITS: &str = "netbootd_tftp_retransmits_total";
const COMPLETED: &str = "netbootd_tftp_transfers_completed_total";
const FAILED: &str = "netbootd_tftp_transfers_failed_total";
const REFUSED: &str = "netbootd_tftp_requests_refused_total";

/// The `[tftp]` tuning every lab shares (plus per-test lines).
const TUNING: &str = "max_blksize = 1468\nmax_windowsize = 64\ntimeout = \"1s\"\nmax_retries = 5\nrate_limit_per_ip = 0\n";

/// Start netbootd with only `[tftp]` (no DHCP): the shared tuning plus `extra`.
fn start(lab: &mut Lab, extra: &str) {
    let body = lab.tftp_section(&format!("{TUNING}{extra}"));
    lab.start(&body);
}

fn server() -> SocketAddr {
    SocketAddr::V4(TFTP_ADDR)
}

/// Each scenario below, once per driver.
macro_rules! per_driver {
    ($($name:ident),* $(,)?) => {
        mod tokio {
            $( #[test] fn $name() { super::$name(super::Driver::Tokio) } )*
        }
        mod uring {
            $( #[test] fn $name() { super::$name(super::Driver::Uring) } )*
        }
    };
}

per_driver!(
    real_clients_download_byte_exact,
    netascii_is_converted_both_ways,
    two_hundred_concurrent_downloads,
    queue_drains_with_max_transfers_20,
    path_attacks_are_refused,
    names_are_normalised,
    foreign_tid_gets_error_5,
    silent_client_times_out_after_retries,
);

/// tftp-hpa (no options: 512-byte blocks), atftp (blksize 1468 + windowsize 16, and blksize
/// 512 + windowsize 16 for the big file) and curl (blksize 1468, and 512 for the big file) fetch
/// 1 KiB, 10 MiB and 40 MiB files byte-exact; 40 MiB at 512 B is 81,920 blocks, so the block
/// number wraps past 65,535. Our own client checks what the server grants.
fn real_clients_download_byte_exact(driver: Driver) {
    let mut lab = Lab::new("tftpclients", Some(driver));
    let small = lab.put_random("small.bin", 1024);
    let mid = lab.put_random("boot/mid.bin", 10 << 20);
    let big = lab.put_random("big.bin", 40 << 20);
    start(&mut lab, "");
    let completed0 = lab.metric(COMPLETED, &[]);
    let bytes0 = lab.metric(BYTES, &[]);
    let ctx = || lab.context();

    let mut n = 0u32;
    let mut total = 0usize;
    for (remote, want) in [("small.bin", &small), ("boot/mid.bin", &mid)] {
        let size = MiB(want.len());
        let local = lab.dl_path("hpa");
        let out = lab.tftp_hpa_get(remote, &local, "binary");
        assert_download(
            &format!("tftp-hpa get {remote} ({size})"),
            &out,
            &local,
            want,
            &ctx,
        );
        let local = lab.dl_path("atftp");
        let out = lab.atftp_get(remote, &local, &[("blksize", "1468"), ("windowsize", "16")]);
        assert_download(
            &format!("atftp blksize 1468 windowsize 16 {remote} ({size})"),
            &out,
            &local,
            want,
            &ctx,
        );
        let local = lab.dl_path("curl");
        let out = lab.curl_tftp_get(remote, &local, Some(1468));
        assert_download(
            &format!("curl --tftp-blksize 1468 {remote} ({size})"),
            &out,
            &local,
            want,
            &ctx,
        );
        n += 3;
        total += 3 * want.len();
    }

    // 40 MiB in 512-byte blocks: 81,920 blocks, the block number wraps to 0 after 65,535.
    let local = lab.dl_path("hpa-big");
    let t = Instant::now();
    let out = lab.tftp_hpa_get("big.bin", &local, "binary");
    assert_download(
        "tftp-hpa get big.bin (40 MiB at 512 B: block rollover)",
        &out,
        &local,
        &big,
        &ctx,
    );
    eprintln!(
        "tftp-hpa 40 MiB at 512 B: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let local = lab.dl_path("curl-big");
    let out = lab.curl_tftp_get("big.bin", &local, Some(512));
    assert_download(
        "curl --tftp-blksize 512 big.bin (block rollover)",
        &out,
        &local,
        &big,
        &ctx,
    );
    let local = lab.dl_path("atftp-big");
    let out = lab.atftp_get(
        "big.bin",
        &local,
        &[("blksize", "512"), ("windowsize", "16")],
    );
    assert_download(
        "atftp blksize 512 windowsize 16 big.bin (rollover inside windows)",
        &out,
        &local,
        &big,
        &ctx,
    );
    let local = lab.dl_path("curl-big-1468");
    let out = lab.curl_tftp_get("big.bin", &local, Some(1468));
    assert_download("curl --tftp-blksize 1468 big.bin", &out, &local, &big, &ctx);
    n += 4;
    total += 4 * big.len();

    // What the server grants: blksize capped at max_blksize, windowsize as asked (≤ 64), tsize.
    let got = lab
        .fetch(
            b"boot/mid.bin",
            "octet",
            &[("blksize", "65464"), ("windowsize", "64"), ("tsize", "0")],
        )
        .unwrap_or_else(|e| panic!("own client, blksize 65464 windowsize 64: {e:?}\n{}", ctx()));
    assert_eq!(
        got.option("blksize"),
        Some("1468"),
        "blksize 65464 must be capped at max_blksize 1468; OACK {:?}",
        got.oack
    );
    assert_eq!(got.option("windowsize"), Some("64"), "OACK {:?}", got.oack);
    assert_eq!(
        got.option("tsize"),
        Some(mid.len().to_string().as_str()),
        "OACK {:?}",
        got.oack
    );
    same_bytes(&got.data, &mid)
        .unwrap_or_else(|e| panic!("own client, windowsize 64: {e}\n{}", ctx()));
    assert!(
        got.acks_sent <= got.data_packets / 32 + 4,
        "with windowsize 64 one ACK per window is enough: {} ACKs for {} DATA",
        got.acks_sent,
        got.data_packets
    );
    n += 1;
    total += mid.len();

    let completed = lab.site.wait_metric(COMPLETED, &[], "all downloads", |v| {
        v - completed0 >= f64::from(n)
    });
    assert_eq!(
        completed - completed0,
        f64::from(n),
        "{COMPLETED} counts each download once\n{}",
        ctx()
    );
    let sent = lab.metric(BYTES, &[]) - bytes0;
    assert!(
        sent >= total as f64,
        "{BYTES} grew by {sent}, less than the {total} bytes delivered\n{}",
        ctx()
    );
    assert_eq!(
        lab.metric(FAILED, &[]),
        0.0,
        "no transfer failed\n{}",
        ctx()
    );
    lab.site.wait_metric(ACTIVE, &[], "0", |v| v == 0.0);
}

/// netascii: tftp-hpa `-m ascii` gets a file with LF line endings (and a few bare CRs) back
/// unchanged after the round trip; on the wire (our own client) LF is CR LF and CR is CR NUL,
/// also across block boundaries.
fn netascii_is_converted_both_ways(driver: Driver) {
    let mut lab = Lab::new("tftpascii", Some(driver));
    let mut text = Vec::new();
    let noise = random_bytes(20_000, 7);
    for (i, &r) in noise.iter().enumerate() {
        let len = usize::from(r % 90);
        let line: String = (0..len)
            .map(|j| char::from(b' ' + ((i + j) % 94) as u8))
            .collect();
        text.extend_from_slice(line.as_bytes());
        if i % 97 == 0 {
            text.extend_from_slice(b" bare\rCR");
        }
        text.push(b'\n');
    }
    lab.put("notes.txt", &text);
    start(&mut lab, "");
    let ctx = || lab.context();

    let local = lab.dl_path("notes.txt");
    let out = lab.tftp_hpa_get("notes.txt", &local, "ascii");
    assert_download(
        &format!("tftp-hpa -m ascii notes.txt ({})", MiB(text.len())),
        &out,
        &local,
        &text,
        &ctx,
    );

    let wire = to_netascii(&text);
    for opts in [&[][..], &[("blksize", "1468"), ("windowsize", "8")][..]] {
        let got = lab
            .fetch(b"notes.txt", "netascii", opts)
            .unwrap_or_else(|e| panic!("own client netascii {opts:?}: {e:?}\n{}", ctx()));
        same_bytes(&got.data, &wire).unwrap_or_else(|e| {
            panic!(
                "netascii bytes on the wire ({opts:?}), compared with LF→CR LF, CR→CR NUL: {e}\n{}",
                ctx()
            )
        });
    }
}

/// 200 curl processes download the same 2 MiB file at once; all byte-exact within 2 minutes.
fn two_hundred_concurrent_downloads(driver: Driver) {
    const N: usize = 200;
    let mut lab = Lab::new("tftp200", Some(driver));
    let want = lab.put_random("storm.bin", 2 << 20);
    start(&mut lab, "max_transfers = 256\n");
    let completed0 = lab.metric(COMPLETED, &[]);
    let locals: Vec<_> = (0..N).map(|i| lab.dl_path(&format!("storm-{i}"))).collect();
    let t = Instant::now();
    let ids: Vec<_> = locals
        .iter()
        .map(|l| lab.spawn_client(&curl_tftp_argv("storm.bin", l, Some(1468))))
        .collect();
    let mut peak = 0.0f64;
    let status = lab.wait_clients(&ids, Duration::from_secs(120), |site| {
        peak = peak.max(site.metric(ACTIVE, &[]));
    });
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "{N} concurrent curl downloads of 2 MiB: {secs:.1} s ({:.0} MB/s aggregate), peak {peak} active",
        (N * want.len()) as f64 / secs / 1e6
    );
    let mut bad = Vec::new();
    for (i, (s, l)) in status.iter().zip(&locals).enumerate() {
        let verdict = match s {
            None => Err("still running after 120 s".to_owned()),
            Some(s) if !s.success() => Err(format!("curl exited with {s}")),
            Some(_) => support::tftp::check_file(l, &want),
        };
        if let Err(e) = verdict {
            bad.push(format!(
                "download {i}: {e}\n{}",
                lab.site.background_log(ids[i])
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {N} concurrent downloads failed:\n{}\n{}",
        bad.len(),
        bad.iter().take(5).cloned().collect::<Vec<_>>().join("\n"),
        lab.context()
    );
    lab.site
        .wait_metric(COMPLETED, &[], "+200", |v| v - completed0 == N as f64);
    lab.site.wait_metric(ACTIVE, &[], "0", |v| v == 0.0);
}

/// max_transfers = 20 and 100 clients at once: at most 20 run, the rest wait in the queue
/// (seen on `netbootd_tftp_queued_requests`), and the queue drains: all 100 byte-exact.
fn queue_drains_with_max_transfers_20(driver: Driver) {
    const N: usize = 100;
    let mut lab = Lab::new("tftpqueue", Some(driver));
    let want = lab.put_random("queued.bin", 4 << 20);
    start(&mut lab, "max_transfers = 20\nmax_queue = 200\n");
    let completed0 = lab.metric(COMPLETED, &[]);
    let locals: Vec<_> = (0..N).map(|i| lab.dl_path(&format!("q-{i}"))).collect();
    let ids: Vec<_> = locals
        .iter()
        .map(|l| lab.spawn_client(&curl_tftp_argv("queued.bin", l, Some(1468))))
        .collect();
    let (mut max_queued, mut max_active, mut samples) = (0.0f64, 0.0f64, 0u32);
    let status = lab.wait_clients(&ids, Duration::from_secs(180), |site| {
        let page = site.metrics();
        max_queued = max_queued.max(support::observe::metric_value(&page, QUEUED, &[]));
        max_active = max_active.max(support::observe::metric_value(&page, ACTIVE, &[]));
        samples += 1;
    });
    eprintln!("queue: {samples} samples, max queued {max_queued}, max active {max_active}");
    let failed: Vec<String> = status
        .iter()
        .zip(&locals)
        .enumerate()
        .filter_map(|(i, (s, l))| {
            let verdict = match s {
                None => Err("still running after 180 s".to_owned()),
                Some(s) if !s.success() => Err(format!("curl exited with {s}")),
                Some(_) => support::tftp::check_file(l, &want),
            };
            verdict
                .err()
                .map(|e| format!("download {i}: {e}\n{}", lab.site.background_log(ids[i])))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {N} queued downloads failed:\n{}\n{}",
        failed.len(),
        failed
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        lab.context()
    );
    assert!(
        max_queued > 0.0,
        "{QUEUED} was never above 0 in {samples} samples with 100 clients and max_transfers = 20\n{}",
        lab.context()
    );
    assert!(
        max_active <= 20.0,
        "{ACTIVE} reached {max_active} with max_transfers = 20"
    );
    lab.site
        .wait_metric(QUEUED, &[], "0 (drained)", |v| v == 0.0);
    lab.site.wait_metric(ACTIVE, &[], "0", |v| v == 0.0);
    lab.site
        .wait_metric(COMPLETED, &[], "+100", |v| v - completed0 == N as f64);
}

/// Where a refusal is counted: requests refused on their name or form before any file access
/// (`netbootd_tftp_requests_refused_total{reason}`), or transfers whose file the driver would
/// not open beneath the root (`netbootd_tftp_transfers_failed_total{reason}`).
#[derive(Debug, Clone, Copy)]
enum Counted {
    Refused(&'static str),
    Failed(&'static str),
}

/// The acceptable answers to a refused request: ERROR code and where it is counted.
type Answers = &'static [(u16, Counted)];

impl Counted {
    fn metric(self) -> (&'static str, &'static str) {
        match self {
            Self::Refused(r) => (REFUSED, r),
            Self::Failed(r) => (FAILED, r),
        }
    }
}

/// Every way out of the root is refused with an ERROR, counted, and the daemon serves a good
/// file right after each one: traversals (a naive server would find the targets: they exist
/// next to and above the root), symlinks out (to /etc/passwd, to ../etc/passwd, to /dev/zero),
/// a FIFO (must not hang the server), a directory, a NUL byte and a control character in the
/// name, a 1000-byte name, and a write request (ERROR 2). A symlink that stays inside the root
/// is followed.
fn path_attacks_are_refused(driver: Driver) {
    let mut lab = Lab::new("tftppaths", Some(driver));
    let good = lab.put_random("good.bin", 3000);
    let site_dir = lab.site.dir().to_path_buf();
    std::fs::create_dir_all(site_dir.join("etc")).expect("mkdir");
    std::fs::write(site_dir.join("etc/passwd"), "SECRET next to the root\n").expect("write");
    std::fs::write(site_dir.join("x"), "SECRET x\n").expect("write");
    lab.put("a/inside.txt", b"inside a/\n");
    let link = |target: &str, name: &str| {
        std::os::unix::fs::symlink(target, lab.root.join(name))
            .unwrap_or_else(|e| panic!("symlink {name} -> {target}: {e}"));
    };
    link("/etc/passwd", "passwd-link");
    link("/dev/zero", "zero-link");
    link("../etc/passwd", "up-link");
    link("good.bin", "alias.bin");
    nix::unistd::mkfifo(
        &lab.root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("mkfifo");
    std::fs::create_dir_all(lab.root.join("subdir")).expect("mkdir");
    start(&mut lab, "");

    let deep = format!("{}etc/passwd", "../".repeat(12));
    let long = "a".repeat(1000);
    let rrq = |name: &[u8]| request(RRQ, name, "octet", &[]);
    // Each attack: the request, and the acceptable (ERROR code, counter) answers. Names are
    // refused before any file access (ERROR 2, refused{bad_path}); what only the open can tell
    // (symlinks out, non-regular files) fails the transfer (ERROR 2, failed{access_violation}).
    // A 1000-byte name is within the core's name limit when that limit is 1024: the open then
    // fails with ENAMETOOLONG, which is "not found" (ERROR 1, failed{not_found}).
    let bad_path: Answers = &[(2, Counted::Refused("bad_path"))];
    let outside: Answers = &[(2, Counted::Failed("access_violation"))];
    let attacks: Vec<(String, Vec<u8>, Answers)> = vec![
        ("../etc/passwd".into(), rrq(b"../etc/passwd"), bad_path),
        (
            "/../../etc/passwd".into(),
            rrq(b"/../../etc/passwd"),
            bad_path,
        ),
        ("a/../../x".into(), rrq(b"a/../../x"), bad_path),
        (
            format!("{deep} (12 levels up)"),
            rrq(deep.as_bytes()),
            bad_path,
        ),
        (
            "..\\etc\\passwd (backslashes)".into(),
            rrq(b"..\\etc\\passwd"),
            bad_path,
        ),
        (
            "symlink to /etc/passwd".into(),
            rrq(b"passwd-link"),
            outside,
        ),
        ("symlink to ../etc/passwd".into(), rrq(b"up-link"), outside),
        ("symlink to /dev/zero".into(), rrq(b"zero-link"), outside),
        ("FIFO".into(), rrq(b"fifo"), outside),
        ("directory".into(), rrq(b"subdir"), outside),
        ("directory with a slash".into(), rrq(b"subdir/"), outside),
        // TFTP ends the name at the NUL: what follows is taken as the mode, which is invalid.
        (
            "NUL byte in the name".into(),
            rrq(b"good.bin\0../../etc/passwd"),
            &[
                (0, Counted::Refused("malformed")),
                (4, Counted::Refused("malformed")),
            ],
        ),
        ("newline in the name".into(), rrq(b"good.bin\n"), bad_path),
        (
            "1000-byte name".into(),
            rrq(long.as_bytes()),
            &[
                (2, Counted::Refused("bad_path")),
                (1, Counted::Failed("not_found")),
            ],
        ),
        (
            "write request (WRQ)".into(),
            request(WRQ, b"upload.bin", "octet", &[]),
            &[(2, Counted::Refused("write_refused"))],
        ),
    ];
    let client = lab.udp();
    for (what, req, answers) in &attacks {
        let before: Vec<f64> = answers
            .iter()
            .map(|(_, c)| {
                let (metric, reason) = c.metric();
                lab.metric(metric, &[("reason", reason)])
            })
            .collect();
        let t = Instant::now();
        let (code, msg) = expect_refused(&client, server(), req)
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", lab.context()));
        eprintln!("{what}: ERROR {code} {msg:?} after {:?}", t.elapsed());
        let Some(i) = answers.iter().position(|(c, _)| *c == code) else {
            panic!("{what}: ERROR {code} {msg:?}, want one of {answers:?}");
        };
        let (metric, reason) = answers[i].1.metric();
        lab.site.wait_metric(
            metric,
            &[("reason", reason)],
            &format!("+1 after {what} (ERROR {code})"),
            |v| v - before[i] == 1.0,
        );
        let got = lab
            .fetch(b"good.bin", "octet", &[])
            .unwrap_or_else(|e| panic!("good.bin right after {what}: {e:?}\n{}", lab.context()));
        same_bytes(&got.data, &good).unwrap_or_else(|e| panic!("good.bin after {what}: {e}"));
    }
    assert!(
        !lab.root.join("upload.bin").exists(),
        "a WRQ created a file in the root"
    );

    // An absolute path is taken relative to the root: /etc/passwd is not the host's.
    match lab.fetch(b"/etc/passwd", "octet", &[]) {
        Err(FetchError::Refused { code: 1, .. }) => {}
        other => panic!(
            "RRQ /etc/passwd means <root>/etc/passwd, which does not exist: want ERROR 1, got {other:?}"
        ),
    }
    // A symlink that stays inside the root is followed, unless the daemon had to fall back from
    // openat2(2) to its component walk, which refuses every symlink (it logs that at start).
    let walk = lab
        .site
        .daemon_log()
        .contains("openat2(2) is not available");
    match (walk, lab.fetch(b"alias.bin", "octet", &[])) {
        (false, Ok(got)) => same_bytes(&got.data, &good).expect("alias.bin -> good.bin"),
        (true, Err(FetchError::Refused { code: 2, .. })) => {}
        (walk, other) => panic!(
            "alias.bin -> good.bin (inside the root; openat2 fallback: {walk}): {other:?}\n{}",
            lab.context()
        ),
    }
    assert!(
        lab.site.netbootd_alive(),
        "netbootd died\n{}",
        lab.context()
    );
}

/// `/leading/slash/file` (tftp-hpa and our client) and `dir\file` (Windows backslashes) get the
/// right files.
fn names_are_normalised(driver: Driver) {
    let mut lab = Lab::new("tftpnames", Some(driver));
    let slash = lab.put_random("leading/slash/file", 5000);
    let win = lab.put_random("dir/file", 7000);
    let other = lab.put_random("file", 100);
    start(&mut lab, "");
    let ctx = || lab.context();

    let local = lab.dl_path("slash");
    let out = lab.tftp_hpa_get("/leading/slash/file", &local, "binary");
    assert_download(
        "tftp-hpa get /leading/slash/file",
        &out,
        &local,
        &slash,
        &ctx,
    );
    for (name, want) in [
        (&b"/leading/slash/file"[..], &slash),
        (b"dir\\file", &win),
        (b"\\dir\\file", &win),
        (b"/file", &other),
    ] {
        let what = String::from_utf8_lossy(name);
        let got = lab
            .fetch(name, "octet", &[])
            .unwrap_or_else(|e| panic!("RRQ {what:?}: {e:?}\n{}", ctx()));
        same_bytes(&got.data, want).unwrap_or_else(|e| panic!("RRQ {what:?}: {e}"));
    }
}

/// A packet from a foreign port to a transfer's TID gets ERROR 5 (unknown transfer ID), sent to
/// that port only; the transfer goes on and completes byte-exact.
fn foreign_tid_gets_error_5(driver: Driver) {
    let mut lab = Lab::new("tftptid", Some(driver));
    let want = lab.put_random("tid.bin", 1 << 20);
    start(&mut lab, "");
    let client = lab.udp();
    let foreign = lab.udp();
    let seen: RefCell<Option<Result<(u16, String), String>>> = RefCell::new(None);
    let got = fetch(
        &client,
        server(),
        b"tid.bin",
        "octet",
        &[],
        Duration::from_secs(60),
        |blocks, tid| {
            if blocks != 20 {
                return;
            }
            foreign.send(&tftp_wire::ack(20), tid);
            let answer = match foreign.recv(Duration::from_secs(3)) {
                Some((Pkt::Error { code, msg }, from)) if from == tid => Ok((code, msg)),
                Some((p, from)) => Err(format!("{} from {from}", short(&p))),
                None => Err("no answer within 3 s".to_owned()),
            };
            *seen.borrow_mut() = Some(answer);
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "the transfer must survive the foreign packet: {e:?}\n{}",
            lab.context()
        )
    });
    same_bytes(&got.data, &want).unwrap_or_else(|e| panic!("tid.bin: {e}"));
    match seen.into_inner() {
        Some(Ok((5, _))) => {}
        other => panic!(
            "a packet to the TID from a foreign port must get ERROR 5 from the TID; got {other:?}\n{}",
            lab.context()
        ),
    }
    let stray = foreign.recv(Duration::from_millis(300));
    assert!(
        stray.is_none(),
        "the foreign port got more than one answer: {stray:?}"
    );
}

/// A client that stops ACKing: the server retransmits (counted), gives up after `max_retries`,
/// counts a failed transfer with reason timeout, and frees the slot.
fn silent_client_times_out_after_retries(driver: Driver) {
    let mut lab = Lab::new("tftpsilent", Some(driver));
    lab.put_random("silent.bin", 100_000);
    // timeout 1 s, 2 retries: gone within ~3 s.
    let body = lab.tftp_section("max_blksize = 1468\ntimeout = \"1s\"\nmax_retries = 2\n");
    lab.start(&body);
    let retrans0 = lab.metric(RETRANSMITS, &[]);
    let client: UdpClient = lab.udp();
    let (first, tid) = client
        .ask(
            &request(RRQ, b"silent.bin", "octet", &[]),
            server(),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("no answer to RRQ silent.bin\n{}", lab.context()));
    assert!(
        matches!(first, Pkt::Data { block: 1, .. }),
        "first answer: {}",
        short(&first)
    );
    // Never ACK: collect the retransmissions of block 1.
    let mut resent = 0;
    let deadline = Instant::now() + Duration::from_secs(8);
    while let Some((p, from)) = client.recv(deadline.saturating_duration_since(Instant::now())) {
        assert_eq!(from, tid);
        match p {
            Pkt::Data { block: 1, .. } => resent += 1,
            Pkt::Error { .. } => break,
            p => panic!("unexpected {}", short(&p)),
        }
    }
    assert_eq!(
        resent, 2,
        "max_retries = 2: block 1 must be sent again exactly twice"
    );
    lab.site
        .wait_metric(FAILED, &[("reason", "timeout")], "1", |v| v == 1.0);
    assert!(
        lab.metric(RETRANSMITS, &[]) - retrans0 >= 2.0,
        "{RETRANSMITS} must count the resends\n{}",
        lab.context()
    );
    lab.site.wait_metric(ACTIVE, &[], "0", |v| v == 0.0);
}
