//! Harness for end-to-end tests of `netbootd` in network namespaces.
//!
//! - [`site`]: a [`site::Site`] is a throw-away test LAN: uniquely named namespaces joined by veth
//!   pairs (server, optional relay, client), a temp directory, the daemon under test and every
//!   helper process. Dropping it (also while a test panics) kills what it started, by PID, prints
//!   the logs when the test failed, and deletes the namespaces.
//! - [`client`]: real DHCP clients we did not write (ISC dhclient, busybox udhcpc, ISC dhcrelay)
//!   driven through a hook script that records what they received, and a raw UDP client for
//!   hand-crafted packets.
//! - [`control`]: the real `ims-control` (on loopback or in the server namespace), logged in as
//!   admin, and enrolling `netbootd` with it.
//! - [`dhcp`]: a small, test-only BOOTP/DHCP encoder/decoder, independent of the daemon's own.
//! - [`observe`]: parsing `/metrics` (Prometheus text) and `netbootd leases --json`.
//! - [`netns`]: run a closure on a thread that has entered a namespace (sockets, HTTP GET).
//! - [`tftp`]: a boot-file lab (served root, addressed client, forced TFTP driver) and the real
//!   TFTP clients (tftp-hpa, atftp, curl); [`tftp_wire`]: our own small TFTP client for the
//!   requests real clients cannot make.
//! - Real firmware (QEMU machines, their boot payload) lives in the bench crate's library,
//!   `ims_bench::lab::qemu`, shared with `ims-lab --qemu`.
//!
//! Everything waits with a bound; nothing touches the root namespace's network or files other
//! than `/etc/netns/<our namespace>/` (which `ip netns exec` bind-mounts over `/etc`).
// Tests drive real processes in real time: reading the clock is what they must do.
#![allow(clippy::disallowed_methods)]
// Each test binary uses a different part of the harness.
#![allow(dead_code)]

pub(crate) mod client;
pub(crate) mod control;
pub(crate) mod dhcp;
pub(crate) mod http;
pub(crate) mod netns;
pub(crate) mod observe;
pub(crate) mod site;
pub(crate) mod tftp;
pub(crate) mod tftp_wire;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Fail the test with a clear message unless we run as root.
pub(crate) fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests create network namespaces and run DHCP clients: they need root. \
         Run them as root, e.g. `sudo -E cargo test -p ims-netboot --test dhcp_netns` \
         (CI runs them as root through .ci/run)."
    );
}

/// The absolute path of a system tool: from `PATH`, else from the sbin/bin directories a root
/// shell's `PATH` may lack; the bare name if it is nowhere (the spawn error then names it).
pub(crate) fn tool(name: &str) -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .map_or_else(|| name.to_owned(), |p| p.display().to_string())
}

/// Poll `f` every 50 ms until it returns `Some`, for at most `timeout`.
pub(crate) fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process-wide counter that makes names unique among the tests of one run.
pub(crate) fn next_id() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A directory removed on drop, unless the test is failing (then it is kept and its path printed).
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Create `$TMPDIR/netbootd-tests/<name>` (emptied first if a previous run left it).
    pub(crate) fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join("netbootd-tests").join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create temp dir {}: {e}", path.display()));
        Self { path }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("[harness] keeping {} for inspection", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// What a command run to completion (or killed at its deadline) produced.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The command line, for messages.
    pub(crate) command: String,
    /// Exit status; `None` when it was killed because it ran past its deadline.
    pub(crate) status: Option<ExitStatus>,
    /// Standard output.
    pub(crate) stdout: String,
    /// Standard error.
    pub(crate) stderr: String,
}

impl Outcome {
    /// Exited with status 0.
    pub(crate) fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Panic with the whole outcome unless it succeeded.
    #[track_caller]
    pub(crate) fn check(self) -> Self {
        assert!(self.success(), "command failed:\n{self}");
        self
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => writeln!(f, "$ {}  -> {s}", self.command)?,
            None => writeln!(f, "$ {}  -> killed at its deadline", self.command)?,
        }
        writeln!(f, "--- stdout\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr\n{}", self.stderr.trim_end())
    }
}

/// Render a command line for messages.
pub(crate) fn command_line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run `cmd` to completion with its output captured, killing it (by PID) after `timeout`.
pub(crate) fn run(cmd: &mut Command, timeout: Duration) -> Outcome {
    let command = command_line(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{command}`: {e} (is it installed?)"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_child(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    // A grandchild that kept the pipes open must not hang the test: bounded collection.
    let collect = |rx: mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(2))
            .unwrap_or_else(|_| "<output not collected: pipe held open>".into())
    };
    Outcome {
        command,
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    }
}

/// Read a pipe to its end on a thread; the text arrives on the returned channel.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// Wait for `child` to exit, at most `timeout`; `None` if it is still running.
pub(crate) fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    wait_until(timeout, || child.try_wait().ok().flatten())
}

/// The last `max_lines` lines of a file, for failure reports.
pub(crate) fn tail(path: &Path, max_lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let skip = lines.len().saturating_sub(max_lines);
            let mut out = String::new();
            if skip > 0 {
                out.push_str(&format!("[... {skip} lines skipped ...]\n"));
            }
            out.push_str(&lines[skip..].join("\n"));
            out
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}
