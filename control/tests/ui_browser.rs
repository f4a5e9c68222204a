//! The web UI in a real browser: starts the `ims-control` binary on a temporary SQLite data
//! directory, creates a viewer, a site and an edge worker through the REST API, then runs the
//! Playwright script `tests/ui/e2e.mjs` (node + `playwright-core` + Debian's headless Chromium)
//! and fails with its output when any of its checks fails.
//!
//! Needs `node` (≥ 20), `/usr/bin/chromium` (or `IMS_CHROMIUM`) and `npm ci --prefix
//! control/tests/ui`; it fails, never skips, when one is missing. Screenshots of every page go to
//! `target/ui-screenshots/` (or `IMS_UI_SCREENSHOTS`); the run prints their paths.

mod process;
mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use process::{Server, curl, ims_control, login};
use serde_json::json;
use support::tempdir::TempDir;

const ADMIN_PASSWORD: &str = "ui-admin-password-1";
const VIEWER: &str = "ui-viewer";
const VIEWER_PASSWORD: &str = "ui-viewer-password-1";
const SITE: &str = "lab-site";
const WORKER: &str = "edge-lab-1";
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

#[test]
fn web_ui_in_headless_chromium() {
    let chromium = require_tools();
    let dir = TempDir::new("ims-ui-browser");
    let mut cmd = ims_control();
    cmd.arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("IMS_ADMIN_PASSWORD", ADMIN_PASSWORD);
    let server = Server::start(cmd);
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
        .env("IMS_SCREENSHOTS", &shots)
        .env("IMS_CHROMIUM", &chromium);
    let (ok, out, err) = run_bounded(node, SCRIPT_LIMIT);
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
