//! End to end on loopback with two real processes (as in `uplink_e2e.rs`): `ims-control serve`
//! (SQLite in a temporary data directory, heartbeat interval 1 s, the shortest it allows) and
//! an enrolled `netbootd` (HTTP boot only, no privileges needed).
//!
//! The O2ims edge-down alarm follows the edge process: while `netbootd` runs there is none;
//! after a SIGTERM (by PID) and three missed heartbeats an open `edge-down` alarm (MAJOR) on the
//! worker appears in `GET /o2ims-infrastructureMonitoring/v1/alarms`; once `netbootd` is started
//! again and heartbeats resume, the same alarm is cleared (`alarmClearedTime` set,
//! `perceivedSeverity` 5).
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

const ADMIN_PASSWORD: &str = "e2e-admin-password-2";
const ALARMS: &str = "/o2ims-infrastructureMonitoring/v1/alarms";

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("netbootd-alarms-e2e-{name}-{}", std::process::id()));
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

    /// SIGTERM (by PID), then wait (at most 10 s).
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

    fn get(&self, path: &str) -> Value {
        let (status, text) = http("GET", self.api, path, Some(&self.token), None)
            .unwrap_or_else(|| panic!("GET {path}: no answer"));
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The edge-down alarms of `worker` (by its name).
    fn edge_down(&self, worker: &str) -> Vec<Value> {
        self.get(&format!(
            "{ALARMS}?filter=(eq,extensions/alarmName,edge-down)"
        ))
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["extensions"]["objectName"] == worker)
        .collect()
    }
}

fn netbootd(config: &Path) -> Proc {
    let mut c = Command::new(env!("CARGO_BIN_EXE_netbootd"));
    c.arg("--config").arg(config).env("RUST_LOG", "info");
    Proc::spawn(c)
}

#[test]
fn an_edge_down_alarm_follows_the_edge_process() {
    let control_dir = TempDir::new("control");
    let edge_dir = TempDir::new("edge");
    let mut control = Control::start(&control_dir.0);
    let (status, body) = http(
        "POST",
        control.api,
        "/api/sites",
        Some(&control.token),
        Some(&json!({"name": "lab"})),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");

    // Enrol an edge with a join token.
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
    let token = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    let root = edge_dir.0.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let config = edge_dir.0.join("netbootd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\nmetrics_listen = \"127.0.0.1:{}\"\n\
             [http]\nlisten = \"127.0.0.1:{}\"\nroot = \"{}\"\n\
             [control]\nendpoint = \"{}\"\n",
            edge_dir.0.join("data").display(),
            free_port(),
            free_port(),
            root.display(),
            control.quic
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_netbootd"))
        .arg("enroll")
        .arg("--config")
        .arg(&config)
        .args(["--control", &control.quic.to_string(), "--token", &token])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "enroll: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Running: an active worker, no alarm.
    let mut edge = netbootd(&config);
    let worker = wait_for(Duration::from_secs(20), "an active worker", || {
        let list = control.get("/api/workers?status=active");
        list["results"][0]["worker_id"].as_str().map(str::to_owned)
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        control.edge_down(&worker).is_empty(),
        "alarm while the edge runs"
    );

    // Stopped: an open edge-down alarm within a few heartbeat intervals.
    edge.stop();
    let stopped = Instant::now();
    let alarm = wait_for(Duration::from_secs(15), "an edge-down alarm", || {
        control
            .edge_down(&worker)
            .into_iter()
            .find(|a| a["alarmClearedTime"].is_null())
    });
    let raised_after = stopped.elapsed();
    eprintln!("edge-down alarm raised {raised_after:?} after SIGTERM");
    assert!(
        raised_after >= Duration::from_secs(2),
        "alarm before three heartbeats were missed"
    );
    assert_eq!(alarm["perceivedSeverity"], 1, "{alarm}");
    assert_eq!(alarm["objectClass"], "ims.control.EdgeWorker", "{alarm}");
    assert_eq!(alarm["objectTypeId"], alarm["resourceTypeID"], "{alarm}");
    let id = alarm["alarmEventRecordId"].as_str().unwrap().to_owned();
    let spec = control.get(&format!("/O2ims_infrastructureMonitoring/v1/alarms/{id}"));
    assert_eq!(spec["alarmEventRecordId"], id);

    // Back: the same alarm is cleared.
    let back = Instant::now();
    let edge = netbootd(&config);
    let cleared = wait_for(Duration::from_secs(20), "the alarm cleared", || {
        let a = control.get(&format!("{ALARMS}/{id}"));
        a["alarmClearedTime"].is_string().then_some(a)
    });
    eprintln!("edge-down alarm cleared {:?} after restart", back.elapsed());
    assert_eq!(cleared["perceivedSeverity"], 5, "{cleared}\n{}", edge.log());
    assert_eq!(control.edge_down(&worker).len(), 1, "a second alarm");
    control.proc.stop();
}
