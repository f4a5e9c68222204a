//! Running the real `ims-control` binary in tests: a child process with its output collected
//! line by line, killed (by its own PID) when the guard is dropped, and `curl` as the HTTP
//! client; `serve` on a free loopback port, a self-signed certificate for it (`openssl`), and
//! the addresses it logs.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Environment variables the binary reads; cleared so the caller's environment cannot leak in.
const IMS_VARS: &[&str] = &[
    "IMS_CONFIG",
    "IMS_DATA_DIR",
    "IMS_DATABASE_URL",
    "IMS_LISTEN",
    "IMS_TLS_CERT",
    "IMS_TLS_KEY",
    "IMS_ACCESS_TTL",
    "IMS_REFRESH_TTL",
    "IMS_LOG_FORMAT",
    "IMS_ADMIN_PASSWORD",
    "IMS_USER_PASSWORD",
    "IMS_QUIC_LISTEN",
    "IMS_QUIC_NAMES",
    "IMS_HEARTBEAT_INTERVAL",
    "IMS_KEY_ROTATION",
];

/// `ims-control` with a clean environment; the QUIC uplink on a free loopback port (its
/// default, 0.0.0.0:7443, would collide between tests running at once).
pub fn ims_control() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ims-control"));
    for v in IMS_VARS {
        cmd.env_remove(v);
    }
    cmd.env("RUST_LOG", "info");
    cmd.env("IMS_QUIC_LISTEN", "127.0.0.1:0");
    cmd
}

/// `ims-control serve` on a free loopback port (`--listen 127.0.0.1:0`) with its data in `dir`.
pub fn serve(dir: &Path) -> Command {
    let mut cmd = ims_control();
    cmd.arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir);
    cmd
}

/// A self-signed certificate for `localhost` and 127.0.0.1 (P-256, valid 2 days) made by
/// `openssl`: `(dir/cert.pem, dir/key.pem)`.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-days",
            "2",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", text(&out.stderr));
    (cert, key)
}

/// The QUIC uplink address from the server's `quic listening on ADDR` log line, once logged.
pub fn quic_addr(lines: &[String]) -> Option<SocketAddr> {
    lines.iter().find_map(|l| {
        l.split("quic listening on ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// Runs a short command to completion (bounded: 60 s), with `stdin` fed when given.
pub fn run(mut cmd: Command, stdin: Option<&str>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = read_all(Box::new(out));
    let err = read_all(Box::new(err));
    let mut guard = Guard(Some(child));
    let status = guard
        .wait_for(Duration::from_secs(60))
        .expect("command timed out");
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Kills the child (by its PID, through the handle) on drop.
struct Guard(Option<Child>);

impl Guard {
    fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.0.as_mut()?;
        for _ in 0..(limit.as_millis() / 50) {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A running server whose stdout and stderr lines are collected.
pub struct Server {
    guard: Guard,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// `http://127.0.0.1:PORT` or `https://…`, from the "listening on" log line.
    pub url: String,
}

fn collect(pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

impl Server {
    /// Spawns `cmd` and waits (up to 60 s) until it logs where it listens.
    pub fn start(cmd: Command) -> Self {
        let mut s = Self::spawn(cmd);
        s.url = s.wait_listening();
        s
    }

    /// Spawns `cmd` without waiting.
    pub fn spawn(mut cmd: Command) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ims-control");
        let stdout = collect(child.stdout.take().expect("stdout"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        Self {
            guard: Guard(Some(child)),
            stdout,
            stderr,
            url: String::new(),
        }
    }

    pub fn wait_listening(&mut self) -> String {
        for _ in 0..1200 {
            let found = self.stderr.lock().unwrap().iter().find_map(|l| {
                let rest = l.split("listening on ").nth(1)?;
                rest.split(|c: char| c.is_whitespace() || c == '"')
                    .next()
                    .map(str::to_owned)
            });
            if let Some(url) = found {
                return url;
            }
            if let Some(status) = self
                .guard
                .0
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "ims-control exited ({status}) before listening\nstdout:\n{}\nstderr:\n{}",
                    self.stdout().join("\n"),
                    self.stderr().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "ims-control did not listen within 60 s\nstderr:\n{}",
            self.stderr().join("\n")
        );
    }

    pub fn pid(&self) -> u32 {
        self.guard.0.as_ref().expect("child").id()
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM to this child and waits (up to 20 s) for it to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
        let status = self
            .guard
            .wait_for(Duration::from_secs(20))
            .expect("ims-control did not stop within 20 s of SIGTERM");
        // Let the reader threads drain the pipes.
        thread::sleep(Duration::from_millis(100));
        status
    }
}

/// An HTTP answer from curl.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// `curl` to `url` with `extra` arguments; `body` is sent as JSON; `token` as a bearer token.
pub fn curl(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
    extra: &[&str],
) -> Answer {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "20",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &b.to_string(),
        ]);
    }
    cmd.args(extra).arg(url);
    let out = run(cmd, None);
    assert!(
        out.status.success(),
        "curl {method} {url} failed: {}",
        text(&out.stderr)
    );
    let all = text(&out.stdout);
    let (body, code) = all.rsplit_once('\n').expect("status line");
    Answer {
        status: code.trim().parse().expect("status code"),
        body: body.to_owned(),
    }
}

/// `GET {base}{path}` with `token` as a bearer token.
pub fn get(base: &str, path: &str, token: &str) -> Answer {
    curl("GET", &format!("{base}{path}"), Some(token), None, &[])
}

/// The access token for `username`/`password` from `POST /api/token`.
pub fn login(base: &str, username: &str, password: &str, extra: &[&str]) -> String {
    let a = curl(
        "POST",
        &format!("{base}/api/token"),
        None,
        Some(&serde_json::json!({"username": username, "password": password})),
        extra,
    );
    assert_eq!(a.status, 200, "login as {username}: {}", a.body);
    a.json()["access"].as_str().expect("access").to_owned()
}

/// The password from a `created user admin with password: X (…)` line, if any.
pub fn printed_admin_password(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("created user admin with password: "))
        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
        .collect()
}
