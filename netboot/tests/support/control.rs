//! The real `ims-control` control plane and an edge enrolled with it, for end-to-end tests.
//!
//! - On loopback (no privileges): [`Control`] runs `ims-control serve` (SQLite in the given data
//!   directory, heartbeat interval 1 s, API and QUIC on ports it picks and logs), logs in as
//!   admin and talks REST; [`Proc`] is any child process with its stderr collected;
//!   [`join_token`], [`edge_config`] and [`enroll`] enrol a `netbootd` with it.
//! - In a site's server namespace (root): [`NsControl`] runs `ims-control serve` on the
//!   namespace's loopback ([`NS_API`], [`NS_QUIC`]); [`enroll_in_ns`] enrols the site's daemon.
//!
//! Every process is killed by its PID when dropped; every wait is bounded.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http::{http, ims_control};
use super::netns;
use super::site::{NETBOOTD, Site};

/// `ims-control`'s HTTP API address inside a site's server namespace.
pub(crate) const NS_API: &str = "127.0.0.1:18000";
/// `ims-control`'s QUIC (edge uplink) address inside a site's server namespace.
pub(crate) const NS_QUIC: &str = "127.0.0.1:17443";

/// A child process killed (by its PID) when dropped, with its stderr lines collected.
pub(crate) struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Start `cmd` (stdout discarded, stderr collected).
    pub(crate) fn spawn(mut cmd: Command) -> Self {
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

    /// What the process wrote to stderr so far.
    pub(crate) fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// SIGTERM (by PID), then wait (at most 10 s).
    pub(crate) fn stop(&mut self) {
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

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `f` every 100 ms until it returns `Some`, for at most `limit`; fail the test naming
/// `what` otherwise.
pub(crate) fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
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

/// [`wait_for`] with the bound in seconds.
pub(crate) fn wait<T>(what: &str, secs: u64, f: impl FnMut() -> Option<T>) -> T {
    wait_for(Duration::from_secs(secs), what, f)
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

/// The admin's access token from a `POST /api/token/` answer.
fn access_token(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["access"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `ims-control serve` on loopback, logged in as admin.
pub(crate) struct Control {
    /// The process (stop it with [`Proc::stop`]).
    pub(crate) proc: Proc,
    /// The HTTP API address.
    pub(crate) api: SocketAddr,
    /// The QUIC address edges connect to.
    pub(crate) quic: SocketAddr,
    /// The admin's bearer token.
    pub(crate) token: String,
}

impl Control {
    /// Start it on `dir` with `admin_password`, wait (60 s) for both listeners and log in.
    pub(crate) fn start(dir: &Path, admin_password: &str) -> Self {
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
        .env("IMS_ADMIN_PASSWORD", admin_password)
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
                Some(&json!({"username": "admin", "password": admin_password})),
            )
        });
        assert_eq!(status, 200, "login: {body}");
        let token = access_token(&body);
        Self {
            proc,
            api,
            quic,
            token,
        }
    }

    /// One authenticated request; the status and the body (JSON, else a JSON string).
    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = http(method, self.api, path, Some(&self.token), body.as_ref())
            .unwrap_or_else(|| panic!("{method} {path}: no answer"));
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `POST path`, which must answer 201; the created object.
    pub(crate) fn create(&self, path: &str, body: Value) -> Value {
        let (status, value) = self.call("POST", path, Some(body));
        assert_eq!(status, 201, "POST {path}: {value}");
        value
    }

    /// `GET path`, which must answer 200 with JSON.
    pub(crate) fn get(&self, path: &str) -> Value {
        let (status, text) = http("GET", self.api, path, Some(&self.token), None)
            .unwrap_or_else(|| panic!("GET {path}: no answer"));
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

/// A join token for `site` from `ims-control join-token` on the data directory `data_dir`.
pub(crate) fn join_token(data_dir: &Path, site: &str) -> String {
    let out = Command::new(ims_control())
        .args(["join-token", "--site", site, "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned()
}

/// Write `dir/netbootd.toml` for an HTTP-boot-only edge on loopback (data in `dir/data`, served
/// root `dir/root`, HTTP on `http_port`, metrics on `metrics_port`) uplinked to `control`.
pub(crate) fn edge_config(
    dir: &Path,
    control: SocketAddr,
    http_port: u16,
    metrics_port: u16,
) -> PathBuf {
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

/// `netbootd enroll --config config --control control --token token`, which must succeed;
/// what it printed on stdout.
pub(crate) fn enroll(config: &Path, control: SocketAddr, token: &str) -> String {
    let out = Command::new(NETBOOTD)
        .arg("enroll")
        .arg("--config")
        .arg(config)
        .args(["--control", &control.to_string(), "--token", token])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "enroll: {printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    printed
}

/// `ims-control serve` in a site's server namespace ([`NS_API`], [`NS_QUIC`]), logged in as
/// admin, killed (by PID) on drop.
pub(crate) struct NsControl {
    child: Child,
    ns: String,
    token: String,
}

impl NsControl {
    /// Start it on `data` with `admin_password`, its output in `log`; wait (60 s) for a login.
    pub(crate) fn start(site: &Site, data: &Path, log: &Path, admin_password: &str) -> Self {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &site.server_ns])
            .arg(ims_control())
            .args(["serve", "--listen", NS_API, "--quic-listen", NS_QUIC])
            .args(["--heartbeat-interval", "1s", "--data-dir"])
            .arg(data)
            .env("IMS_ADMIN_PASSWORD", admin_password)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut c = Self {
            child,
            ns: site.server_ns.clone(),
            token: String::new(),
        };
        let body = json!({"username": "admin", "password": admin_password});
        let (_, text) = wait("ims-control to answer a login", 60, || {
            c.raw("POST", "/api/token/", Some(&body))
                .filter(|(s, _)| *s == 200)
        });
        c.token = access_token(&text);
        c
    }

    /// One request from inside the namespace (with the token once logged in).
    pub(crate) fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Option<(u16, String)> {
        let addr = NS_API.parse().unwrap();
        let token = (!self.token.is_empty()).then(|| self.token.clone());
        let (method, path, body) = (method.to_owned(), path.to_owned(), body.cloned());
        netns::run_in(&self.ns, move || {
            http(&method, addr, &path, token.as_deref(), body.as_ref())
        })
    }

    /// One request that must succeed (2xx); its JSON body (`null` if none).
    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, text) = self
            .raw(method, path, body.as_ref())
            .unwrap_or_else(|| panic!("{method} {path}: no answer"));
        assert!(status < 300, "{method} {path}: HTTP {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Create site `site` and, in it, cluster `cluster`.
    pub(crate) fn site_with_cluster(&self, site: &str, cluster: &str) {
        self.call("POST", "/api/sites", Some(json!({"name": site})));
        self.call(
            "POST",
            "/api/cluster",
            Some(json!({"name": cluster, "site": site})),
        );
    }

    /// Create the IP pool of site `site` for the site's LAN: 10.77.0.0/24, addresses
    /// 10.77.0.100 to 10.77.0.150.
    pub(crate) fn lan_pool(&self, site: &str) {
        self.call(
            "POST",
            "/api/ippools",
            Some(
                json!({"site": site, "cidr": "10.77.0.0/24", "range_start": "10.77.0.100",
                        "range_end": "10.77.0.150"}),
            ),
        );
    }

    /// Kill it (by PID) and reap it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NsControl {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Enrol the site's daemon in the server namespace with the [`NsControl`] on `control_data`:
/// a join token for site `lab` from the CLI (same data directory), then `netbootd enroll` with
/// `site.dir()/enrol.toml` (the site's data directory, [`NS_QUIC`]); both must succeed.
pub(crate) fn enroll_in_ns(site: &Site, control_data: &Path) {
    let token_out = site.run_in(
        &site.server_ns,
        &[
            ims_control().to_str().unwrap(),
            "join-token",
            "--site",
            "lab",
            "--data-dir",
            control_data.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert!(token_out.success(), "join-token failed:\n{token_out}");
    let token = token_out.stdout.lines().last().unwrap().trim().to_owned();
    let enrol_config = site.dir().join("enrol.toml");
    std::fs::write(
        &enrol_config,
        format!(
            "data_dir = \"{}\"\n[control]\nendpoint = \"{NS_QUIC}\"\n",
            site.data_dir().display()
        ),
    )
    .unwrap();
    let enrolled = site.run_in(
        &site.server_ns,
        &[
            NETBOOTD,
            "enroll",
            "--config",
            enrol_config.to_str().unwrap(),
            "--control",
            NS_QUIC,
            "--token",
            &token,
        ],
        Duration::from_secs(30),
    );
    assert!(enrolled.success(), "enroll failed:\n{enrolled}");
}
