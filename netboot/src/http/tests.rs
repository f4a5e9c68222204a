//! In-process tests of the HTTP boot server: a real listener on 127.0.0.1, requests written by
//! hand on TCP sockets, and a real LMDB event log.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::time::Duration;

use ims_proto::MacAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::config::{BootProfile, Machine};
use crate::store::events::Event;
use crate::store::lmdb::LmdbStore;

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("netbootd-http-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SECRET: &str = "TOP-SECRET-OUTSIDE-ROOT";

fn mac(last: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0xab, 0xcd, last])
}

/// Deterministic, non-repeating-looking content.
fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A running server with a root, a store and a catalog of three machines.
struct Site {
    dir: TempDir,
    addr: SocketAddr,
    state: HttpState,
    log: EventLog,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Site {
    async fn start(name: &str, max_downloads: usize, queue_timeout: Duration) -> Self {
        let dir = TempDir::new(name);
        let root = dir.0.join("root");
        std::fs::create_dir_all(root.join("boot")).expect("mkdir");
        std::fs::create_dir_all(root.join("dir")).expect("mkdir");
        std::fs::write(root.join("vmlinuz"), content(300_000)).expect("write");
        std::fs::write(root.join("boot/menu.ipxe"), "#!ipxe\necho hi\n").expect("write");
        std::fs::write(dir.0.join("secret"), SECRET).expect("write");
        symlink("../secret", root.join("out")).expect("symlink");
        symlink("/etc/passwd", root.join("passwd")).expect("symlink");
        symlink("vmlinuz", root.join("kernel-link")).expect("symlink");

        let store = LmdbStore::open(&dir.0.join("data")).expect("store");
        let log = store.event_log().expect("log");
        let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let http = HttpConfig {
            listen: addr,
            root,
            public_url: format!("http://{addr}/"),
            max_downloads,
        };
        let mut dhcp = DhcpConfig::default();
        for (last, netboot) in [(1, true), (2, false)] {
            dhcp.machines.insert(
                mac(last),
                Machine {
                    mac: mac(last),
                    ip: Some(Ipv4Addr::new(10, 9, 0, last)),
                    hostname: format!("node{last}"),
                    boot_profile: Some("linux".to_owned()),
                    netboot,
                },
            );
        }
        dhcp.boot_profiles.insert(
            "linux".to_owned(),
            BootProfile {
                name: "linux".to_owned(),
                kernel: Some("vmlinuz".to_owned()),
                initrd: Some("initrd.img".to_owned()),
                cmdline: Some("console=ttyS0 cb={phone_home}".to_owned()),
                ..BootProfile::default()
            },
        );
        let state =
            HttpState::new(&http, &dhcp, Some(log.clone())).with_queue_timeout(queue_timeout);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(serve(state.clone(), listener, stop_rx));
        Self {
            dir,
            addr,
            state,
            log,
            stop,
            task,
        }
    }

    async fn shutdown(self) {
        self.stop.send(true).expect("stop");
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("server stops")
            .expect("join")
            .expect("serve");
    }

    /// Events of the log, waiting up to 10 s for at least `n` (the writer batches).
    async fn events(&self, n: usize) -> Vec<Event> {
        for _ in 0..200 {
            let events = self.log.list(0, usize::MAX).expect("list");
            if events.len() >= n {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.log.list(0, usize::MAX).expect("list")
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = std::str::from_utf8(&raw[..split]).expect("utf-8 head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// Send `method path` with `extra` header lines and `body`; read the whole reply.
async fn request(addr: SocketAddr, method: &str, path: &str, extra: &str, body: &[u8]) -> Reply {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.expect("write");
        s.write_all(body).await.expect("write body");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.expect("read");
        parse(&raw)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("reply within 10 s")
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, "", b"").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_get_head_ranges_and_validators() {
    let site = Site::start("files", 8, DEFAULT_QUEUE_TIMEOUT).await;
    let want = content(300_000);

    let r = get(site.addr, "/vmlinuz").await;
    assert_eq!(r.status, 200);
    assert!(r.body == want, "body differs ({} bytes)", r.body.len());
    assert_eq!(r.header("content-length"), Some("300000"));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let etag = r.header("etag").expect("etag").to_owned();
    let modified = r.header("last-modified").expect("last-modified").to_owned();

    let r = request(site.addr, "HEAD", "/vmlinuz", "", b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("300000"));
    assert!(r.body.is_empty());

    let r = get(site.addr, "/boot/menu.ipxe").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "#!ipxe\necho hi\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));

    // A symlink inside the root is followed.
    assert!(get(site.addr, "/kernel-link").await.body == want);

    let r = request(
        site.addr,
        "GET",
        "/vmlinuz",
        "Range: bytes=1000-1999\r\n",
        b"",
    )
    .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 1000-1999/300000"));
    assert_eq!(r.header("content-length"), Some("1000"));
    assert!(r.body == want[1000..2000]);

    let r = request(site.addr, "GET", "/vmlinuz", "Range: bytes=-10\r\n", b"").await;
    assert_eq!(r.status, 206);
    assert!(r.body == want[299_990..]);

    let r = request(
        site.addr,
        "GET",
        "/vmlinuz",
        "Range: bytes=300000-\r\n",
        b"",
    )
    .await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */300000"));
    assert!(r.body.is_empty());

    let r = request(site.addr, "HEAD", "/vmlinuz", "Range: bytes=0-9\r\n", b"").await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-length"), Some("10"));

    let inm = format!("If-None-Match: {etag}\r\n");
    assert_eq!(
        request(site.addr, "GET", "/vmlinuz", &inm, b"")
            .await
            .status,
        304
    );
    let ims = format!("If-Modified-Since: {modified}\r\n");
    assert_eq!(
        request(site.addr, "GET", "/vmlinuz", &ims, b"")
            .await
            .status,
        304
    );
    let stale = "If-Range: \"other\"\r\nRange: bytes=0-9\r\n";
    let r = request(site.addr, "GET", "/vmlinuz", stale, b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 300_000);
    let fresh = format!("If-Range: {etag}\r\nRange: bytes=0-9\r\n");
    assert_eq!(
        request(site.addr, "GET", "/vmlinuz", &fresh, b"")
            .await
            .status,
        206
    );

    // Every body sent is a started download: 7 GETs answered 200 or 206 (not HEAD, 304, 416).
    // Whole-file downloads (and ranges reaching the end) complete; mid-file ranges do neither.
    let events = site.events(12).await;
    assert_eq!(events.len(), 12, "{events:#?}");
    let started: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::HttpStarted {
                path,
                range,
                size,
                peer,
            } => Some((path.as_str(), range.as_deref(), *size, peer.ip())),
            _ => None,
        })
        .collect();
    let localhost = std::net::IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert_eq!(
        started,
        [
            ("vmlinuz", None, 300_000, localhost),
            ("boot/menu.ipxe", None, 15, localhost),
            ("kernel-link", None, 300_000, localhost),
            ("vmlinuz", Some("bytes=1000-1999"), 300_000, localhost),
            ("vmlinuz", Some("bytes=-10"), 300_000, localhost),
            // If-Range does not match: the whole file, the range is not honoured.
            ("vmlinuz", None, 300_000, localhost),
            ("vmlinuz", Some("bytes=0-9"), 300_000, localhost),
        ]
    );
    // Each completion follows its download's start.
    for (i, e) in events.iter().enumerate() {
        if matches!(e.kind, EventKind::HttpCompleted { .. }) {
            assert!(
                matches!(
                    events.get(i.wrapping_sub(1)).map(|e| &e.kind),
                    Some(EventKind::HttpStarted { .. })
                ),
                "completion without its start just before: {events:#?}"
            );
        }
    }
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::HttpFailed { .. })),
        "{events:#?}"
    );
    let completed: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::HttpCompleted {
                path,
                bytes,
                status,
                peer,
                ..
            } => Some((path.as_str(), *bytes, *status, peer.ip())),
            _ => None,
        })
        .collect();
    assert!(
        completed.contains(&("vmlinuz", 300_000, 200, localhost)),
        "{completed:?}"
    );
    assert!(
        completed.contains(&("boot/menu.ipxe", 15, 200, localhost)),
        "{completed:?}"
    );
    assert!(
        completed.contains(&("vmlinuz", 10, 206, localhost)),
        "{completed:?}"
    );
    assert!(!completed.iter().any(|c| c.1 == 1000), "{completed:?}");
    site.shutdown().await;
}

/// A client that reads the start of a large body and hangs up: the download is recorded as
/// started, then failed (`client_closed`) with the bytes sent so far; a full download of the
/// same file is started then completed; refused requests are not transfers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_body_is_a_failed_download() {
    const SIZE: u64 = 24 << 20;
    let site = Site::start("failed", 8, DEFAULT_QUEUE_TIMEOUT).await;
    let big = vec![0x5a; SIZE as usize];
    std::fs::write(site.dir.0.join("root/big.img"), &big).expect("write big");

    assert_eq!(get(site.addr, "/missing").await.status, 404);
    assert_eq!(get(site.addr, "/out").await.status, 403);

    // A small receive buffer keeps the server from pushing the whole file into the sockets.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut quitter = tokio::time::timeout(Duration::from_secs(10), socket.connect(site.addr))
        .await
        .expect("connect in time")
        .expect("connect");
    quitter
        .write_all(b"GET /big.img HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while head.len() < 8192 {
        let n = tokio::time::timeout(Duration::from_secs(10), quitter.read(&mut buf))
            .await
            .expect("body within 10 s")
            .expect("read");
        assert!(
            n > 0,
            "server closed early: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.extend_from_slice(&buf[..n]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{:?}", &head[..64]);
    drop(quitter);

    let events = site.events(2).await;
    let kinds: Vec<_> = events.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(kinds.len(), 2, "{kinds:#?}");
    assert!(
        matches!(
            &kinds[0],
            EventKind::HttpStarted { path, range: None, size: SIZE, .. } if path == "big.img"
        ),
        "{kinds:#?}"
    );
    match &kinds[1] {
        EventKind::HttpFailed {
            peer,
            path,
            reason,
            bytes,
            status,
            ..
        } => {
            assert_eq!(peer.ip(), std::net::IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert_eq!(
                (path.as_str(), reason.as_str(), *status),
                ("big.img", "client_closed", 200)
            );
            assert!(*bytes >= 4096 && *bytes < SIZE, "bytes sent: {bytes}");
        }
        other => panic!("expected a failed download, got {other:?}"),
    }

    // The same file downloaded in full: started, then completed.
    let r = get(site.addr, "/big.img").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len() as u64, SIZE);
    let events = site.events(4).await;
    let kinds: Vec<_> = events[2..].iter().map(|e| e.kind.clone()).collect();
    assert_eq!(kinds.len(), 2, "{kinds:#?}");
    assert!(
        matches!(&kinds[0], EventKind::HttpStarted { size: SIZE, .. }),
        "{kinds:#?}"
    );
    assert!(
        matches!(
            &kinds[1],
            EventKind::HttpCompleted {
                bytes: SIZE,
                status: 200,
                ..
            }
        ),
        "{kinds:#?}"
    );
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outside_the_root_leaks() {
    let site = Site::start("traversal", 8, DEFAULT_QUEUE_TIMEOUT).await;
    let cases = [
        ("/../etc/passwd", 403),
        ("/../secret", 403),
        ("/%2e%2e/%2e%2e/etc/passwd", 403),
        ("/%2E%2E%2Fsecret", 403),
        ("/boot/..%2f..%2fsecret", 403),
        ("/out", 403),
        ("/passwd", 403),
        ("/dir", 403),
        ("/dir/", 403),
        ("//etc/passwd", 404),
        ("/missing", 404),
        ("/", 404),
        ("/a%00b", 400),
        ("/a%zz", 400),
    ];
    for (path, status) in cases {
        for method in ["GET", "HEAD"] {
            let r = request(site.addr, method, path, "", b"").await;
            assert_eq!(r.status, status, "{method} {path}");
            let text = r.text();
            assert!(
                !text.contains(SECRET) && !text.contains("root:"),
                "{path} leaked: {text}"
            );
        }
    }
    let r = request(site.addr, "DELETE", "/vmlinuz", "", b"").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(get(site.addr, "/healthz").await.text(), "ok\n");
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipxe_scripts_per_machine() {
    let site = Site::start("ipxe", 8, DEFAULT_QUEUE_TIMEOUT).await;
    let base = format!("http://{}", site.addr);
    let boot = format!(
        "#!ipxe\nkernel {base}/vmlinuz console=ttyS0 cb={base}/phone-home/52:54:00:ab:cd:01\n\
         initrd {base}/initrd.img\nboot\n"
    );
    for path in [
        "/boot.ipxe?mac=52:54:00:ab:cd:01",
        "/boot.ipxe?mac=52%3A54%3A00%3AAB%3ACD%3A01",
        "/boot.ipxe/52-54-00-AB-CD-01",
        "/boot.ipxe/525400abcd01",
    ] {
        let r = get(site.addr, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.text(), boot, "{path}");
    }
    for (path, why) in [
        (
            "/boot.ipxe?mac=52:54:00:ab:cd:09",
            "not a registered machine",
        ),
        ("/boot.ipxe/52:54:00:ab:cd:02", "netboot is off for node2"),
    ] {
        let r = get(site.addr, path).await;
        assert_eq!(r.status, 200, "{path}");
        let text = r.text();
        assert!(text.starts_with("#!ipxe\necho netbootd: "), "{text}");
        assert!(text.contains(why) && text.ends_with("\nexit\n"), "{text}");
    }
    assert_eq!(get(site.addr, "/boot.ipxe").await.status, 400);
    assert_eq!(get(site.addr, "/boot.ipxe?mac=zz").await.status, 400);

    // The catalog can be replaced while the server runs.
    let mut catalog = (*site.state.catalog()).clone();
    if let Some(m) = catalog.machines.get_mut(&mac(2)) {
        m.netboot = true;
    }
    site.state.set_catalog(catalog);
    let r = get(site.addr, "/boot.ipxe/52:54:00:ab:cd:02").await;
    assert!(r.text().contains("\nkernel "), "{}", r.text());

    // Registered machines' scripts are recorded; unknown MACs are not.
    let events = site.events(6).await;
    let scripts: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::IpxeScript { mac, refused, .. } => Some((*mac, refused.is_some())),
            _ => None,
        })
        .collect();
    assert_eq!(
        scripts,
        vec![
            (mac(1), false),
            (mac(1), false),
            (mac(1), false),
            (mac(1), false),
            (mac(2), true),
            (mac(2), false)
        ]
    );
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_home_is_durable_before_the_answer() {
    let site = Site::start("phone", 8, DEFAULT_QUEUE_TIMEOUT).await;
    let r = request(
        site.addr,
        "POST",
        "/phone-home/52:54:00:ab:cd:01",
        "",
        b"installed: ok",
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    // No waiting: the event is in the log before the 204.
    let events = site.log.list(0, usize::MAX).expect("list");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].kind,
        EventKind::PhoneHome {
            mac: mac(1),
            ip: Some(Ipv4Addr::LOCALHOST.into()),
            body: Some("installed: ok".to_owned()),
        }
    );
    // Empty body, other MAC spelling, netboot off: still a registered machine.
    let r = request(site.addr, "POST", "/phone-home/52-54-00-AB-CD-02", "", b"").await;
    assert_eq!(r.status, 204);

    let r = request(site.addr, "POST", "/phone-home/52:54:00:ab:cd:09", "", b"x").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        request(site.addr, "POST", "/phone-home/nope", "", b"")
            .await
            .status,
        400
    );
    let big = vec![b'a'; MAX_BODY_PLUS_ONE];
    let r = request(site.addr, "POST", "/phone-home/52:54:00:ab:cd:01", "", &big).await;
    assert_eq!(r.status, 413);
    let r = get(site.addr, "/phone-home/52:54:00:ab:cd:01").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));

    let events = site.log.list(0, usize::MAX).expect("list");
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(
        &events[1].kind,
        EventKind::PhoneHome { mac: m, body: None, .. } if *m == mac(2)
    ));
    site.shutdown().await;
}

const MAX_BODY_PLUS_ONE: usize = crate::store::events::MAX_PHONE_HOME_BODY + 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_limit_queues_then_503() {
    let site = Site::start("limit", 1, Duration::from_millis(300)).await;
    let big = content(32 << 20);
    std::fs::write(site.dir.0.join("root/big"), &big).expect("write big");

    // A client that reads a little and stalls holds the only slot.
    let mut stalled = TcpStream::connect(site.addr).await.expect("connect");
    stalled
        .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut first = [0u8; 1024];
    let n = stalled.read(&mut first).await.expect("read");
    assert!(first[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &first[..n]);

    let waited = monotonic_now();
    let r = get(site.addr, "/vmlinuz").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("5"));
    assert!(
        waited.elapsed() >= Duration::from_millis(250),
        "did not wait"
    );
    // HEAD and scripts need no slot.
    assert_eq!(
        request(site.addr, "HEAD", "/big", "", b"").await.status,
        200
    );
    assert_eq!(
        get(site.addr, "/boot.ipxe/52:54:00:ab:cd:01").await.status,
        200
    );

    // A request already waiting gets the slot when the stalled client goes away.
    let addr = site.addr;
    let waiting = tokio::spawn(async move { get(addr, "/vmlinuz").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stalled);
    let r = waiting.await.expect("join");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 300_000);
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_in_metrics() {
    let handle = crate::metrics::install().expect("recorder");
    let site = Site::start("metrics", 8, DEFAULT_QUEUE_TIMEOUT).await;
    assert_eq!(get(site.addr, "/vmlinuz").await.status, 200);
    assert_eq!(get(site.addr, "/missing").await.status, 404);
    assert_eq!(
        get(site.addr, "/boot.ipxe/52:54:00:ab:cd:01").await.status,
        200
    );
    let body = handle.render();
    let value = |prefix: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        value("netbootd_http_requests_total{route=\"file\",status=\"200\"}") >= 1.0,
        "{body}"
    );
    assert!(
        value("netbootd_http_requests_total{route=\"file\",status=\"404\"}") >= 1.0,
        "{body}"
    );
    assert!(
        value("netbootd_http_requests_total{route=\"ipxe\",status=\"200\"}") >= 1.0,
        "{body}"
    );
    assert!(
        value("netbootd_http_bytes_sent_total") >= 300_000.0,
        "{body}"
    );
    assert!(body.contains("netbootd_http_active_downloads"), "{body}");
    assert!(
        body.contains("netbootd_http_request_duration_seconds"),
        "{body}"
    );
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_event_log_phone_home_is_refused_and_files_still_serve() {
    let dir = TempDir::new("nolog");
    std::fs::write(dir.0.join("f"), b"x").expect("write");
    let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let http = HttpConfig {
        listen: addr,
        root: dir.0.clone(),
        public_url: format!("http://{addr}"),
        max_downloads: 2,
    };
    let dhcp = DhcpConfig {
        machines: BTreeMap::from([(
            mac(1),
            Machine {
                mac: mac(1),
                ip: None,
                hostname: "n1".to_owned(),
                boot_profile: None,
                netboot: true,
            },
        )]),
        ..DhcpConfig::default()
    };
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(serve(HttpState::new(&http, &dhcp, None), listener, rx));
    assert_eq!(get(addr, "/f").await.body, b"x");
    let r = request(addr, "POST", "/phone-home/52:54:00:ab:cd:01", "", b"").await;
    assert_eq!(r.status, 503);
    // Binding a busy port names the address.
    let err = bind(addr).await.expect_err("busy");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    stop.send(true).expect("stop");
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("stops")
        .expect("join")
        .expect("serve");
}
