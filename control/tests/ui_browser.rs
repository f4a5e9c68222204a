//! The web UI in a real browser: starts the `ims-control` binary on a temporary SQLite data
//! directory, creates a viewer, a site and a legacy HTTP worker through the REST API, enrols a
//! test edge over the QUIC uplink (which heartbeats with services and transfer counts and reports
//! a provisioning history: lease, failed and completed TFTP transfers, phone-home), then runs the
//! Playwright script `tests/ui/e2e.mjs` (node + `playwright-core` + Debian's headless Chromium)
//! and fails with its output when any of its checks fails.
//!
//! Needs `node` (≥ 20), `/usr/bin/chromium` (or `IMS_CHROMIUM`) and `npm ci --prefix
//! control/tests/ui`; it fails, never skips, when one is missing. Screenshots of every page go to
//! `target/ui-screenshots/` (or `IMS_UI_SCREENSHOTS`); the run prints their paths.

mod process;
mod support;
mod uplink_client;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use ims_control::db::now_ms;
use ims_proto::{
    ControlMessage, EdgeEvent, EdgeEventKind, EdgeMessage, EventBatch, Heartbeat, LeaseEvent,
    MacAddr, Metrics, PhoneHome, ServiceState, ServiceStatus, SnapshotAck, TftpCompleted,
    TransferFailed,
};
use process::{Server, curl, ims_control, login, quic_addr, run, text};
use serde_json::json;
use support::tempdir::TempDir;
use tokio::sync::oneshot;
use uplink_client::{Edge, Stream};

const ADMIN_PASSWORD: &str = "ui-admin-password-1";
const VIEWER: &str = "ui-viewer";
const VIEWER_PASSWORD: &str = "ui-viewer-password-1";
const SITE: &str = "lab-site";
const WORKER: &str = "edge-lab-1";
/// The uplink edge's host name (its worker id is `<site>-<host name>`).
const EDGE_HOST: &str = "rack-1";
/// The machine the uplink edge reports a provisioning history for; the browser script creates
/// it (CSV import, as `node-3`) after the events arrived, which links them.
const TIMELINE_MAC: &str = "52:54:00:aa:00:03";
/// Longest the browser script may run.
const SCRIPT_LIMIT: Duration = Duration::from_secs(180);

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui")
}

/// Fails with what to install when node, Chromium or the npm packages are missing.
fn require_tools() -> PathBuf {
    let node = Command::new("node").arg("--version").output();
    match node {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "`node` is missing: the web UI test needs Node.js 18 or later \
             (apt-get install -y nodejs npm), then `npm ci --prefix control/tests/ui`"
        ),
    }
    let chromium = std::env::var_os("IMS_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        chromium.exists(),
        "{} is missing: the web UI test needs Chromium (apt-get install -y chromium \
         chromium-driver), or set IMS_CHROMIUM to a Chromium binary",
        chromium.display()
    );
    assert!(
        ui_dir().join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `npm ci --prefix control/tests/ui`"
    );
    chromium
}

fn screenshots_dir() -> PathBuf {
    std::env::var_os("IMS_UI_SCREENSHOTS").map_or_else(
        || {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            manifest
                .parent()
                .unwrap_or(manifest)
                .join("target/ui-screenshots")
        },
        PathBuf::from,
    )
}

fn post(base: &str, token: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let a = curl(
        "POST",
        &format!("{base}{path}"),
        Some(token),
        Some(body),
        &[],
    );
    assert!(
        a.status == 200 || a.status == 201,
        "POST {path}: {} {}",
        a.status,
        a.body
    );
    a.json()
}

/// Runs `cmd` to completion within `limit`, killing it (by its PID) when it overruns; returns
/// whether it succeeded and its stdout and stderr.
fn run_bounded(mut cmd: Command, limit: Duration) -> (bool, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn node");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut status = None;
    for _ in 0..(limit.as_millis() / 100) {
        if let Some(s) = child.try_wait().expect("try_wait") {
            status = Some(s);
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let ok = match status {
        Some(s) => s.success(),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    };
    let (out, mut err) = (out.join().expect("stdout"), err.join().expect("stderr"));
    if status.is_none() {
        err.push_str(&format!(
            "\nthe browser script did not finish within {limit:?}"
        ));
    }
    (ok, out, err)
}

fn heartbeat(seq: u64) -> EdgeMessage {
    let mut hb = Heartbeat {
        seq,
        metrics: Metrics {
            active_leases: 4,
            active_transfers: 3,
            ..Metrics::default()
        },
        ..Heartbeat::default()
    };
    for name in ["dhcp", "tftp", "http"] {
        hb.services.insert(
            name.into(),
            ServiceStatus {
                state: ServiceState::Running,
                last_error: None,
                last_error_at_ms: None,
            },
        );
    }
    EdgeMessage::Heartbeat(hb)
}

/// A provisioning history for `mac`, oldest first: a lease, a failed TFTP transfer, a complete
/// one (2 MiB in 500 ms) and the installed system phoning home.
fn history(mac: MacAddr) -> Vec<EdgeEvent> {
    let peer = SocketAddr::from(([10, 77, 0, 13], 2070));
    let t = now_ms() - 600_000;
    let kinds = [
        EdgeEventKind::LeaseGranted(LeaseEvent {
            mac,
            ip: Ipv4Addr::new(10, 77, 0, 13),
            hostname: Some("node-3".into()),
            lease_end_ms: now_ms() + 3_600_000,
            boot_file: Some("ipxe.efi".into()),
            subnet: Some("10.77.0.0/24".parse().expect("cidr")),
        }),
        EdgeEventKind::TftpFailed(TransferFailed {
            mac: Some(mac),
            peer,
            path: "ipxe.efi".into(),
            reason: "timeout after 5 retransmissions".into(),
            bytes: 65_536,
            duration_ms: 5000,
            retransmits: 5,
            status: None,
        }),
        EdgeEventKind::TftpCompleted(TftpCompleted {
            mac: Some(mac),
            peer,
            path: "ipxe.efi".into(),
            blksize: 1468,
            windowsize: 8,
            bytes: 2 * 1024 * 1024,
            duration_ms: 500,
            retransmits: 0,
        }),
        EdgeEventKind::PhoneHome(PhoneHome {
            mac,
            ip: Some(Ipv4Addr::new(10, 77, 0, 13).into()),
            body: None,
        }),
    ];
    (1u64..)
        .zip(kinds)
        .map(|(id, kind)| EdgeEvent {
            id,
            at_ms: t + i64::try_from(id).expect("small") * 60_000,
            kind,
        })
        .collect()
}

/// Enrols a test edge with a join token for `SITE`, opens its session, sends the history and a
/// heartbeat, and keeps heartbeating (reading whatever the server sends) until `stop` fires.
async fn uplink_edge(dir: &Path, server: &Server, stop: oneshot::Receiver<()>) {
    let mut join = ims_control();
    join.args(["join-token", "--site", SITE, "--data-dir"])
        .arg(dir);
    let out = tokio::task::spawn_blocking(move || run(join, None))
        .await
        .expect("join");
    assert!(out.status.success(), "join-token: {}", text(&out.stderr));
    let token = text(&out.stdout)
        .lines()
        .last()
        .expect("the token line")
        .to_owned();
    let mut addr = None;
    for _ in 0..200 {
        addr = quic_addr(&server.stderr());
        if addr.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let addr = addr.expect("ims-control logs where QUIC listens");
    let edge = Edge::enroll(addr, &token, EDGE_HOST).await;
    let mut s: Stream = edge.connect(addr, true).await.expect("connect");
    let mut acked = false;
    while !acked {
        match s.recv().await {
            ControlMessage::Snapshot(snap) => {
                s.send(&EdgeMessage::SnapshotAck(SnapshotAck {
                    generation: snap.generation,
                }))
                .await
                .expect("ack");
                acked = true;
            }
            ControlMessage::Welcome(_) => {}
            other => panic!("expected Welcome and Snapshot, got {other:?}"),
        }
    }
    let mac: MacAddr = TIMELINE_MAC.parse().expect("mac");
    s.send(&EdgeMessage::Events(EventBatch {
        batch: history(mac),
    }))
    .await
    .expect("events");
    s.send(&heartbeat(1)).await.expect("heartbeat");
    loop {
        match s.recv_within(Duration::from_secs(10)).await {
            Ok(ControlMessage::EventsAck(a)) if a.up_to == 4 => break,
            Ok(_) => {}
            Err(e) => panic!("the events were not acknowledged: {e}"),
        }
    }
    tokio::spawn(async move {
        let mut stop = stop;
        let mut seq = 2;
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {
                    if s.send(&heartbeat(seq)).await.is_err() {
                        return;
                    }
                    seq += 1;
                }
                // Deltas and acknowledgements are read and dropped, so flow control never
                // stalls the server's side.
                r = s.recv_within(Duration::from_secs(1)) => {
                    if matches!(&r, Err(e) if !e.starts_with("no message")) {
                        return;
                    }
                }
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_in_headless_chromium() {
    let chromium = require_tools();
    let dir = TempDir::new("ims-ui-browser");
    let mut cmd = ims_control();
    cmd.arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--quic-listen", "127.0.0.1:0", "--heartbeat-interval", "2s"])
        .env("IMS_ADMIN_PASSWORD", ADMIN_PASSWORD);
    let server = tokio::task::spawn_blocking(move || Server::start(cmd))
        .await
        .expect("join");
    let base = server.url.clone();

    // The shell and its assets: versioned URLs, content types, caching.
    let index = curl("GET", &format!("{base}/"), None, None, &["-i"]);
    assert_eq!(index.status, 200);
    assert!(index.body.contains("text/html"), "{}", index.body);
    let js = index
        .body
        .split('"')
        .find(|s| s.starts_with("/ui/") && s.ends_with("/app.js"))
        .expect("the shell links app.js")
        .to_owned();
    let asset = curl("GET", &format!("{base}{js}"), None, None, &["-i"]);
    assert_eq!(asset.status, 200);
    let lower = asset.body.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/javascript"), "{lower}");
    assert!(lower.contains("immutable"), "{lower}");
    let missing = curl("GET", &format!("{base}/ui/x/nope.js"), None, None, &[]);
    assert_eq!(missing.status, 404);
    let stream = curl(
        "GET",
        &format!("{base}/api/workers/stream"),
        None,
        None,
        &[],
    );
    assert_eq!(stream.status, 401, "the live stream needs a token");

    // Data the script expects.
    let admin = login(&base, "admin", ADMIN_PASSWORD, &[]);
    post(
        &base,
        &admin,
        "/api/users",
        &json!({"username": VIEWER, "password": VIEWER_PASSWORD, "role": "viewer"}),
    );
    post(
        &base,
        &admin,
        "/api/sites",
        &json!({"name": SITE, "description": "the lab's rack"}),
    );
    post(
        &base,
        &admin,
        "/api/ims-worker/register",
        &json!({"worker_id": WORKER, "ip_address": "10.77.0.2"}),
    );
    post(
        &base,
        &admin,
        "/api/ims-worker/heartbeat",
        &json!({"worker_id": WORKER,
                "services": {"dhcp": {"status": "running"}, "tftp": {"status": "running"}},
                "metrics": {"active_leases": 1, "active_transfers": 0}}),
    );

    let (stop_edge, stopped) = oneshot::channel();
    uplink_edge(dir.path(), &server, stopped).await;

    let shots = screenshots_dir();
    let mut node = Command::new("node");
    node.arg(ui_dir().join("e2e.mjs"))
        .current_dir(ui_dir())
        .env("IMS_URL", &base)
        .env("IMS_ADMIN_USER", "admin")
        .env("IMS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("IMS_VIEWER_USER", VIEWER)
        .env("IMS_VIEWER_PASSWORD", VIEWER_PASSWORD)
        .env("IMS_WORKER_ID", WORKER)
        .env("IMS_SITE", SITE)
        .env("IMS_EDGE_ID", format!("{SITE}-{EDGE_HOST}"))
        .env("IMS_SCREENSHOTS", &shots)
        .env("IMS_CHROMIUM", &chromium);
    let (ok, out, err) = tokio::task::spawn_blocking(move || run_bounded(node, SCRIPT_LIMIT))
        .await
        .expect("join");
    let _ = stop_edge.send(());
    println!("{out}");
    assert!(
        ok,
        "the browser test failed:\n--- stdout\n{out}\n--- stderr\n{err}\n--- ims-control log (last 40 lines)\n{}",
        server
            .stderr()
            .iter()
            .rev()
            .take(40)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!("screenshots: {}", shots.display());
}
