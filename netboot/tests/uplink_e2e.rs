//! End to end on loopback with two real processes: `ims-control serve` (SQLite in a temporary
//! data directory) and `netbootd` (HTTP boot only, no DHCP sockets, so no privileges needed).
//!
//! A site with a cluster, a boot profile, an IP pool and a machine is made over REST; `netbootd
//! enroll` joins with a token from `ims-control join-token`; the daemon then serves the
//! machine's iPXE script from the control plane's snapshot, shows up as an active worker, sees a
//! REST change to its boot profile within 1 s, and a phone-home turns the machine ACTIVE with
//! netboot off, which comes back to the edge as a change. The edge stops and, three missed
//! heartbeats later, shows inactive. Finally the control plane is stopped and `netbootd`
//! restarted: it serves from the snapshot it stored.
//!
//! `ims-control` is looked up next to this test binary (`target/debug/ims-control`); it exists
//! after `cargo test --workspace` or `cargo build -p ims-control`. Without it the test fails
//! saying so.
// A process test reads the clock and uses real timeouts; a failed setup step panics the test.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::http::{http, ims_control};

mod support;

const MAC: &str = "52:54:00:00:07:01";
const ADMIN_PASSWORD: &str = "e2e-admin-password-1";

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("netbootd-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (by its PID) when dropped, with its stderr lines collected.
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// SIGTERM, then wait (at most 10 s).
    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!(
            "process did not stop on SIGTERM within 10 s:\n{}",
            self.log()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn netbootd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_netbootd"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `f` every 100 ms until it returns `Some`, for at most `limit`.
fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The address after `marker` in the first log line holding it.
fn logged_addr(log: &str, marker: &str) -> Option<SocketAddr> {
    log.lines().find_map(|l| {
        l.split(marker)
            .nth(1)?
            .split_whitespace()
            .next()?
            .trim_start_matches("http://")
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .ok()
    })
}

struct Control {
    proc: Proc,
    api: SocketAddr,
    quic: SocketAddr,
    token: String,
}

impl Control {
    fn start(dir: &Path) -> Self {
        let mut cmd = Command::new(ims_control());
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--quic-listen",
            "127.0.0.1:0",
        ])
        .args(["--heartbeat-interval", "1s", "--data-dir"])
        .arg(dir)
        .env("IMS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "info");
        let proc = Proc::spawn(cmd);
        let (api, quic) = wait_for(Duration::from_secs(60), "ims-control to listen", || {
            let log = proc.log();
            Some((
                logged_addr(&log, "listening on ")?,
                logged_addr(&log, "quic listening on ")?,
            ))
        });
        let (status, body) = wait_for(Duration::from_secs(10), "a login", || {
            http(
                "POST",
                api,
                "/api/token/",
                None,
                Some(&json!({"username": "admin", "password": ADMIN_PASSWORD})),
            )
        });
        assert_eq!(status, 200, "login: {body}");
        let token = serde_json::from_str::<Value>(&body).unwrap()["access"]
            .as_str()
            .unwrap()
            .to_owned();
        Self {
            proc,
            api,
            quic,
            token,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = http(method, self.api, path, Some(&self.token), body.as_ref())
            .unwrap_or_else(|| panic!("{method} {path}: no answer"));
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn create(&self, path: &str, body: Value) -> Value {
        let (status, value) = self.call("POST", path, Some(body));
        assert_eq!(status, 201, "POST {path}: {value}");
        value
    }
}

fn netbootd_config(dir: &Path, control: SocketAddr, http_port: u16, metrics_port: u16) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let path = dir.join("netbootd.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\nroot = \"{}\"\n\
             [control]\nendpoint = \"{control}\"\n",
            dir.join("data").display(),
            root.display()
        ),
    )
    .unwrap();
    path
}

fn script(http_port: u16) -> Option<String> {
    let addr: SocketAddr = ([127, 0, 0, 1], http_port).into();
    let (status, body) = http("GET", addr, &format!("/boot.ipxe?mac={MAC}"), None, None)?;
    (status == 200).then_some(body)
}

#[test]
fn enrol_sync_heartbeat_phone_home_and_serve_from_the_snapshot() {
    let control_dir = TempDir::new("control");
    let edge_dir = TempDir::new("edge");
    let mut control = Control::start(&control_dir.0);

    control.create("/api/sites", json!({"name": "lab"}));
    control.create("/api/cluster", json!({"name": "c-lab", "site": "lab"}));
    control.create(
        "/api/boot-profiles",
        json!({"name": "p-lab", "site": "lab", "bios": "undionly.kpxe", "kernel": "vmlinuz",
               "cmdline": "console=ttyS0 phone_home={phone_home}"}),
    );
    control.create(
        "/api/ippools",
        json!({"site": "lab", "cidr": "10.7.0.0/24", "gateway": "10.7.0.1",
               "range_start": "10.7.0.100", "range_end": "10.7.0.200"}),
    );
    let machine = control.create(
        "/api/machines",
        json!({"cluster": "c-lab", "hostname": "node-1", "mac": MAC, "ip": "10.7.0.11",
               "boot_profile": "p-lab"}),
    );
    let machine_id = machine["id"].clone();

    // A join token, then enrolment.
    let out = Command::new(ims_control())
        .args(["join-token", "--site", "lab", "--data-dir"])
        .arg(&control_dir.0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let token = stdout.lines().last().unwrap().trim().to_owned();
    let http_port = free_port();
    let metrics_port = free_port();
    let config = netbootd_config(&edge_dir.0, control.quic, http_port, metrics_port);
    let out = netbootd()
        .arg("enroll")
        .arg("--config")
        .arg(&config)
        .args(["--control", &control.quic.to_string(), "--token", &token])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "enroll: {printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("site lab"), "{printed}");
    assert!(
        printed.contains(&format!("endpoint = \"{}\"", control.quic)),
        "{printed}"
    );

    // The daemon serves the machine from the snapshot and reports in.
    let mut edge = Proc::spawn({
        let mut c = netbootd();
        c.arg("--config").arg(&config).env("RUST_LOG", "info");
        c
    });
    let first = wait_for(Duration::from_secs(20), "the machine's iPXE script", || {
        script(http_port).filter(|s| s.contains("kernel "))
    });
    assert!(first.contains("phone-home"), "{first}");
    wait_for(Duration::from_secs(20), "an active worker", || {
        let (status, body) = control.call("GET", "/api/workers", None);
        (status == 200 && body.to_string().contains("\"active\"")).then_some(())
    });
    let metrics: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    wait_for(
        Duration::from_secs(10),
        "netbootd_uplink_connected 1",
        || {
            let (_, body) = http("GET", metrics, "/metrics", None, None)?;
            body.contains("netbootd_uplink_connected 1").then_some(())
        },
    );

    // A REST change reaches the edge within 1 s (the bound): the boot profile's command
    // line changes, and the edge's iPXE script shows it.
    let profile = control.call("GET", "/api/boot-profiles/p-lab", None).1;
    let changed = Instant::now();
    let (status, body) = control.call(
        "PATCH",
        &format!("/api/boot-profiles/{}", profile["id"]),
        Some(json!({"cmdline": "console=ttyS0 marker=rest-change phone_home={phone_home}"})),
    );
    assert_eq!(status, 200, "{body}");
    loop {
        if script(http_port).is_some_and(|s| s.contains("marker=rest-change")) {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "the REST change did not reach the edge within 1 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = changed.elapsed();
    eprintln!("REST change visible at the edge after {took:?}");

    // Phone-home: the machine becomes ACTIVE and boots from disk next time (netboot off).
    let (status, body) = http(
        "POST",
        ([127, 0, 0, 1], http_port).into(),
        &format!("/phone-home/{MAC}"),
        None,
        Some(&json!({"installed": true})),
    )
    .unwrap();
    assert_eq!(status, 204, "{body}");
    wait_for(Duration::from_secs(20), "the machine ACTIVE", || {
        let (_, m) = control.call("GET", &format!("/api/machines/{machine_id}"), None);
        (m["status"] == "ACTIVE").then_some(())
    });
    wait_for(Duration::from_secs(10), "netboot off at the edge", || {
        script(http_port).filter(|s| s.contains("netboot is off"))
    });

    // The edge stops: after three missed heartbeats (1 s each here) the worker shows inactive.
    edge.stop();
    let stopped = Instant::now();
    wait_for(Duration::from_secs(10), "the worker inactive", || {
        let (status, body) = control.call("GET", "/api/workers?status=inactive", None);
        (status == 200 && body["count"] == 1).then_some(())
    });
    assert!(
        stopped.elapsed() >= Duration::from_secs(2),
        "inactive too early"
    );

    // The control plane goes away; the edge restarts and serves from its stored snapshot.
    control.proc.stop();
    let edge = Proc::spawn({
        let mut c = netbootd();
        c.arg("--config").arg(&config);
        c
    });
    let served = wait_for(
        Duration::from_secs(20),
        "the script after a restart",
        || script(http_port),
    );
    assert!(
        served.contains("netboot is off"),
        "{served}\n{}",
        edge.log()
    );
}
