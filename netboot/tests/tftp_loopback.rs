//! The TFTP service with its real drivers (io_uring and plain tokio) on 127.0.0.1, against a
//! minimal client written here: downloads with and without options (`blksize`, `windowsize`,
//! `tsize`), netascii, many clients at once, a file replaced between downloads, refusals, and
//! each transfer's socket closed once it ends. Every download is compared byte for byte.
//!
//! Needs no privileges. Where the kernel refuses io_uring, the `uring_…` tests say so and skip.
// A network test reads the clock and uses real timeouts; a failed setup step panics the test.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ims_netboot::config::{TftpConfig, TftpDriver};
use ims_netboot::io::tftp::{DriverKind, TftpOptions, TftpService, probe_uring};
use tokio::sync::watch;

const RRQ: u16 = 1;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

/// How long the client waits for any packet before retransmitting its last one.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(500);
/// Retransmissions before the client gives up.
const CLIENT_RETRIES: u32 = 10;

// ---------------------------------------------------------------------------------------------
// The minimal client.

/// What a download produced.
#[derive(Debug)]
struct Download {
    data: Vec<u8>,
    /// Options the server acknowledged (OACK), in its order.
    oack: Vec<(String, String)>,
    /// The server's transfer address (its TID).
    tid: SocketAddr,
}

#[derive(Debug)]
#[allow(
    dead_code,
    reason = "the fields are read through Debug in failure messages"
)]
enum Failure {
    /// The server answered ERROR.
    Error(u16, String),
    /// Something else went wrong.
    Other(String),
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn rrq(path: &str, mode: &str, options: &[(&str, String)]) -> Vec<u8> {
    let mut p = RRQ.to_be_bytes().to_vec();
    for s in [path, mode] {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    }
    for (name, value) in options {
        p.extend_from_slice(name.as_bytes());
        p.push(0);
        p.extend_from_slice(value.as_bytes());
        p.push(0);
    }
    p
}

fn ack(block: u16) -> Vec<u8> {
    let mut p = ACK.to_be_bytes().to_vec();
    p.extend_from_slice(&block.to_be_bytes());
    p
}

fn parse_oack(body: &[u8]) -> Vec<(String, String)> {
    let fields: Vec<String> = body
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    fields
        .chunks(2)
        .filter(|c| c.len() == 2 && !c[0].is_empty())
        .map(|c| (c[0].to_ascii_lowercase(), c[1].clone()))
        .collect()
}

/// Download `path` from `server`, asking for `blksize`/`windowsize`/`tsize` when given. ACKs
/// every `windowsize`-th block (RFC 7440), and on a gap re-ACKs the last in-order block.
fn download(
    server: SocketAddr,
    path: &str,
    mode: &str,
    blksize: Option<u16>,
    windowsize: Option<u16>,
    tsize: bool,
) -> Result<Download, Failure> {
    let other = |e: io::Error| Failure::Other(e.to_string());
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(other)?;
    socket
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .map_err(other)?;
    let mut options = Vec::new();
    if let Some(n) = blksize {
        options.push(("blksize", n.to_string()));
    }
    if let Some(n) = windowsize {
        options.push(("windowsize", n.to_string()));
    }
    if tsize {
        options.push(("tsize", "0".to_owned()));
    }
    let request = rrq(path, mode, &options);
    socket.send_to(&request, server).map_err(other)?;

    let mut last_sent = (request, server);
    let mut tid: Option<SocketAddr> = None;
    let mut oack = Vec::new();
    let mut block_size = 512usize;
    let mut window = 1u16;
    let mut data = Vec::new();
    let mut expected: u16 = 1;
    let mut in_window = 0u16;
    let mut retries = 0;
    let mut buf = vec![0u8; 70_000];
    loop {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                retries += 1;
                if retries > CLIENT_RETRIES {
                    return Err(Failure::Other(format!(
                        "timed out waiting for block {expected} of {path}"
                    )));
                }
                socket.send_to(&last_sent.0, last_sent.1).map_err(other)?;
                continue;
            }
            Err(e) => return Err(other(e)),
        };
        let packet = &buf[..n];
        if n < 4 {
            return Err(Failure::Other(format!("runt packet of {n} bytes")));
        }
        match tid {
            None => tid = Some(from),
            Some(t) if t != from => continue,
            Some(_) => {}
        }
        let tid = from;
        retries = 0;
        match be16(packet) {
            OACK if data.is_empty() && expected == 1 => {
                oack = parse_oack(&packet[2..]);
                for (name, value) in &oack {
                    match name.as_str() {
                        "blksize" => {
                            block_size = value
                                .parse()
                                .map_err(|_| Failure::Other("bad blksize".into()))?
                        }
                        "windowsize" => {
                            window = value
                                .parse()
                                .map_err(|_| Failure::Other("bad windowsize".into()))?
                        }
                        _ => {}
                    }
                }
                last_sent = (ack(0), tid);
                socket.send_to(&last_sent.0, tid).map_err(other)?;
            }
            DATA => {
                let block = be16(&packet[2..]);
                let payload = &packet[4..];
                if block != expected {
                    // A gap or a duplicate: acknowledge what we have, restart the window.
                    in_window = 0;
                    last_sent = (ack(expected.wrapping_sub(1)), tid);
                    socket.send_to(&last_sent.0, tid).map_err(other)?;
                    continue;
                }
                data.extend_from_slice(payload);
                expected = expected.wrapping_add(1);
                in_window += 1;
                let last = payload.len() < block_size;
                if last || in_window == window {
                    in_window = 0;
                    last_sent = (ack(block), tid);
                    socket.send_to(&last_sent.0, tid).map_err(other)?;
                }
                if last {
                    return Ok(Download { data, oack, tid });
                }
            }
            ERROR => {
                let message = String::from_utf8_lossy(&packet[4..])
                    .trim_end_matches('\0')
                    .to_owned();
                return Err(Failure::Error(be16(&packet[2..]), message));
            }
            op => return Err(Failure::Other(format!("unexpected opcode {op}"))),
        }
    }
}

/// The transfer's socket must be closed soon after its transfer ended: its port turns free to
/// bind again (waited for, at most 5 s: on a loaded machine the driver may take longer than any
/// fixed pause to see the last ACK and close). A socket still open, for instance held by a
/// receive left pending in io_uring, keeps the port bound. The check sends nothing to the port:
/// a datagram would itself complete such a pending receive and hide the leak.
fn assert_closed(tid: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match UdpSocket::bind(tid) {
            Ok(_) => return,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!(
                "the transfer socket {tid} is still open 5 s after its transfer ended \
                 (binding its port: {e})"
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server under test.

struct Root(PathBuf);

impl Root {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "netbootd-tftp-loopback-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, data: &[u8]) {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, data).unwrap();
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Running {
    service: Option<TftpService>,
    stop: watch::Sender<bool>,
}

impl Running {
    fn start(root: &Path, driver: TftpDriver, max_blksize: Option<u16>) -> Self {
        let config = TftpConfig {
            root: root.to_path_buf(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            max_blksize,
            max_windowsize: 64,
            max_transfers: 64,
            max_queue: 256,
            timeout: Duration::from_millis(200),
            max_retries: 5,
            driver,
            rate_limit_per_ip: ims_netboot::ratelimit::RateLimit::OFF,
        };
        let (stop, stop_rx) = watch::channel(false);
        let service = TftpService::start(&config, driver, TftpOptions::default(), stop_rx)
            .expect("TFTP service starts");
        let expected = match driver {
            TftpDriver::Tokio => DriverKind::Tokio,
            _ => DriverKind::Uring,
        };
        assert_eq!(service.driver(), expected);
        Self {
            service: Some(service),
            stop,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.service.as_ref().unwrap().local_addr()
    }

    fn max_blksize(&self) -> u16 {
        self.service.as_ref().unwrap().max_blksize()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(service) = self.service.take() {
            let started = Instant::now();
            service.join().expect("the TFTP service stops cleanly");
            assert!(started.elapsed() < Duration::from_secs(5), "slow shutdown");
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), different per `seed`.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn uring_available() -> bool {
    match probe_uring() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipping: io_uring unavailable here ({e})");
            false
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios, run once per driver.

fn downloads_are_byte_exact(driver: TftpDriver, tag: &str) {
    let root = Root::new(&format!("{tag}-exact"));
    let small = bytes(2000, 1);
    let aligned = bytes(1468 * 20, 2);
    let medium = bytes(1 << 20, 3);
    let large = bytes(5 << 20, 4);
    root.write("small.bin", &small);
    root.write("efi/aligned.bin", &aligned);
    root.write("medium.bin", &medium);
    root.write("large.bin", &large);
    root.write("menu.txt", b"line one\nline two\r\nend");
    let server = Running::start(&root.0, driver, None);
    // Loopback's MTU of 65536 lets the fitted default reach the RFC maximum.
    assert_eq!(server.max_blksize(), 65464);
    let addr = server.addr();

    // RFC 1350: no options, 512-byte blocks, lock-step.
    let d = download(addr, "small.bin", "octet", None, None, false).unwrap();
    assert_eq!(d.data, small);
    assert!(d.oack.is_empty());
    assert_ne!(
        d.tid.port(),
        addr.port(),
        "a transfer answers from its own port"
    );
    assert_closed(d.tid);

    // A file that is a whole number of blocks ends with an empty block.
    let d = download(addr, "efi/aligned.bin", "octet", Some(1468), Some(4), true).unwrap();
    assert_eq!(d.data, aligned);

    // Ethernet-sized blocks in windows, with tsize.
    let d = download(addr, "medium.bin", "octet", Some(1468), Some(16), true).unwrap();
    assert_eq!(d.data, medium);
    let oack: Vec<(&str, &str)> = d
        .oack
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    for option in [("blksize", "1468"), ("windowsize", "16")] {
        assert!(oack.contains(&option), "{oack:?}");
    }
    assert!(
        oack.contains(&("tsize", medium.len().to_string().as_str())),
        "{oack:?}"
    );
    assert_closed(d.tid);

    // The largest blocks (one 64 KiB datagram each) in windows of 8.
    let d = download(addr, "large.bin", "octet", Some(65464), Some(8), false).unwrap();
    assert_eq!(d.data, large);

    // Asking for more than the server grants gets its maximum.
    let d = download(addr, "medium.bin", "octet", Some(65464), Some(500), false).unwrap();
    assert!(
        d.oack.contains(&("windowsize".into(), "64".into())),
        "{:?}",
        d.oack
    );
    assert_eq!(d.data, medium);

    // Netascii: LF → CR LF, CR → CR NUL.
    let d = download(addr, "menu.txt", "netascii", None, None, false).unwrap();
    assert_eq!(d.data, b"line one\r\nline two\r\0\r\nend");
    let d = download(addr, "menu.txt", "octet", None, None, false).unwrap();
    assert_eq!(d.data, b"line one\nline two\r\nend");
}

fn many_clients_share_one_file(driver: TftpDriver, tag: &str) {
    let root = Root::new(&format!("{tag}-many"));
    let kernel = bytes(3 << 20, 5);
    root.write("vmlinuz", &kernel);
    let server = Running::start(&root.0, driver, Some(1468));
    assert_eq!(server.max_blksize(), 1468);
    let addr = server.addr();
    let clients: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let window = [1, 4, 16, 64][i % 4];
                download(
                    addr,
                    "vmlinuz",
                    "octet",
                    Some(1468),
                    Some(window),
                    i % 2 == 0,
                )
            })
        })
        .collect();
    for client in clients {
        let d = client.join().unwrap().unwrap();
        assert_eq!(d.data.len(), kernel.len());
        assert!(d.data == kernel, "corrupt download");
    }
}

fn replaced_files_and_refusals(driver: TftpDriver, tag: &str) {
    let root = Root::new(&format!("{tag}-replace"));
    root.write("boot.ipxe", b"#!ipxe\nchain http://old\n");
    let server = Running::start(&root.0, driver, None);
    let addr = server.addr();
    let d = download(addr, "boot.ipxe", "octet", None, None, false).unwrap();
    assert_eq!(d.data, b"#!ipxe\nchain http://old\n");

    // Replaced the way operators do it: write a new file, rename it over the old one.
    root.write("boot.ipxe.new", b"#!ipxe\nchain http://new-and-longer\n");
    std::fs::rename(root.0.join("boot.ipxe.new"), root.0.join("boot.ipxe")).unwrap();
    let d = download(addr, "boot.ipxe", "octet", None, None, false).unwrap();
    assert_eq!(d.data, b"#!ipxe\nchain http://new-and-longer\n");

    match download(addr, "missing.efi", "octet", Some(1468), None, false) {
        Err(Failure::Error(1, _)) => {}
        other => panic!("expected ERROR 1 for a missing file, got {other:?}"),
    }
    // A symlink out of the root is refused, never followed.
    std::os::unix::fs::symlink("/etc/hostname", root.0.join("escape")).unwrap();
    match download(addr, "escape", "octet", None, None, false) {
        Err(Failure::Error(2, _)) => {}
        other => panic!("expected ERROR 2 for a symlink out of the root, got {other:?}"),
    }
    match download(addr, "../../etc/passwd", "octet", None, None, false) {
        Err(Failure::Error(code, _)) => {
            assert_ne!(code, 0, "a path outside the root is an access violation")
        }
        other => panic!("expected an ERROR for a path outside the root, got {other:?}"),
    }
}

#[test]
fn tokio_downloads_are_byte_exact() {
    downloads_are_byte_exact(TftpDriver::Tokio, "tokio");
}

#[test]
fn tokio_many_clients_share_one_file() {
    many_clients_share_one_file(TftpDriver::Tokio, "tokio");
}

#[test]
fn tokio_replaced_files_and_refusals() {
    replaced_files_and_refusals(TftpDriver::Tokio, "tokio");
}

#[test]
fn uring_downloads_are_byte_exact() {
    if uring_available() {
        downloads_are_byte_exact(TftpDriver::Uring, "uring");
    }
}

#[test]
fn uring_many_clients_share_one_file() {
    if uring_available() {
        many_clients_share_one_file(TftpDriver::Uring, "uring");
    }
}

#[test]
fn uring_replaced_files_and_refusals() {
    if uring_available() {
        replaced_files_and_refusals(TftpDriver::Uring, "uring");
    }
}

#[test]
fn forced_uring_runs_or_falls_back() {
    // With io_uring available the forced driver runs it; without, the same core starts on the
    // tokio driver (and logs why).
    let root = Root::new("forced");
    let config = TftpConfig {
        root: root.0.clone(),
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        max_blksize: None,
        max_windowsize: 1,
        max_transfers: 1,
        max_queue: 0,
        timeout: Duration::from_secs(1),
        max_retries: 1,
        driver: TftpDriver::Uring,
        rate_limit_per_ip: ims_netboot::ratelimit::RateLimit::OFF,
    };
    let (stop, stop_rx) = watch::channel(false);
    let service = TftpService::start(&config, TftpDriver::Uring, TftpOptions::default(), stop_rx)
        .expect("a forced uring driver starts, falling back to tokio if refused");
    let expected = if probe_uring().is_ok() {
        DriverKind::Uring
    } else {
        DriverKind::Tokio
    };
    assert_eq!(service.driver(), expected);
    stop.send(true).unwrap();
    service.join().unwrap();
}

#[test]
fn a_busy_port_fails_the_start() {
    let root = Root::new("busy");
    let taken = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let config = TftpConfig {
        root: root.0.clone(),
        listen: taken.local_addr().unwrap(),
        max_blksize: None,
        max_windowsize: 1,
        max_transfers: 1,
        max_queue: 0,
        timeout: Duration::from_secs(1),
        max_retries: 1,
        driver: TftpDriver::Tokio,
        rate_limit_per_ip: ims_netboot::ratelimit::RateLimit::OFF,
    };
    let (_stop, stop_rx) = watch::channel(false);
    let err = TftpService::start(&config, TftpDriver::Tokio, TftpOptions::default(), stop_rx)
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&taken.local_addr().unwrap().to_string()) && msg.contains("[tftp] listen"),
        "{msg}"
    );
}
